//! A control plugin's events and ticks: a forwarder on the supervision runtime drains the event stream
//! into the plugin's queue (so a slow plugin never makes the stream drop events for it), and a lane on
//! the plugin threads calls `on-event` and `on-tick` on one long-lived instance, in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::bindings::{Event, EventKind, Setup};
use super::runtime::{ControlPlugin, Live};
use crate::bindings::error_text;
use crate::sandbox::CallError;
use pilot_core::extension::PluginEvent;
use pilot_core::supervisor::{self, EventRecord, Subscription};

/// Events queued for one plugin before further ones are dropped for it.
pub const QUEUE: usize = 10_000;

/// The shortest pause between two ticks.
pub const MIN_TICK: Duration = Duration::from_millis(100);

/// Returns the kind's name, as the manifest and `ctl` show it.
pub fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::StateChanged => "state-changed",
        EventKind::Spawned => "spawned",
        EventKind::Ready => "ready",
        EventKind::Exited => "exited",
        EventKind::RestartScheduled => "restart-scheduled",
        EventKind::GaveUp => "gave-up",
        EventKind::Adopted => "adopted",
        EventKind::Reloaded => "reloaded",
        EventKind::Plugin => "plugin",
        EventKind::ShuttingDown => "shutting-down",
    }
}

/// Returns the plugin's view of `record`, or `None` for events plugins do not get (dropped output,
/// and the plugin's own plugin events, which would feed back into it).
pub(crate) fn event_of(record: &EventRecord, me: &str) -> Option<Event> {
    use supervisor::Event as E;
    let (kind, process) = match &record.event {
        E::State { process, .. } => (EventKind::StateChanged, Some(process.clone())),
        E::Spawned { process, .. } => (EventKind::Spawned, Some(process.clone())),
        E::Ready { process, .. } => (EventKind::Ready, Some(process.clone())),
        E::Exited { process, .. } => (EventKind::Exited, Some(process.clone())),
        E::RestartScheduled { process, .. } => (EventKind::RestartScheduled, Some(process.clone())),
        E::GaveUp { process, .. } => (EventKind::GaveUp, Some(process.clone())),
        E::Adopted { process, .. } => (EventKind::Adopted, process.clone()),
        E::Reloaded { .. } => (EventKind::Reloaded, None),
        E::ShuttingDown => (EventKind::ShuttingDown, None),
        E::OutputDropped { .. } => return None,
        E::Plugin(p) if plugin_of(p) == me => return None,
        E::Plugin(_) => (EventKind::Plugin, None),
    };
    Some(Event {
        seq: record.seq,
        at_ms: record.at_ms,
        kind,
        process,
        json: serde_json::to_string(record).unwrap_or_default(),
    })
}

fn plugin_of(e: &PluginEvent) -> &str {
    match e {
        PluginEvent::CallFailed { plugin, .. }
        | PluginEvent::Quarantined { plugin }
        | PluginEvent::Denied { plugin, .. }
        | PluginEvent::EventsDropped { plugin, .. }
        | PluginEvent::LogDropped { plugin, .. } => plugin,
    }
}

/// What the lane is told.
pub(super) enum Lane {
    /// An event to deliver.
    Event(Event),
    /// Deliver what is queued, then end and say so.
    Stop(oneshot::Sender<()>),
}

/// Drains `subscription` into the lane's queue, keeping the kinds in `setup`, until `stop` fires;
/// then forwards what the stream still holds and tells the lane to stop.
pub(super) async fn forward(
    plugin: Arc<ControlPlugin>,
    mut subscription: Subscription,
    setup: Setup,
    lane: mpsc::Sender<Lane>,
    mut stop: oneshot::Receiver<oneshot::Sender<()>>,
) {
    let dropped = AtomicU64::new(0);
    let take = |record: &EventRecord| {
        if let Some(event) =
            event_of(record, &plugin.name).filter(|e| setup.events.contains(&e.kind))
        {
            if lane.try_send(Lane::Event(event)).is_err() {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let done = loop {
        tokio::select! {
            biased;
            record = subscription.recv() => match record {
                Ok(record) => take(&record),
                Err(supervisor::Missed::Lagged(n)) => { dropped.fetch_add(n, Ordering::Relaxed); }
                Err(supervisor::Missed::Closed) => break None,
            },
            done = &mut stop => break done.ok(),
        }
        report_dropped(&plugin, &dropped);
    };
    while let Some(record) = subscription.try_recv() {
        take(&record);
    }
    report_dropped(&plugin, &dropped);
    if let Some(done) = done {
        // The lane answers `done` once it has delivered the queue.
        let _ = lane.send(Lane::Stop(done)).await;
    }
}

fn report_dropped(plugin: &ControlPlugin, dropped: &AtomicU64) {
    let count = dropped.swap(0, Ordering::Relaxed);
    if count > 0 {
        tracing::warn!(
            "{}: {count} events were dropped for it (its queue of {QUEUE} was full)",
            plugin.label
        );
        (plugin.events)(PluginEvent::EventsDropped {
            plugin: plugin.name.clone(),
            count,
        });
    }
}

/// Calls `on-event` for each queued event and `on-tick` every `setup.tick_ms`, on `live` (made afresh
/// after a failure), until told to stop or the plugin is quarantined.
pub(super) async fn lane(
    plugin: Arc<ControlPlugin>,
    live: Live,
    setup: Setup,
    mut queue: mpsc::Receiver<Lane>,
) {
    let mut live = Some(live);
    let tick = setup
        .tick_ms
        .map(|ms| Duration::from_millis(ms.into()).max(MIN_TICK));
    let mut ticker = tick.map(|t| {
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + t, t);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    loop {
        let next = tokio::select! {
            msg = queue.recv() => msg,
            _ = async { ticker.as_mut().expect("ticking").tick().await }, if ticker.is_some() => {
                deliver(&plugin, &mut live, None).await;
                continue;
            }
        };
        match next {
            Some(Lane::Event(event)) => deliver(&plugin, &mut live, Some(event)).await,
            Some(Lane::Stop(done)) => {
                let _ = done.send(());
                break;
            }
            None => break,
        }
    }
    plugin.log.flush_final();
}

/// Delivers one event (or a tick) to the live instance, making one first if there is none.
async fn deliver(plugin: &ControlPlugin, live: &mut Option<Live>, event: Option<Event>) {
    if plugin.quarantined() {
        return;
    }
    let what = match &event {
        Some(e) => format!("on-event `{}` (seq {})", kind_name(e.kind), e.seq),
        None => "on-tick".to_string(),
    };
    if live.is_none() {
        match plugin.instance().await {
            Ok((fresh, _)) => *live = Some(fresh),
            Err(e) => {
                plugin.settle::<()>(&what, &Err(e));
                return;
            }
        }
    }
    let instance = live.as_mut().expect("made above");
    let result = plugin
        .call(instance, move |b, store| {
            Box::pin(async move {
                let exports = b.pilot_plugin_control_plugin();
                match event {
                    Some(event) => exports.call_on_event(store, &event).await,
                    None => exports.call_on_tick(store).await,
                }
            })
        })
        .await;
    let result = match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CallError::Plugin(error_text(&e))),
        Err(e) => {
            // A trap or a timeout: the instance cannot be entered again.
            *live = None;
            Err(e)
        }
    };
    plugin.settle(&what, &result);
    let _ = plugin.log.flush_notice();
}
