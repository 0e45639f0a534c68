//! `{{name}}`: a pilot-host plugin whose stat handler `{{name}}` restarts a process whose resident
//! memory is above `config.max_rss_mib` (default 512).

use pilot_plugin_sdk::serde_json::Value;
use pilot_plugin_sdk::{
    export_plugin, Description, Params, Plugin, PluginError, ProcessStats, StatAction,
    StatActionKind,
};

/// The plugin and its configured limit.
struct {{camel}} {
    max_rss_mib: u64,
}

impl Default for {{camel}} {
    fn default() -> Self {
        {{camel}} { max_rss_mib: 512 }
    }
}

impl Plugin for {{camel}} {
    fn describe(&self) -> Description {
        Description::new("{{name}}", env!("CARGO_PKG_VERSION")).stat_handler("{{name}}")
    }

    fn init(&mut self, config: Value) -> Result<(), PluginError> {
        self.max_rss_mib = Params::config(config).u64_or("max_rss_mib", 512)?;
        Ok(())
    }

    fn stats(&mut self, _handler: &str, stats: &[ProcessStats]) -> Result<Vec<StatAction>, PluginError> {
        Ok(stats
            .iter()
            .filter(|s| s.rss_bytes >> 20 > self.max_rss_mib)
            .map(|s| StatAction {
                kind: StatActionKind::Restart,
                process: s.name.clone(),
                reason: format!("RSS {} MiB is above {} MiB", s.rss_bytes >> 20, self.max_rss_mib),
            })
            .collect())
    }
}

export_plugin!({{camel}});
