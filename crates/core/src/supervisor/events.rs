//! The supervisor's event stream: state changes, spawns, exits, readiness, restarts, give-ups, plugin
//! failures and dropped output, for tests, the control plane and anyone who subscribes.
//!
//! The stream is a bounded broadcast: sending never waits, and a subscriber that falls behind loses the
//! oldest events and is told how many ([`Missed`]), so a slow reader never slows supervision.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::state::State;
use crate::extension::PluginEvent;

/// Events kept for subscribers that are behind; older ones are dropped for them.
pub const CAPACITY: usize = 4096;

/// Something that happened; also read back (by `plugin check`'s spec files) in the shape it is
/// written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", deny_unknown_fields)]
pub enum Event {
    /// A process moved from one state to another.
    State {
        /// The process.
        process: String,
        /// The state it left.
        from: State,
        /// The state it is in now.
        to: State,
        /// Why, when there is more to say (failed, skipped, stopped).
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A child was spawned.
    Spawned {
        /// The process.
        process: String,
        /// The child's pid (also its process group).
        pid: u32,
    },
    /// A process became ready (by its ready strategy, or at once without one).
    Ready {
        /// The process.
        process: String,
        /// Its pid.
        pid: u32,
        /// Milliseconds from spawn to ready.
        after_ms: f64,
    },
    /// A child exited (on its own or stopped).
    Exited {
        /// The process.
        process: String,
        /// The pid that exited.
        pid: u32,
        /// Its exit code, if it exited.
        code: Option<i32>,
        /// The signal that ended it, if one did.
        signal: Option<i32>,
        /// Seconds it ran.
        uptime_sec: f64,
    },
    /// A restart was scheduled after an exit.
    RestartScheduled {
        /// The process.
        process: String,
        /// Seconds until the restart.
        delay_sec: f64,
        /// Restarts so far.
        restarts: u32,
    },
    /// The supervisor gave up on a process (crash loop, not ready in time, cannot start).
    GaveUp {
        /// The process.
        process: String,
        /// Why.
        reason: String,
    },
    /// A descendant that left its process's group was adopted (pilot-host is a child subreaper).
    Adopted {
        /// The process it came from, if known.
        process: Option<String>,
        /// The adopted pid.
        pid: u32,
    },
    /// Lines of child output were not printed (the output was too slow); they are still kept.
    OutputDropped {
        /// How many lines.
        lines: u64,
    },
    /// A plugin failed a call, was quarantined, or had log lines dropped.
    Plugin(PluginEvent),
    /// The manifest was reloaded.
    Reloaded {
        /// Processes added.
        added: Vec<String>,
        /// Processes removed.
        removed: Vec<String>,
        /// Processes changed (restarted).
        changed: Vec<String>,
    },
    /// The final, ordered stop began.
    ShuttingDown,
}

/// An event with its sequence number and time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    /// Increases by one per event, from 1.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// The sending side of the event stream; cheap to clone.
#[derive(Debug, Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<EventRecord>>,
    seq: Arc<Mutex<u64>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl Bus {
    /// Creates a stream keeping [`CAPACITY`] events for slow subscribers.
    pub fn new() -> Bus {
        Bus {
            tx: broadcast::channel(CAPACITY).0,
            seq: Arc::new(Mutex::new(0)),
        }
    }

    /// Sends `event` to every subscriber; never waits.
    pub fn send(&self, event: Event) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // Numbered and sent under one lock, so sequence numbers arrive in order.
        let mut seq = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        *seq += 1;
        let _ = self.tx.send(Arc::new(EventRecord {
            seq: *seq,
            at_ms,
            event,
        }));
    }

    /// Returns a subscription to events sent from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
        }
    }
}

/// Why [`Subscription::recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Missed {
    /// The subscriber fell behind and this many events were dropped for it; the next call goes on.
    #[error("{0} events were missed (the subscriber was too slow)")]
    Lagged(u64),
    /// The supervisor is gone; no more events will come.
    #[error("the event stream ended")]
    Closed,
}

/// A subscriber's end of the event stream.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Arc<EventRecord>>,
}

impl Subscription {
    /// Waits for the next event.
    pub async fn recv(&mut self) -> Result<Arc<EventRecord>, Missed> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => Missed::Lagged(n),
            broadcast::error::RecvError::Closed => Missed::Closed,
        })
    }

    /// Returns the next event if one is waiting (skipping past a lag), without waiting.
    pub fn try_recv(&mut self) -> Option<Arc<EventRecord>> {
        loop {
            match self.rx.try_recv() {
                Ok(record) => return Some(record),
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_are_numbered_and_a_slow_subscriber_is_told_what_it_missed() {
        let bus = Bus::new();
        let mut sub = bus.subscribe();
        for _ in 0..CAPACITY + 10 {
            bus.send(Event::ShuttingDown);
        }
        assert_eq!(sub.recv().await, Err(Missed::Lagged(10)));
        let next = sub.recv().await.expect("an event after the lag");
        assert_eq!(next.seq, 11);
        let json = serde_json::to_value(&*next).unwrap();
        assert_eq!(json["type"], "shutting_down");
        assert_eq!(json["seq"], 11);
    }
}
