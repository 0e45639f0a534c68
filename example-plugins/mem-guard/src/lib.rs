//! `mem-guard`: a pilot-host plugin whose stat handler `mem-guard` restarts a process whose resident
//! memory stays above a limit for several samples in a row: a leak gets a fresh start, a short spike
//! does not.
//!
//! ```yaml
//! stats_interval_sec: 1.0
//! processes:
//!   - name: worker
//!     path: ./worker
//!     stat_handlers: [mem-guard]
//! plugins:
//!   mem-guard:
//!     config: { max_rss_mib: 512, samples: 3 }   # restart after 3 samples in a row above 512 MiB
//! ```
//!
//! Config: `max_rss_mib` (required), `samples` (default 3, at least 1), `action` (`restart`, the
//! default, or `stop`).
//!
//! The count of samples above the limit is kept in the plugin instance. The host discards an instance
//! after a trap or a timed-out call, and the next one starts counting from zero, so a restart can
//! then come up to `samples - 1` samples late; it is never early.

use std::collections::BTreeMap;

use pilot_plugin_sdk::{
    export_plugin, log, serde_json, Description, Params, Plugin, PluginError, ProcessStats,
    StatAction,
};

const MIB: u64 = 1024 * 1024;

/// What to do to a process that stays above the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Restart,
    Stop,
}

/// The configuration from `plugins.mem-guard.config`.
#[derive(Debug, Clone, PartialEq)]
struct Limits {
    max_rss_bytes: u64,
    samples: u32,
    action: Action,
}

/// The plugin: its limits and, per process, how many samples in a row were above them.
#[derive(Default)]
struct MemGuard {
    limits: Option<Limits>,
    above: BTreeMap<String, Streak>,
}

/// Consecutive samples above the limit during one run of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Streak {
    restarts: u32,
    count: u32,
}

impl Plugin for MemGuard {
    fn describe(&self) -> Description {
        Description::new("mem-guard", env!("CARGO_PKG_VERSION")).stat_handler("mem-guard")
    }

    fn init(&mut self, config: serde_json::Value) -> Result<(), PluginError> {
        self.limits = Some(parse_limits(&Params::config(config))?);
        Ok(())
    }

    fn stats(
        &mut self,
        _handler: &str,
        stats: &[ProcessStats],
    ) -> Result<Vec<StatAction>, PluginError> {
        let limits = self.limits.clone().ok_or_else(|| {
            PluginError::invalid_config(
                "`plugins.mem-guard.config.max_rss_mib` is required (for example `{ max_rss_mib: 512 }`)",
            )
        })?;
        Ok(stats
            .iter()
            .filter_map(|s| self.observe(&limits, s))
            .collect())
    }
}

impl MemGuard {
    /// Counts one sample of a process; returns an action once it was above the limit `samples` times
    /// in a row.
    fn observe(&mut self, limits: &Limits, s: &ProcessStats) -> Option<StatAction> {
        let fresh = Streak {
            restarts: s.restarts,
            count: 0,
        };
        let streak = self.above.entry(s.name.clone()).or_insert(fresh);
        if streak.restarts != s.restarts || s.rss_bytes <= limits.max_rss_bytes {
            // A new run, or back under the limit: start over.
            *streak = fresh;
            return None;
        }
        streak.count += 1;
        if streak.count < limits.samples {
            return None;
        }
        *streak = fresh;
        let reason = format!(
            "resident memory above {} MiB for {} samples in a row (now {} MiB)",
            limits.max_rss_bytes / MIB,
            limits.samples,
            s.rss_bytes / MIB
        );
        log::warn!("`{}`: {reason}", s.name);
        Some(match limits.action {
            Action::Restart => StatAction::restart(&s.name, reason),
            Action::Stop => StatAction::stop(&s.name, reason),
        })
    }
}

/// Reads the limits from the plugin's config.
fn parse_limits(config: &Params) -> Result<Limits, PluginError> {
    let max_rss_mib = config.u64("max_rss_mib")?;
    let samples = config.u64_or("samples", 3)?;
    let samples = u32::try_from(samples)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| {
            PluginError::invalid_config(format!(
                "`config.samples` must be between 1 and {}, got `{samples}`",
                u32::MAX
            ))
        })?;
    let action = match config.str_or("action", "restart")? {
        "restart" => Action::Restart,
        "stop" => Action::Stop,
        other => {
            return Err(PluginError::invalid_config(format!(
                "`config.action` must be `restart` or `stop`, got `{other}`"
            )))
        }
    };
    Ok(Limits {
        max_rss_bytes: max_rss_mib.saturating_mul(MIB),
        samples,
        action,
    })
}

export_plugin!(MemGuard);

#[cfg(test)]
mod tests {
    use super::*;
    use pilot_plugin_sdk::serde_json::json;
    use pilot_plugin_sdk::StatActionKind;

    fn sample(name: &str, rss_mib: u64, restarts: u32) -> ProcessStats {
        ProcessStats {
            name: name.into(),
            pid: Some(1),
            cpu_percent: 0.0,
            max_cpu_percent: 0.0,
            rss_bytes: rss_mib * MIB,
            max_rss_bytes: rss_mib * MIB,
            restarts,
            uptime_sec: 1.0,
        }
    }

    fn guard(config: serde_json::Value) -> MemGuard {
        let mut g = MemGuard::default();
        g.init(config).unwrap();
        g
    }

    #[test]
    fn restarts_after_consecutive_samples_only() {
        let mut g = guard(json!({ "max_rss_mib": 100, "samples": 3 }));
        let mut tick = |rss, restarts| g.stats("mem-guard", &[sample("w", rss, restarts)]).unwrap();
        assert!(tick(150, 0).is_empty());
        assert!(tick(150, 0).is_empty());
        assert!(
            tick(50, 0).is_empty(),
            "dropping under the limit resets the count"
        );
        assert!(tick(150, 0).is_empty());
        assert!(tick(150, 0).is_empty());
        let actions = tick(150, 0);
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].kind, StatActionKind::Restart);
        assert_eq!(actions[0].process, "w");
        assert!(tick(150, 1).is_empty(), "a new run starts counting again");
    }

    #[test]
    fn can_stop_instead() {
        let mut g = guard(json!({ "max_rss_mib": 1, "samples": 1, "action": "stop" }));
        let actions = g
            .stats("mem-guard", &[sample("a", 2, 0), sample("b", 1, 0)])
            .unwrap();
        assert_eq!(actions.len(), 1);
        assert_eq!(
            (actions[0].kind, actions[0].process.as_str()),
            (StatActionKind::Stop, "a")
        );
    }

    #[test]
    fn bad_config_is_invalid_config() {
        let err = |c| match MemGuard::default().init(c).unwrap_err() {
            PluginError::InvalidConfig(m) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            err(json!(null)),
            "`config.max_rss_mib` is required (a whole number) and missing"
        );
        assert!(err(json!({ "max_rss_mib": 1, "samples": 0 })).contains("`config.samples`"));
        assert!(err(json!({ "max_rss_mib": 1, "action": "kill" })).contains("`config.action`"));
        let missing = MemGuard::default().stats("mem-guard", &[]).unwrap_err();
        assert!(matches!(missing, PluginError::InvalidConfig(_)));
    }
}
