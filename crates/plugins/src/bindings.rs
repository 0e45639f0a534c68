//! The host side of the WIT contract in `wit/`, bound once.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "pilot-plugin",
    imports: { default: trappable },
    exports: { default: async },
});

pub use self::pilot::plugin::host::LogLevel;
pub use self::pilot::plugin::types::{
    Description, ExitStatus, LifecycleEvent, PluginError, ProcessInfo, ProcessStats, ReadyStatus,
    StatAction, StatActionKind,
};

/// Returns a plugin's own error as text.
pub fn error_text(e: &PluginError) -> String {
    let sanitize = super::log::sanitize;
    match e {
        PluginError::InvalidConfig(m) => format!("invalid configuration: {}", sanitize(m)),
        PluginError::UnknownName(m) => format!("unknown name: {}", sanitize(m)),
        PluginError::Unavailable(m) => format!("unavailable: {}", sanitize(m)),
        PluginError::Failed(m) => format!("failed: {}", sanitize(m)),
    }
}
