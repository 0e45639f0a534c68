//! An actor per plugin store: a task on the plugin threads (see `threads`), at a lower scheduling
//! priority than the supervision runtime, owns the plugin's [`Sandbox`] and runs the calls sent to it
//! over a channel, one at a time; each call is answered by a oneshot. A caller that gives up drops its
//! receiver: a call not yet begun is skipped, a call begun runs to its end under its own limits (never
//! cancelled half-way, so the instance stays usable).
//!
//! Plugin code, WASI host calls and `getaddrinfo` for `allow_tcp` names all run on the plugin threads,
//! never on the supervision runtime's workers.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wasmtime::Store;

use super::bindings::{self, PilotPlugin, PilotPluginPre};
use super::engine::PluginEngine;
use super::sandbox::{
    Call, CallError, CallProfile, Grants, Identity, Limits, Observed, Sandbox, StoreState,
};
use pilot_core::extension::PluginEvent;
use pilot_core::manifest::PluginSettings;

type Job = Box<
    dyn for<'s> FnOnce(&'s mut Sandbox) -> Pin<Box<dyn Future<Output = ()> + Send + 's>> + Send,
>;

/// What can be read about a plugin's calls, from any thread.
#[derive(Debug, Default)]
pub struct Counters {
    /// Calls made into the plugin.
    pub calls: AtomicU64,
    /// Calls that trapped, timed out or answered with the plugin's own error.
    pub failures: AtomicU64,
    /// Fuel the calls used.
    pub fuel: AtomicU64,
    /// Whether the plugin is quarantined.
    pub quarantined: AtomicBool,
    /// The last failure.
    pub last_error: Mutex<Option<String>>,
}

/// A plugin answer that may be the plugin's own error.
pub trait Answer {
    /// Returns the plugin's own error, as text, if the answer is one.
    fn plugin_error(&self) -> Option<String>;
}

impl<T> Answer for Result<T, bindings::PluginError> {
    fn plugin_error(&self) -> Option<String> {
        self.as_ref().err().map(bindings::error_text)
    }
}

impl Answer for () {
    fn plugin_error(&self) -> Option<String> {
        None
    }
}

/// The handle of a plugin's actor; the actor ends once every handle is dropped and its calls are done.
pub struct Actor {
    tx: mpsc::UnboundedSender<Job>,
    /// The plugin's name.
    pub name: String,
    /// `plugin `name` version`, for messages.
    pub label: String,
    /// The limits of each call.
    pub limits: Limits,
    /// What can be read about its calls.
    pub counters: Arc<Counters>,
}

impl Actor {
    /// Starts the actor of plugin `who` with `settings` (and, for `plugin check`, `observed`).
    pub fn spawn(
        engine: PluginEngine,
        pre: PilotPluginPre<StoreState>,
        who: Identity,
        settings: PluginSettings,
        observed: Option<Observed>,
    ) -> std::io::Result<Actor> {
        let (tx, rx) = mpsc::unbounded_channel();
        let label = format!(
            "plugin `{}` {}",
            who.name,
            pilot_core::manifest::escape_controls(&who.version)
        );
        let limits = Limits::from_settings(&settings);
        let name = who.name.clone();
        let threads = engine.threads.clone();
        let started = threads.spawn(async move {
            // `getaddrinfo` for `allow_tcp` names blocks: on a blocking thread.
            let resolved =
                tokio::task::spawn_blocking(move || Grants::resolve(settings, observed)).await;
            match resolved {
                Ok(grants) => serve(Sandbox::new(engine, pre, who, grants), rx).await,
                Err(e) => tracing::error!("plugin `{}`: cannot start: {e}", who.name),
            }
        });
        if !started {
            return Err(std::io::Error::other("the plugin threads are shut down"));
        }
        Ok(Actor {
            tx,
            name,
            label,
            limits,
            counters: Arc::new(Counters::default()),
        })
    }

    /// Returns the longest a caller waits: a fresh instance (instantiate, `init`) and the call, each
    /// under the call timeout, and a little slack.
    pub fn wait_bound(&self) -> Duration {
        self.limits.call_timeout * 3 + Duration::from_millis(50)
    }

    /// Runs `f` with the sandbox on the plugin threads (for `plugin check`, loading and benchmarks);
    /// `None` if the actor is gone.
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl for<'s> FnOnce(&'s mut Sandbox) -> Pin<Box<dyn Future<Output = R> + Send + 's>>
            + Send
            + 'static,
    ) -> Option<R> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |sandbox| {
            Box::pin(async move {
                if !tx.is_closed() {
                    let _ = tx.send(f(sandbox).await);
                }
            })
        });
        self.tx.send(job).ok()?;
        rx.await.ok()
    }

    /// Calls into the plugin under its limits, waiting at most [`Actor::wait_bound`]; `what` names the
    /// call in messages ("ready check `http` of `web`"). Failures are counted, logged and reported on
    /// the plugin threads, so they are even if the caller gave up.
    pub async fn call<R, F>(&self, what: String, f: F) -> Result<R, CallError>
    where
        R: Answer + Send + 'static,
        F: for<'a> FnOnce(&'a PilotPlugin, &'a mut Store<StoreState>) -> Call<'a, R>
            + Send
            + 'static,
    {
        if self.counters.quarantined.load(Ordering::Relaxed) {
            return Err(CallError::Quarantined);
        }
        let counters = self.counters.clone();
        let label = self.label.clone();
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |sandbox| {
            Box::pin(async move {
                if tx.is_closed() {
                    return; // The caller gave up before the call began.
                }
                let result = sandbox.call(f).await;
                account(sandbox, &counters, &label, &what, &result);
                let _ = tx.send(result);
            })
        });
        let gone = || CallError::Trap("cannot be called: its actor has stopped".into());
        self.tx.send(job).map_err(|_| gone())?;
        match tokio::time::timeout(self.wait_bound(), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(gone()),
            Err(_) => Err(CallError::Busy(self.wait_bound())),
        }
    }
}

/// Counts a finished call, and logs and reports its failure.
fn account<R: Answer>(
    sandbox: &Sandbox,
    counters: &Counters,
    label: &str,
    what: &str,
    result: &Result<R, CallError>,
) {
    let error = match result {
        Err(CallError::Quarantined) => {
            counters.quarantined.store(true, Ordering::Relaxed);
            return;
        }
        Err(e) => {
            tracing::warn!("{label}: {what}: {e}");
            Some(e.to_string())
        }
        Ok(answer) => answer.plugin_error(),
    };
    let profile: CallProfile = sandbox.last_profile();
    counters.calls.fetch_add(1, Ordering::Relaxed);
    counters.fuel.fetch_add(profile.fuel, Ordering::Relaxed);
    counters
        .quarantined
        .store(sandbox.quarantined(), Ordering::Relaxed);
    if let Some(error) = error {
        counters.failures.fetch_add(1, Ordering::Relaxed);
        *counters
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(format!("{what}: {error}"));
        (sandbox.events())(PluginEvent::CallFailed {
            plugin: sandbox.name.clone(),
            call: what.to_string(),
            error,
        });
    }
}

/// The actor's loop: runs jobs in order, and gives the log's "lines dropped" notices when due.
async fn serve(mut sandbox: Sandbox, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut notice_at = None;
    loop {
        let job = match notice_at {
            Some(at) => tokio::select! {
                job = rx.recv() => job,
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {
                    notice_at = sandbox.log().flush_notice();
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(job) = job else { break };
        job(&mut sandbox).await;
        notice_at = sandbox.log().flush_notice();
    }
    sandbox.log().flush_final();
}
