//! `{{name}}`: a pilot-host plugin whose ready strategy `{{name}}` says a process is ready once a
//! file exists (`ready_params.path`, default `ready`, relative to the process's working directory).

use pilot_plugin_sdk::{
    export_plugin, log, Description, Params, Plugin, PluginError, ProcessInfo, ReadyStatus,
};

/// The plugin; it keeps no state.
#[derive(Default)]
struct {{camel}};

impl Plugin for {{camel}} {
    fn describe(&self) -> Description {
        Description::new("{{name}}", env!("CARGO_PKG_VERSION")).ready_strategy("{{name}}")
    }

    fn ready_check(
        &self,
        _strategy: &str,
        process: &ProcessInfo,
        params: &Params,
    ) -> Result<ReadyStatus, PluginError> {
        let path = std::path::Path::new(&process.working_directory).join(params.str_or("path", "ready")?);
        match std::fs::metadata(&path) {
            Ok(_) => Ok(ReadyStatus::Ready),
            Err(e) => {
                log::debug!("`{}`: {e}", path.display());
                Ok(ReadyStatus::not_yet(format!(
                    "`{}` does not exist yet (or its folder is not in `plugins.{{name}}.allow_read`)",
                    path.display()
                )))
            }
        }
    }
}

export_plugin!({{camel}});
