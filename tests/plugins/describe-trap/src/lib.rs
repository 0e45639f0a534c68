//! `describe-trap`: a pilot-host test plugin whose `describe` panics, so it traps before it ever says
//! what it is. The host must report the file as a broken plugin and carry on.

use pilot_plugin_sdk::{export_plugin, Description, Plugin};

/// The plugin.
#[derive(Default)]
struct DescribeTrap;

impl Plugin for DescribeTrap {
    fn describe(&self) -> Description {
        panic!("describe-trap: panicking in describe on purpose")
    }
}

export_plugin!(DescribeTrap);
