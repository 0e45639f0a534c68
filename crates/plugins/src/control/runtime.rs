//! One started control plugin: fresh instances for HTTP requests, the failure count that quarantines
//! it, and what can be read about it.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use tokio::sync::{oneshot, Semaphore};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::WasiHttpView as _;

use super::access::ControlAccess;
use super::bindings::{ControlDescription, PilotControl, PilotControlPre, Setup};
use super::outgoing::{Outgoing, OutgoingGrants};
use crate::actor::Counters;
use crate::bindings::error_text;
use crate::engine::PluginEngine;
use crate::load::{no_events, PluginHost};
use crate::log::PluginLog;
use crate::sandbox::{
    new_store, store_limits, CallError, Grants, Limits, Sandbox, QUARANTINE_AFTER,
};
use crate::store::StoreState;
use pilot_core::extension::{PluginEvent, PluginEventSink, PluginStatus};

/// HTTP requests one control plugin serves at once; past it, 503.
pub const MAX_REQUESTS: usize = 16;

/// The most bytes of an answer's body the control plane passes on; past it, 502.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// How a request to a control plugin ended.
#[derive(Debug)]
pub enum Served {
    /// The plugin answered.
    Answer(http::Response<Bytes>),
    /// The plugin is quarantined.
    Quarantined,
    /// The plugin serves [`MAX_REQUESTS`] already.
    Busy,
    /// No answer (or not all of it) within the deadline.
    Timeout(Duration),
    /// The answer's body passed [`MAX_RESPONSE_BYTES`].
    TooLarge,
    /// The plugin failed: it trapped, its `init` failed, or it gave no answer.
    Failed(String),
}

/// A live instance: its Store and bindings.
pub(crate) struct Live {
    pub store: Store<StoreState>,
    pub bindings: PilotControl,
}

/// A started control plugin.
pub struct ControlPlugin {
    /// Its name (its mount point is `/plugins/<name>/`).
    pub name: String,
    /// `plugin `name` version`, for messages.
    pub label: String,
    pub(super) version: String,
    pub(super) file: String,
    engine: PluginEngine,
    pre: PilotControlPre<StoreState>,
    grants: Grants,
    pub(super) limits: Limits,
    config: String,
    pub(super) log: Arc<PluginLog>,
    access: Arc<ControlAccess>,
    outgoing: Arc<OutgoingGrants>,
    pub(super) events: PluginEventSink,
    /// What can be read about its calls.
    pub counters: Arc<Counters>,
    failures: AtomicU32,
    requests: Arc<Semaphore>,
    /// What its events instance asked for at `init` (set once started).
    pub(super) setup: std::sync::Mutex<Option<Setup>>,
    /// A fresh instance, `init`ed and never used, made after a request was answered so that the next
    /// request does not wait for one.
    spare: std::sync::Mutex<Option<Live>>,
}

/// What a control plugin is made of.
pub(super) struct Parts {
    pub engine: PluginEngine,
    pub pre: PilotControlPre<StoreState>,
    pub description: ControlDescription,
    pub file: String,
    pub grants: Grants,
    pub access: Arc<ControlAccess>,
    pub outgoing: Arc<OutgoingGrants>,
    pub events: PluginEventSink,
}

impl ControlPlugin {
    /// Builds the plugin for `plugin check`: `settings`' grants, and every attempt beyond them
    /// recorded into `observed`.
    pub(crate) async fn for_check(
        host: &PluginHost,
        loaded: &super::LoadedControl,
        settings: pilot_core::manifest::PluginSettings,
        observed: crate::sandbox::Observed,
    ) -> Result<ControlPlugin, String> {
        let name = loaded.description.name.clone();
        let http = settings.grants.http.clone();
        let control = settings.grants.control.clone();
        let recorder = crate::watch::Watch::new(&name, Some(observed.clone()), false).recorder();
        let grants = tokio::task::spawn_blocking(move || Grants::resolve(settings, Some(observed)))
            .await
            .map_err(|e| e.to_string())?;
        Ok(ControlPlugin::new(Parts {
            engine: host.engine.clone(),
            pre: loaded.pre.clone(),
            description: loaded.description.clone(),
            file: loaded.file.display().to_string(),
            grants,
            access: ControlAccess::new(
                &name,
                control,
                Default::default(),
                no_events(),
                Some(recorder.clone()),
            ),
            outgoing: OutgoingGrants::new(&name, http, no_events(), Some(recorder)),
            events: no_events(),
        }))
    }

    /// Builds `loaded` under `settings` with no supervisor behind its control calls and no events:
    /// what the plugins benchmark makes instances of.
    pub async fn detached(
        host: &PluginHost,
        loaded: &super::LoadedControl,
        settings: pilot_core::manifest::PluginSettings,
    ) -> Result<ControlPlugin, String> {
        let name = loaded.description.name.clone();
        let http = settings.grants.http.clone();
        let control = settings.grants.control.clone();
        let grants = tokio::task::spawn_blocking(move || Grants::resolve(settings, None))
            .await
            .map_err(|e| e.to_string())?;
        Ok(ControlPlugin::new(Parts {
            engine: host.engine.clone(),
            pre: loaded.pre.clone(),
            description: loaded.description.clone(),
            file: loaded.file.display().to_string(),
            grants,
            access: ControlAccess::new(&name, control, Default::default(), no_events(), None),
            outgoing: OutgoingGrants::new(&name, http, no_events(), None),
            events: no_events(),
        }))
    }

    /// Makes a fresh instance and `init`s it, as every request does, then frees it (a request frees
    /// its instance after the answer has gone); returns how long the making took.
    pub async fn time_fresh_instance(&self) -> Result<Duration, String> {
        let started = std::time::Instant::now();
        let made = self.instance().await.map_err(|e| e.to_string())?;
        let took = started.elapsed();
        drop(made);
        Ok(took)
    }

    /// Builds the plugin from its parts; no instance exists yet.
    pub(super) fn new(p: Parts) -> ControlPlugin {
        let settings = p.grants.settings.clone();
        let name = p.description.name.clone();
        ControlPlugin {
            label: format!(
                "plugin `{name}` {}",
                pilot_core::manifest::escape_controls(&p.description.version)
            ),
            version: p.description.version.clone(),
            file: p.file,
            log: PluginLog::new(&name, p.events.clone()),
            limits: Limits::from_settings(&settings),
            config: settings
                .config
                .as_ref()
                .map_or("null".to_string(), |c| c.to_string()),
            name,
            engine: p.engine,
            pre: p.pre,
            grants: p.grants,
            access: p.access,
            outgoing: p.outgoing,
            events: p.events,
            counters: Arc::new(Counters::default()),
            failures: AtomicU32::new(0),
            requests: Arc::new(Semaphore::new(MAX_REQUESTS)),
            setup: std::sync::Mutex::new(None),
            spare: std::sync::Mutex::new(None),
        }
    }

    /// Returns the threads its code runs on.
    pub(crate) fn threads(&self) -> crate::threads::PluginThreads {
        self.engine.threads.clone()
    }

    /// Returns whether it is quarantined.
    pub fn quarantined(&self) -> bool {
        self.failures.load(Ordering::Relaxed) >= QUARANTINE_AFTER
    }

    /// Returns the longest a request waits for an answer: a fresh instance with `init`, then the
    /// handler, each under the call timeout.
    pub fn deadline(&self) -> Duration {
        self.limits.call_timeout * 2 + Duration::from_millis(20)
    }

    fn store(&self) -> Result<Store<StoreState>, CallError> {
        let mut state = StoreState::new(&self.grants, store_limits(&self.limits), &self.log)
            .map_err(|e| CallError::Trap(format!("cannot set up the sandbox: {e:#}")))?;
        state.control = Some(self.access.clone());
        state.outgoing = Outgoing(Some(self.outgoing.clone()));
        Ok(new_store(&self.engine, &self.limits, state))
    }

    /// Makes a fresh instance and configures it with `init`.
    pub(crate) async fn instance(&self) -> Result<(Live, Setup), CallError> {
        let mut store = self.store()?;
        let deadline = Sandbox::armed(&mut store, &self.limits)?;
        let instantiate = self.pre.instantiate_async(&mut store);
        let bindings = Sandbox::bounded(&self.engine, &self.limits, deadline, instantiate).await?;
        let deadline = Sandbox::armed(&mut store, &self.limits)?;
        let init = bindings
            .pilot_plugin_control_plugin()
            .call_init(&mut store, &self.config);
        let setup = Sandbox::bounded(&self.engine, &self.limits, deadline, init)
            .await?
            .map_err(|e| CallError::Plugin(error_text(&e)))?;
        Ok((Live { store, bindings }, setup))
    }

    /// Runs `call` on `live` under the limits.
    pub(crate) async fn call<R>(
        &self,
        live: &mut Live,
        call: impl for<'a> FnOnce(
            &'a PilotControl,
            &'a mut Store<StoreState>,
        ) -> crate::sandbox::Call<'a, R>,
    ) -> Result<R, CallError> {
        let deadline = Sandbox::armed(&mut live.store, &self.limits)?;
        let fuel_before = self.limits.fuel;
        let result = Sandbox::bounded(
            &self.engine,
            &self.limits,
            deadline,
            call(&live.bindings, &mut live.store),
        )
        .await;
        let used = fuel_before.saturating_sub(live.store.get_fuel().unwrap_or(0));
        self.counters.fuel.fetch_add(used, Ordering::Relaxed);
        result
    }

    /// Counts a finished call; traps and timeouts count toward the quarantine, a success resets it.
    pub(super) fn settle<R>(&self, what: &str, result: &Result<R, CallError>) {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let error = match result {
            Ok(_) => {
                self.failures.store(0, Ordering::Relaxed);
                return;
            }
            Err(e) => e.to_string(),
        };
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("{}: {what}: {error}", self.label);
        *self
            .counters
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(format!("{what}: {error}"));
        (self.events)(PluginEvent::CallFailed {
            plugin: self.name.clone(),
            call: what.to_string(),
            error,
        });
        if matches!(
            result,
            Err(CallError::Trap(_) | CallError::Interrupted(_) | CallError::Timeout(_))
        ) && self.failures.fetch_add(1, Ordering::Relaxed) + 1 == QUARANTINE_AFTER
        {
            self.counters.quarantined.store(true, Ordering::Relaxed);
            tracing::error!(
                "{}: quarantined after {QUARANTINE_AFTER} failed calls in a row; its requests are answered 503 and it gets no more events",
                self.label
            );
            (self.events)(PluginEvent::Quarantined {
                plugin: self.name.clone(),
            });
        }
    }

    /// Serves one HTTP request on a fresh instance (the request's path is the part after the mount
    /// point), waiting at most [`ControlPlugin::deadline`] for the whole answer.
    ///
    /// The request crosses to the plugin threads once and its answer comes back once: the handler
    /// runs, and its answer's body is read, on the plugin threads (at their priority), and the
    /// instance is freed there after the answer has gone.
    pub async fn serve(self: &Arc<Self>, mut request: http::Request<Bytes>) -> Served {
        if self.quarantined() {
            return Served::Quarantined;
        }
        // `wasi:http` needs an authority; the control plane's requests name none of their own.
        if !request.headers().contains_key(http::header::HOST) {
            request.headers_mut().insert(
                http::header::HOST,
                http::HeaderValue::from_static("localhost"),
            );
        }
        let Ok(permit) = self.requests.clone().try_acquire_owned() else {
            return Served::Busy;
        };
        let deadline = tokio::time::Instant::now() + self.deadline();
        let (answer_tx, answer_rx) = oneshot::channel();
        let me = self.clone();
        let started = self.engine.threads.spawn(async move {
            let answered = me.answer(request, answer_tx).await;
            drop(permit);
            if answered {
                me.make_spare().await;
            }
        });
        if !started {
            return Served::Failed("the plugin threads are shut down".into());
        }
        let r = tokio::time::timeout_at(deadline, answer_rx).await;
        match r {
            Ok(Ok(served)) => served,
            Err(_) => Served::Timeout(self.deadline()),
            Ok(Err(_)) => Served::Failed("its instance ended without a result".into()),
        }
    }

    /// Makes the next request's fresh instance now, off its path, unless one is waiting or the plugin
    /// is quarantined; a failure is left for that request to meet and report.
    async fn make_spare(&self) {
        let waiting = || {
            self.spare
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
        };
        if self.quarantined() || waiting() {
            return;
        }
        if let Ok((live, _)) = self.instance().await {
            *self.spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(live);
        }
    }

    /// Runs the handler on a fresh instance while reading its answer, and sends `to` how the request
    /// ended as soon as that is known: an answer only once the handler has returned (a body cut short
    /// by a handler stopped at its deadline, or trapping, is no answer), a body past the cap at once.
    /// Returns whether the handler returned.
    async fn answer(&self, request: http::Request<Bytes>, to: oneshot::Sender<Served>) -> bool {
        let mut to = Some(to);
        let mut send = |served: Served| {
            if let Some(to) = to.take() {
                let _ = to.send(served);
            }
        };
        let (tx, rx) = oneshot::channel();
        let mut instance = None;
        let read = read_answer(rx);
        tokio::pin!(read);
        let mut answer = None;
        let result = {
            let handled = self.handle(request, tx, &mut instance);
            tokio::pin!(handled);
            loop {
                tokio::select! {
                    biased;
                    result = &mut handled => break result,
                    read = &mut read, if answer.is_none() => {
                        // A failed answer (past the cap, cut off) is told at once.
                        answer = Some(read.map_err(&mut send));
                    }
                }
            }
        };
        self.settle("HTTP request", &result);
        let returned = result.is_ok();
        match result {
            Ok(()) => {
                let answer = match answer {
                    Some(answer) => answer,
                    // A handler that returned has written all it will; if its answer is not complete
                    // now, freeing the instance closes it and says why.
                    None => {
                        let read = match futures_util::FutureExt::now_or_never(&mut read) {
                            Some(read) => read,
                            None => {
                                drop(instance.take());
                                read.await
                            }
                        };
                        read.map_err(&mut send)
                    }
                };
                if let Ok(response) = answer {
                    send(Served::Answer(response));
                }
            }
            Err(CallError::Timeout(_) | CallError::Interrupted(_)) => {
                send(Served::Timeout(self.deadline()))
            }
            Err(e) => send(Served::Failed(e.to_string())),
        }
        // The instance is freed after the answer has gone: no part of the request's time.
        drop(instance);
        returned
    }

    /// Takes the spare fresh instance or makes one (kept in `instance`) and calls its handler with
    /// `request`, answering through `tx`.
    async fn handle(
        &self,
        request: http::Request<Bytes>,
        tx: oneshot::Sender<
            Result<http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>, ErrorCode>,
        >,
        instance: &mut Option<Live>,
    ) -> Result<(), CallError> {
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        let live = instance.insert(match spare {
            Some(live) => live,
            None => self.instance().await?.0,
        });
        let setup_error =
            |e: wasmtime::Error| CallError::Trap(format!("cannot pass the request: {e:#}"));
        let body = http_body_util::Full::new(request.body().clone()).map_err(
            |never: std::convert::Infallible| -> wasmtime_wasi_http::Error { match never {} },
        );
        let (parts, _) = request.into_parts();
        let incoming = live
            .store
            .data_mut()
            .http()
            .new_incoming_request(
                wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http,
                http::Request::from_parts(parts, body),
            )
            .map_err(setup_error)?;
        let out = live
            .store
            .data_mut()
            .http()
            .new_response_outparam(tx)
            .map_err(setup_error)?;
        self.call(live, |b, store| {
            Box::pin(
                b.wasi_http_incoming_handler()
                    .call_handle(store, incoming, out),
            )
        })
        .await
    }

    /// Returns what can be read about it.
    pub fn status(&self) -> PluginStatus {
        let c = &self.counters;
        let setup = self.setup.lock().unwrap_or_else(|p| p.into_inner());
        let mut provides = vec![format!("http /plugins/{}/", self.name)];
        if let Some(s) = setup.as_ref() {
            if !s.events.is_empty() {
                let kinds: Vec<&str> = s
                    .events
                    .iter()
                    .map(|k| super::events::kind_name(*k))
                    .collect();
                provides.push(format!("events {}", kinds.join(", ")));
            }
            if let Some(ms) = s.tick_ms {
                provides.push(format!("tick {ms} ms"));
            }
        }
        PluginStatus {
            name: self.name.clone(),
            version: self.version.clone(),
            file: self.file.clone(),
            provides,
            calls_total: c.calls.load(Ordering::Relaxed),
            failures_total: c.failures.load(Ordering::Relaxed),
            quarantined: self.quarantined(),
            fuel_consumed_total: c.fuel.load(Ordering::Relaxed),
            last_error: c
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// Reads the answer a handler sets, its body capped at [`MAX_RESPONSE_BYTES`].
async fn read_answer(
    rx: oneshot::Receiver<
        Result<http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>, ErrorCode>,
    >,
) -> Result<http::Response<Bytes>, Served> {
    let response = match rx.await {
        Ok(Ok(response)) => response,
        Ok(Err(code)) => {
            return Err(Served::Failed(format!(
                "it answered with the error {code:?}"
            )))
        }
        Err(_) => {
            return Err(Served::Failed(
                "it returned without setting a response".into(),
            ))
        }
    };
    let (parts, body) = response.into_parts();
    match http_body_util::Limited::new(body, MAX_RESPONSE_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(http::Response::from_parts(parts, collected.to_bytes())),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Served::TooLarge)
        }
        Err(e) => Err(Served::Failed(format!("its answer's body failed: {e}"))),
    }
}

/// Asks a fresh instance of a control plugin what it is (no `init`, nothing granted).
pub(super) async fn describe(
    host: &PluginHost,
    file: &Path,
    pre: &PilotControlPre<StoreState>,
) -> Result<ControlDescription, CallError> {
    let label = file
        .file_name()
        .map_or("plugin".into(), |n| n.to_string_lossy().into_owned());
    let log = PluginLog::new(&label, no_events());
    let limits = Limits::default();
    let grants = Grants::resolve(Default::default(), None);
    let state = StoreState::new(&grants, store_limits(&limits), &log)
        .map_err(|e| CallError::Trap(format!("cannot set up the sandbox: {e:#}")))?;
    let engine = host.engine.clone();
    let pre = pre.clone();
    let (tx, rx) = oneshot::channel();
    let e2 = engine.clone();
    let started = engine.threads.spawn(async move {
        let result = async {
            let mut store = new_store(&e2, &limits, state);
            let deadline = Sandbox::armed(&mut store, &limits)?;
            let bindings =
                Sandbox::bounded(&e2, &limits, deadline, pre.instantiate_async(&mut store)).await?;
            let deadline = Sandbox::armed(&mut store, &limits)?;
            let describe = bindings
                .pilot_plugin_control_plugin()
                .call_describe(&mut store);
            Sandbox::bounded(&e2, &limits, deadline, describe).await
        }
        .await;
        let _ = tx.send(result);
    });
    if !started {
        return Err(CallError::Trap("the plugin threads are shut down".into()));
    }
    rx.await
        .unwrap_or_else(|_| Err(CallError::Trap("its describe call stopped".into())))
}
