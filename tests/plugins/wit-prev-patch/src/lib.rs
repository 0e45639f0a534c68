//! `wit-prev-patch`: a pilot-host test plugin built against its own copy of the WIT, at `pilot:plugin@0.1.0`
//! (without the SDK, which binds pilot-host's own `wit/`). A ready strategy `wit-prev-patch` that is always ready.

#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "pilot-plugin" });
}

use bindings::exports::pilot::plugin::plugin::Guest;
use bindings::pilot::plugin::types::{
    Description, ExitStatus, LifecycleEvent, PluginError, ProcessInfo, ProcessStats, ReadyStatus,
    StatAction,
};

/// The plugin.
struct Next;

impl Guest for Next {
    fn describe() -> Description {
        Description {
            name: "wit-prev-patch".into(),
            version: "0.1.0".into(),
            ready_strategies: vec!["wit-prev-patch".into()],
            lifecycle_hooks: Vec::new(),
            stat_handlers: Vec::new(),
        }
    }

    fn init(_config: String) -> Result<(), PluginError> {
        Ok(())
    }

    fn ready_check(
        _strategy: String,
        _process: ProcessInfo,
        _params: String,
    ) -> Result<ReadyStatus, PluginError> {
        Ok(ReadyStatus::Ready)
    }

    fn lifecycle(
        hook: String,
        _event: LifecycleEvent,
        _process: ProcessInfo,
        _exit: Option<ExitStatus>,
    ) -> Result<(), PluginError> {
        Err(PluginError::UnknownName(hook))
    }

    fn stats(handler: String, _stats: Vec<ProcessStats>) -> Result<Vec<StatAction>, PluginError> {
        Err(PluginError::UnknownName(handler))
    }
}

bindings::export!(Next with_types_in bindings);
