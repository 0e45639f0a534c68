//! The restart schedule: immediate after a stable run, exponential with jitter after quick crashes,
//! and a windowed crash-loop budget that counts only quick exits (a run shorter than `min_uptime`), as
//! PM2 counts unstable restarts: a process that ran stably is always restarted, however often it is
//! killed. Pure logic over instants, so it is tested without waiting.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::manifest::RestartPolicy;

/// What to do after an exit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Restart after this delay.
    RestartAfter(Duration),
    /// Too many quick exits within the window: mark the process failed.
    GiveUp {
        /// Quick exits counted within the window.
        exits: usize,
        /// The window.
        window: Duration,
    },
}

/// The restart state of one process.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RestartPolicy,
    exits: VecDeque<Instant>,
    quick_crashes: u32,
}

impl Backoff {
    /// Starts a schedule with `policy`.
    pub fn new(policy: RestartPolicy) -> Backoff {
        Backoff {
            policy,
            exits: VecDeque::new(),
            quick_crashes: 0,
        }
    }

    /// Decides what follows an exit at `now` after a run of `uptime`; `unit` in [0, 1) picks the jitter.
    pub fn on_exit(&mut self, now: Instant, uptime: Duration, unit: f64) -> Decision {
        if uptime >= self.policy.min_uptime {
            self.quick_crashes = 0;
            return Decision::RestartAfter(Duration::ZERO);
        }
        let window = self.policy.window;
        while self
            .exits
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.exits.pop_front();
        }
        self.exits.push_back(now);
        if self.exits.len() > self.policy.max_restarts as usize {
            return Decision::GiveUp {
                exits: self.exits.len(),
                window,
            };
        }
        let exponent = self.quick_crashes.min(64) as i32;
        self.quick_crashes += 1;
        let base = self.policy.initial_delay.as_secs_f64() * self.policy.factor.powi(exponent);
        let capped = base.min(self.policy.max_delay.as_secs_f64());
        let spread = 1.0 + self.policy.jitter * (2.0 * unit - 1.0);
        Decision::RestartAfter(Duration::from_secs_f64((capped * spread).max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            min_uptime: Duration::from_secs(1),
            initial_delay: Duration::from_millis(100),
            factor: 2.0,
            max_delay: Duration::from_millis(500),
            jitter: 0.0,
            max_restarts: 5,
            window: Duration::from_secs(10),
        }
    }

    fn delay(d: Decision) -> Duration {
        match d {
            Decision::RestartAfter(d) => d,
            other => panic!("want a restart, got {other:?}"),
        }
    }

    #[test]
    fn quick_crashes_back_off_exponentially_up_to_the_cap() {
        let mut b = Backoff::new(RestartPolicy {
            max_restarts: 100,
            ..policy()
        });
        let t = Instant::now();
        let quick = Duration::from_millis(10);
        let delays: Vec<u128> = (0..6)
            .map(|i| delay(b.on_exit(t + Duration::from_millis(i), quick, 0.5)).as_millis())
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500, 500]);
    }

    #[test]
    fn a_stable_run_restarts_at_once_and_resets_the_backoff() {
        let mut b = Backoff::new(RestartPolicy {
            max_restarts: 100,
            ..policy()
        });
        let t = Instant::now();
        let quick = Duration::from_millis(10);
        delay(b.on_exit(t, quick, 0.5));
        delay(b.on_exit(t, quick, 0.5));
        assert_eq!(
            delay(b.on_exit(t, Duration::from_secs(5), 0.5)),
            Duration::ZERO
        );
        assert_eq!(delay(b.on_exit(t, quick, 0.5)), Duration::from_millis(100));
    }

    #[test]
    fn too_many_exits_in_the_window_give_up() {
        let mut b = Backoff::new(policy());
        let t = Instant::now();
        for i in 0..5 {
            delay(b.on_exit(t + Duration::from_secs(i), Duration::ZERO, 0.5));
        }
        assert_eq!(
            b.on_exit(t + Duration::from_secs(5), Duration::ZERO, 0.5),
            Decision::GiveUp {
                exits: 6,
                window: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn stable_runs_never_count_toward_the_budget() {
        let mut b = Backoff::new(policy());
        let t = Instant::now();
        // Killed 100 times in 10 s, each time after a stable run: always restarted at once.
        for i in 0..100u64 {
            let at = t + Duration::from_millis(100 * i);
            assert_eq!(
                delay(b.on_exit(at, Duration::from_secs(2), 0.5)),
                Duration::ZERO
            );
        }
        // Quick exits still count, from zero.
        for i in 0..5 {
            delay(b.on_exit(t + Duration::from_secs(11 + i), Duration::ZERO, 0.5));
        }
        assert!(matches!(
            b.on_exit(t + Duration::from_secs(16), Duration::ZERO, 0.5),
            Decision::GiveUp { exits: 6, .. }
        ));
    }

    #[test]
    fn exits_older_than_the_window_are_forgotten() {
        // One quick exit every 3 s: at most 4 fall in any 10 s window, under the budget of 5, so
        // every one is restarted, 20 times over 57 s.
        let mut b = Backoff::new(policy());
        let t = Instant::now();
        let decisions: Vec<Decision> = (0..20u64)
            .map(|i| b.on_exit(t + Duration::from_secs(3 * i), Duration::ZERO, 0.5))
            .collect();
        let restarts = decisions
            .iter()
            .filter(|d| matches!(d, Decision::RestartAfter(_)))
            .count();
        assert_eq!(restarts, 20, "{decisions:?}");
        assert_eq!(b.exits.len(), 4, "only the exits of the last 10 s are kept");
        // The same 20 exits one second apart fill the window: the sixth gives up.
        let mut packed = Backoff::new(policy());
        let first_give_up = (0..20u64)
            .position(|i| {
                let d = packed.on_exit(t + Duration::from_secs(i), Duration::ZERO, 0.5);
                matches!(d, Decision::GiveUp { .. })
            })
            .expect("a give-up");
        assert_eq!(first_give_up, 5);
    }

    #[test]
    fn jitter_spreads_the_delay_both_ways() {
        let p = RestartPolicy {
            jitter: 0.1,
            max_restarts: 100,
            ..policy()
        };
        let t = Instant::now();
        let low = delay(Backoff::new(p.clone()).on_exit(t, Duration::ZERO, 0.0));
        let high = delay(Backoff::new(p).on_exit(t, Duration::ZERO, 0.999_999));
        assert_eq!(low, Duration::from_millis(90));
        assert!(
            high > Duration::from_millis(109) && high <= Duration::from_millis(110),
            "{high:?}"
        );
    }
}
