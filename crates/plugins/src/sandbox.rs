//! One plugin's sandbox: a Store with a closed WASI context opened only by the manifest's grants, and
//! calls made under a fuel budget, a wall-clock deadline, a memory cap, a stack cap and a cap on data
//! crossing into the host. A trap, a timeout or a dropped call discards the instance; the next call gets
//! a fresh one from the plugin's `InstancePre`. Failing several calls in a row quarantines the plugin.
//!
//! A sandbox has one owner: the plugin's actor (see `actor`) in `run` and `plugin check`, the caller in
//! benches.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use wasmtime::{Store, StoreLimitsBuilder, Trap, UpdateDeadline};

use super::bindings::{self, Description, PilotPlugin, PilotPluginPre};
use super::engine::PluginEngine;
use super::log::PluginLog;
pub use super::store::{Grants, Observed, StoreState};
use pilot_core::extension::{PluginEvent, PluginEventSink};
use pilot_core::manifest::PluginSettings;

/// Failed calls in a row that quarantine a plugin.
pub const QUARANTINE_AFTER: u32 = 3;

/// The limits of every call into one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per call (roughly wasm instructions; 15 to 22 million per ms of CPU here).
    pub fuel: u64,
    /// Linear memory cap in bytes.
    pub memory_bytes: usize,
    /// Wall-clock limit of one call.
    pub call_timeout: Duration,
    /// Cap on the bytes one call may pass to the host (strings, lists).
    pub hostcall_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 1_000_000_000,
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(1),
            hostcall_bytes: 1 << 20,
        }
    }
}

impl Limits {
    /// Returns the defaults overridden by the manifest's settings.
    pub fn from_settings(settings: &PluginSettings) -> Limits {
        let d = Limits::default();
        Limits {
            fuel: settings.fuel.unwrap_or(d.fuel),
            memory_bytes: settings
                .memory_bytes
                .map_or(d.memory_bytes, |b| usize::try_from(b).unwrap_or(usize::MAX)),
            call_timeout: settings.call_timeout.unwrap_or(d.call_timeout),
            hostcall_bytes: d.hostcall_bytes,
        }
    }
}

/// Why a call into a plugin did not return a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin trapped; its instance was discarded.
    #[error("{0}")]
    Trap(String),
    /// The call ran past its deadline in guest code and was interrupted; the instance was discarded.
    #[error("ran past its {} ms deadline; interrupted", .0.as_millis())]
    Interrupted(Duration),
    /// The call outlived its deadline inside a host call (a WASI sleep, a connect).
    #[error("did not return within its {} ms limit; stopped", .0.as_millis())]
    Timeout(Duration),
    /// The plugin answered with its own error.
    #[error("{0}")]
    Plugin(String),
    /// The plugin failed too often and is no longer called.
    #[error("is quarantined after {QUARANTINE_AFTER} failed calls in a row")]
    Quarantined,
    /// The caller stopped waiting: the plugin was still busy with earlier calls (the call, if begun,
    /// runs to its end under its own limits).
    #[error("did not answer within {} ms: busy with earlier calls", .0.as_millis())]
    Busy(Duration),
}

/// Describes a trap for people.
pub fn describe_trap(e: &wasmtime::Error, limits: &Limits) -> String {
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => format!("ran out of fuel ({} units)", limits.fuel),
        Some(Trap::Interrupt) => format!(
            "ran past its {} ms deadline; interrupted",
            limits.call_timeout.as_millis()
        ),
        Some(Trap::StackOverflow) => "overflowed its stack".into(),
        Some(Trap::UnreachableCodeReached) => {
            "panicked or aborted (unreachable code reached)".into()
        }
        Some(Trap::MemoryOutOfBounds) => {
            "accessed memory out of bounds (a bug, or its own stack overflowed)".into()
        }
        Some(Trap::CannotEnterComponent) => {
            "cannot be entered again after an earlier failure".into()
        }
        Some(other) => format!("trapped: {other}"),
        None if e.downcast_ref::<super::store::MemoryCapHit>().is_some() => {
            format!("hit its memory cap of {} MiB", limits.memory_bytes >> 20)
        }
        None => {
            let text = format!("{e:#}");
            // wasmtime keeps the type of this error private (`HostcallFuelExhausted`): only its text
            // tells it.
            if text.contains("hostcall") {
                format!(
                    "passed more than {} KiB to the host in one call",
                    limits.hostcall_bytes >> 10
                )
            } else {
                format!("trapped: {text}")
            }
        }
    }
}

/// Returns the store limits (memory cap, instance, table and memory counts) of `limits`.
pub(super) fn store_limits(limits: &Limits) -> wasmtime::StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(limits.memory_bytes)
        .instances(64)
        .memories(16)
        .tables(64)
        .trap_on_grow_failure(true)
        .build()
}

/// Returns a Store holding `state`, under `limits`: fuel, the epoch deadline that yields every tick
/// and traps past the call's deadline, the hostcall cap, and the memory limiter.
pub(super) fn new_store(
    engine: &PluginEngine,
    limits: &Limits,
    state: StoreState,
) -> Store<StoreState> {
    let mut store = Store::new(&engine.engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_hostcall_fuel(limits.hostcall_bytes);
    store.epoch_deadline_callback(|ctx| {
        if Instant::now() >= ctx.data().deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            // Give the thread's other tasks (WASI streams, timers) a turn every tick.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        }
    });
    store
}

/// A live instance.
struct Live {
    store: Store<StoreState>,
    bindings: PilotPlugin,
}

/// A call into the plugin's exports, given the bindings and the store.
pub type Call<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

/// Returns `f` unchanged, with the higher-ranked signature [`Sandbox::call`] wants (closures kept in a
/// variable do not get it inferred).
pub fn call_fn<R, F>(f: F) -> F
where
    F: for<'a> FnOnce(&'a PilotPlugin, &'a mut Store<StoreState>) -> Call<'a, R>,
{
    f
}

/// What the last call cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CallProfile {
    /// Wall time of the export call, in milliseconds (without making a fresh instance).
    pub ms: f64,
    /// Fuel the export call used.
    pub fuel: u64,
    /// The most linear memory the instance has held, in bytes.
    pub peak_memory: usize,
    /// Milliseconds spent making a fresh instance (store, WASI context, instantiate, `init`) first.
    pub fresh_instance_ms: Option<f64>,
}

/// Who a sandbox runs, and where it reports.
#[derive(Clone)]
pub struct Identity {
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// Where failures, quarantines and dropped log lines are reported.
    pub events: PluginEventSink,
}

/// The sandbox of one plugin; its owner serializes the calls.
pub struct Sandbox {
    /// The plugin's name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    engine: PluginEngine,
    pre: PilotPluginPre<StoreState>,
    grants: Grants,
    config: String,
    /// The limits of each call.
    pub limits: Limits,
    log: Arc<PluginLog>,
    events: PluginEventSink,
    live: Option<Live>,
    in_call: bool,
    failures: u32,
    last: CallProfile,
}

impl Sandbox {
    /// Creates the sandbox; no instance exists until the first call. `grants` come from
    /// [`Grants::resolve`], which may block on name lookups.
    pub fn new(
        engine: PluginEngine,
        pre: PilotPluginPre<StoreState>,
        who: Identity,
        grants: Grants,
    ) -> Sandbox {
        let settings: &PluginSettings = &grants.settings;
        let config = settings
            .config
            .as_ref()
            .map_or("null".to_string(), |c| c.to_string());
        Sandbox {
            log: PluginLog::new(&who.name, who.events.clone()),
            limits: Limits::from_settings(settings),
            name: who.name,
            version: who.version,
            engine,
            pre,
            grants,
            config,
            events: who.events,
            live: None,
            in_call: false,
            failures: 0,
            last: CallProfile::default(),
        }
    }

    /// Returns whether the plugin is quarantined.
    pub fn quarantined(&self) -> bool {
        self.failures >= QUARANTINE_AFTER
    }

    /// Drops the live instance, so the next call makes a fresh one (for benchmarks).
    pub fn discard(&mut self) {
        self.live = None;
    }

    /// Drops the live instance and forgets failures, so the next call starts afresh (for `plugin check`,
    /// whose smoke tests must not quarantine each other).
    pub fn reset(&mut self) {
        self.live = None;
        self.failures = 0;
    }

    /// Returns whether a live instance exists (for tests and benchmarks).
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// Returns what the last call cost.
    pub fn last_profile(&self) -> CallProfile {
        self.last
    }

    /// Returns where failures and quarantines are reported.
    pub fn events(&self) -> &PluginEventSink {
        &self.events
    }

    /// Returns the plugin's log (for its "lines dropped" notices).
    pub fn log(&self) -> &Arc<PluginLog> {
        &self.log
    }

    fn new_store(&self) -> wasmtime::Result<Store<StoreState>> {
        let state = StoreState::new(&self.grants, store_limits(&self.limits), &self.log)?;
        Ok(new_store(&self.engine, &self.limits, state))
    }

    pub(super) fn arm(store: &mut Store<StoreState>, limits: &Limits) -> wasmtime::Result<Instant> {
        let deadline = Instant::now() + limits.call_timeout;
        store.data_mut().deadline = deadline;
        store.set_fuel(limits.fuel)?;
        store.set_epoch_deadline(1);
        Ok(deadline)
    }

    /// Awaits a call armed with `arm` until `deadline`; maps traps and timeouts.
    pub(super) async fn bounded<R>(
        engine: &PluginEngine,
        limits: &Limits,
        deadline: Instant,
        call: impl Future<Output = wasmtime::Result<R>>,
    ) -> Result<R, CallError> {
        let _ticking = engine.ticking();
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => {
                Err(CallError::Interrupted(limits.call_timeout))
            }
            Ok(Err(e)) => Err(CallError::Trap(describe_trap(&e, limits))),
            Err(_) => Err(CallError::Timeout(limits.call_timeout)),
        }
    }

    pub(super) fn armed(
        store: &mut Store<StoreState>,
        limits: &Limits,
    ) -> Result<Instant, CallError> {
        Self::arm(store, limits)
            .map_err(|e| CallError::Trap(format!("cannot arm the limits: {e:#}")))
    }

    /// Creates a fresh instance and configures it with `init` (or, with `describe_only`, asks it to
    /// describe itself instead).
    async fn instantiate(
        &mut self,
        describe_only: bool,
    ) -> Result<(Live, Option<Description>), CallError> {
        let mut store = self
            .new_store()
            .map_err(|e| CallError::Trap(format!("cannot set up the sandbox: {e:#}")))?;
        let deadline = Self::armed(&mut store, &self.limits)?;
        let bindings = Self::bounded(
            &self.engine,
            &self.limits,
            deadline,
            self.pre.instantiate_async(&mut store),
        )
        .await?;
        let deadline = Self::armed(&mut store, &self.limits)?;
        if describe_only {
            let describe = bindings.pilot_plugin_plugin().call_describe(&mut store);
            let description = Self::bounded(&self.engine, &self.limits, deadline, describe).await?;
            return Ok((Live { store, bindings }, Some(description)));
        }
        let init = bindings
            .pilot_plugin_plugin()
            .call_init(&mut store, &self.config);
        Self::bounded(&self.engine, &self.limits, deadline, init)
            .await?
            .map_err(|e| CallError::Plugin(bindings::error_text(&e)))?;
        Ok((Live { store, bindings }, None))
    }

    /// Returns what a fresh instance says of itself (without `init`); the instance is not kept.
    pub async fn describe(&mut self) -> Result<Description, CallError> {
        let (_, description) = self.instantiate(true).await?;
        Ok(description.expect("asked for a description"))
    }

    /// Calls into the plugin under its limits.
    pub async fn call<R>(
        &mut self,
        f: impl for<'a> FnOnce(&'a PilotPlugin, &'a mut Store<StoreState>) -> Call<'a, R>,
    ) -> Result<R, CallError> {
        if self.quarantined() {
            return Err(CallError::Quarantined);
        }
        if self.in_call {
            // The previous call's future was dropped mid-call: that instance cannot be entered again.
            self.live = None;
            self.in_call = false;
        }
        self.in_call = true;
        self.last = CallProfile::default();
        let result = self.call_inner(f).await;
        self.in_call = false;
        match &result {
            Err(CallError::Trap(_) | CallError::Interrupted(_) | CallError::Timeout(_)) => {
                self.live = None;
                self.failures += 1;
                if self.quarantined() {
                    tracing::error!(
                        "plugin `{}` {}: quarantined after {QUARANTINE_AFTER} failed calls in a row; its ready checks now count as not ready and its hooks and handlers are skipped",
                        self.name,
                        pilot_core::manifest::escape_controls(&self.version)
                    );
                    (self.events)(PluginEvent::Quarantined {
                        plugin: self.name.clone(),
                    });
                }
            }
            _ => self.failures = 0,
        }
        result
    }

    async fn call_inner<R>(
        &mut self,
        f: impl for<'a> FnOnce(&'a PilotPlugin, &'a mut Store<StoreState>) -> Call<'a, R>,
    ) -> Result<R, CallError> {
        if self.live.is_none() {
            let started = std::time::Instant::now();
            self.live = Some(self.instantiate(false).await?.0);
            self.last.fresh_instance_ms = Some(started.elapsed().as_secs_f64() * 1e3);
        }
        let live = self.live.as_mut().expect("just made");
        let deadline = Self::armed(&mut live.store, &self.limits)?;
        let started = std::time::Instant::now();
        let result = Self::bounded(
            &self.engine,
            &self.limits,
            deadline,
            f(&live.bindings, &mut live.store),
        )
        .await;
        self.last.ms = started.elapsed().as_secs_f64() * 1e3;
        self.last.fuel = self
            .limits
            .fuel
            .saturating_sub(live.store.get_fuel().unwrap_or(0));
        self.last.peak_memory = live.store.data().limiter.peak;
        result
    }
}
