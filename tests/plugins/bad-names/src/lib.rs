//! `bad-names`: a pilot-host test plugin that describes itself with names breaking the naming rule
//! (shadowing `tcp`, empty, with a path separator, whitespace, a terminal escape) and a version holding
//! an escape. `run`, `validate` and `plugin check` must refuse it alike and never print the escapes.

use pilot_plugin_sdk::{export_plugin, Description, Plugin};

/// The plugin.
#[derive(Default)]
struct BadNames;

impl Plugin for BadNames {
    fn describe(&self) -> Description {
        Description::new("bad-names", "1.0\x1b[0m")
            .ready_strategy("tcp")
            .ready_strategy("")
            .ready_strategy("../etc")
            .lifecycle_hook("two words")
            .stat_handler("red\x1b[31m")
    }
}

export_plugin!(BadNames);
