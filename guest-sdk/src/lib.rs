//! Write [pilot-host] plugins in Rust: ready strategies, lifecycle hooks and stat handlers that run as
//! sandboxed WebAssembly components.
//!
//! Implement [`Plugin`] for a type, export it with [`export_plugin!`], and build the crate as a
//! `cdylib` with `cargo build --release --target wasm32-wasip2`. The generated bindings of the WIT
//! contract (`pilot:plugin@0.1.1`) stay inside this crate; a plugin only sees the types re-exported
//! here.
//!
//! - [`Plugin`]: what a plugin provides; every method but [`Plugin::describe`] has a default.
//! - [`Params`]: typed reading of a process's `ready_params` (and of the plugin's config).
//! - [`log`]: lines in the host's log, tagged with the plugin's name.
//! - [`ProcessInfo`], [`ReadyStatus`], [`PluginError`], [`LifecycleEvent`], [`ExitStatus`],
//!   [`ProcessStats`], [`StatAction`]: the data of the contract.
//! - [`control`]: control plugins (the `pilot-control` world): HTTP endpoints under
//!   `/plugins/<name>/`, supervisor events and ticks, control calls, outgoing HTTP; exported with
//!   [`export_control!`].
//!
//! ```no_run
//! use pilot_plugin_sdk::{export_plugin, Description, Params, Plugin, PluginError, ProcessInfo, ReadyStatus};
//!
//! /// Ready once the process has been restarted at least `min_restarts` times (a toy).
//! #[derive(Default)]
//! struct Patience;
//!
//! impl Plugin for Patience {
//!     fn describe(&self) -> Description {
//!         Description::new("patience", env!("CARGO_PKG_VERSION")).ready_strategy("patience")
//!     }
//!
//!     fn ready_check(&self, strategy: &str, process: &ProcessInfo, params: &Params) -> Result<ReadyStatus, PluginError> {
//!         let wanted = params.u64_or("min_restarts", 1)?;
//!         if u64::from(process.restart_count) >= wanted {
//!             Ok(ReadyStatus::Ready)
//!         } else {
//!             Ok(ReadyStatus::not_yet(format!("{} of {wanted} restarts", process.restart_count)))
//!         }
//!     }
//! }
//!
//! export_plugin!(Patience);
//! ```
//!
//! [pilot-host]: https://github.com/pilot-host/pilot-host

extern crate self as pilot_plugin_sdk;

mod adapter;
pub mod control;
pub mod log;
mod params;
mod types;

pub use params::Params;
pub use serde_json;

pub use __private::bindings::pilot::plugin::types::{
    Description, ExitStatus, LifecycleEvent, PluginError, ProcessInfo, ProcessStats, ReadyStatus,
    StatAction, StatActionKind,
};

/// A pilot-host plugin: the ready strategies, lifecycle hooks and stat handlers it provides.
///
/// The host creates a fresh instance (with [`Default`]), calls [`describe`](Plugin::describe), then
/// [`init`](Plugin::init) with the manifest's `plugins.<name>.config`, and then the other methods as
/// processes need them. The SDK answers calls for names that `describe` does not list with
/// [`PluginError::UnknownName`] before they reach the plugin.
///
/// State kept in `self` lives as long as the instance. The host discards an instance after a trap (a
/// panic, running out of fuel or memory, a deadline), so a plugin must tolerate starting over.
///
/// Every call runs under a deadline: answer at once. A ready check in particular is polled by the
/// host at its own interval, so it must never loop or sleep waiting for readiness.
pub trait Plugin: Default + 'static {
    /// Says what the plugin provides; the manifest refers to these names.
    ///
    /// Called when the plugin is loaded, on an instance of its own: the answer must not depend on
    /// configuration.
    fn describe(&self) -> Description;

    /// Configures the instance with the manifest's `plugins.<name>.config` (`Null` when there is none).
    ///
    /// The default accepts any configuration and ignores it. [`Params::config`] reads it with clear
    /// `invalid-config` errors.
    fn init(&mut self, config: serde_json::Value) -> Result<(), PluginError> {
        let _ = config;
        Ok(())
    }

    /// Checks whether `process` is ready by `strategy`, with its `ready_params` in `params`.
    ///
    /// Answer [`ReadyStatus::Ready`], [`ReadyStatus::NotYet`] with a reason (shown if the deadline
    /// passes), or an error: [`PluginError::InvalidConfig`] when the params are wrong. Never wait.
    fn ready_check(
        &self,
        strategy: &str,
        process: &ProcessInfo,
        params: &Params,
    ) -> Result<ReadyStatus, PluginError> {
        let _ = (process, params);
        Err(PluginError::unknown_name(format!(
            "this plugin has no ready strategy `{strategy}`"
        )))
    }

    /// Runs lifecycle hook `hook` at `event` of `process`; `exit` is set for
    /// [`LifecycleEvent::OnShutdown`].
    fn lifecycle(
        &mut self,
        hook: &str,
        event: LifecycleEvent,
        process: &ProcessInfo,
        exit: Option<ExitStatus>,
    ) -> Result<(), PluginError> {
        let _ = (event, process, exit);
        Err(PluginError::unknown_name(format!(
            "this plugin has no lifecycle hook `{hook}`"
        )))
    }

    /// Handles the latest `stats` of the processes that name stat handler `handler`, and answers the
    /// actions to take; the host applies them only to processes that name `handler`.
    fn stats(
        &mut self,
        handler: &str,
        stats: &[ProcessStats],
    ) -> Result<Vec<StatAction>, PluginError> {
        let _ = stats;
        Err(PluginError::unknown_name(format!(
            "this plugin has no stat handler `{handler}`"
        )))
    }
}

/// Exports a [`Plugin`] type as the component's implementation of `pilot:plugin/plugin@0.1.1`.
///
/// Use it once, in the plugin crate's `lib.rs`, with a type that implements [`Plugin`] (and so
/// [`Default`]):
///
/// ```no_run
/// # use pilot_plugin_sdk::{Description, Plugin};
/// #[derive(Default)]
/// struct MyPlugin;
///
/// impl Plugin for MyPlugin {
///     fn describe(&self) -> Description {
///         Description::new("my-plugin", "0.1.0").lifecycle_hook("my-hook")
///     }
/// }
///
/// pilot_plugin_sdk::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            type PilotPluginExport = $crate::__private::Adapter<$plugin>;
            $crate::__private::bindings::export!(
                PilotPluginExport with_types_in $crate::__private::bindings
            );
        };
    };
}

/// Exports a [`control::ControlPlugin`] type as the component's implementation of the
/// `pilot-control` world (`pilot:plugin/control-plugin` and `wasi:http/incoming-handler`).
///
/// ```no_run
/// use pilot_plugin_sdk::control::{ControlDescription, ControlPlugin, Request, Response};
///
/// #[derive(Default)]
/// struct Hello;
///
/// impl ControlPlugin for Hello {
///     fn describe(&self) -> ControlDescription {
///         ControlDescription::new("hello", "0.1.0")
///     }
///
///     fn handle(&mut self, request: Request) -> Response {
///         Response::text(200, format!("hello from {}\n", request.path))
///     }
/// }
///
/// pilot_plugin_sdk::export_control!(Hello);
/// ```
#[macro_export]
macro_rules! export_control {
    ($plugin:ty) => {
        const _: () = {
            type PilotControlExport = $crate::__private::ControlAdapter<$plugin>;
            $crate::__private::control_bindings::export_control!(
                PilotControlExport with_types_in $crate::__private::control_bindings
            );
        };
    };
}

/// Implementation details used by [`export_plugin!`] and [`export_control!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::adapter::Adapter;
    pub use crate::control::adapter::ControlAdapter;
    pub use wit_bindgen::rt;

    /// The bindings of the `pilot-control` world, with the types it shares with `pilot-plugin`
    /// taken from [`bindings`].
    #[allow(missing_docs)]
    pub mod control_bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "pilot-control",
            pub_export_macro: true,
            export_macro_name: "export_control",
            runtime_path: "pilot_plugin_sdk::__private::rt",
            with: {
                "pilot:plugin/types@0.1.1": crate::__private::bindings::pilot::plugin::types,
                "pilot:plugin/host@0.1.1": crate::__private::bindings::pilot::plugin::host,
            },
            generate_all,
        });
    }

    /// The bindings of `wit/`, generated once, here.
    #[allow(missing_docs)]
    pub mod bindings {
        wit_bindgen::generate!({
            path: "../wit",
            world: "pilot-plugin",
            pub_export_macro: true,
            runtime_path: "pilot_plugin_sdk::__private::rt",
            additional_derives: [PartialEq],
        });
    }
}
