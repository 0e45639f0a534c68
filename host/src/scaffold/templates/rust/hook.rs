//! `{{name}}`: a pilot-host plugin whose lifecycle hook `{{name}}` logs every event of the processes
//! that name it.

use pilot_plugin_sdk::{
    export_plugin, log, Description, ExitStatus, LifecycleEvent, Plugin, PluginError, ProcessInfo,
};

/// The plugin; it keeps no state.
#[derive(Default)]
struct {{camel}};

impl Plugin for {{camel}} {
    fn describe(&self) -> Description {
        Description::new("{{name}}", env!("CARGO_PKG_VERSION")).lifecycle_hook("{{name}}")
    }

    fn lifecycle(
        &mut self,
        _hook: &str,
        event: LifecycleEvent,
        process: &ProcessInfo,
        exit: Option<ExitStatus>,
    ) -> Result<(), PluginError> {
        let pid = process.pid.map_or("-".to_string(), |p| p.to_string());
        let exit = match exit {
            Some(ExitStatus { code: Some(code), .. }) => format!(", exit code {code}"),
            Some(ExitStatus { signal: Some(signal), .. }) => format!(", signal {signal}"),
            _ => String::new(),
        };
        log::info!("{event} of `{}` (pid {pid}{exit})", process.name);
        Ok(())
    }
}

export_plugin!({{camel}});
