//! pilot-host supervises native processes described in a YAML or JSON manifest.
//!
//! The layers, each a crate that depends only on those before it:
//!
//! - `pilot-core` ([`manifest`], [`graph`], [`supervisor`], [`extension`]): the manifest, the
//!   dependency graph and the supervisor; no WebAssembly, no HTTP server, no command line.
//! - `pilot-plugins` ([`plugin`]): the WebAssembly plugin runtime: sandboxes, limits, grants, the
//!   compile cache, control plugins, `plugin check`.
//! - `pilot-control` ([`control`]): the control plane: HTTP API, dashboard and metrics on a unix
//!   socket and TCP, and Process Pilot's TCP protocol.
//! - this crate, the `pilot-host` binary's: [`cli`] (the command line: it alone parses arguments,
//!   prints and chooses exit codes), [`app`] (what `pilot-host run` does, wiring the layers
//!   together), [`ctl`] (the control plane's client), [`scaffold`] (`plugin new`) and [`render`]
//!   (the dependency graph as Graphviz DOT).

pub use pilot_control as control;
pub use pilot_core::{extension, graph, manifest, supervisor};
pub use pilot_plugins as plugin;

pub mod app;
pub mod cli;
pub mod ctl;
pub mod plugin_check;
pub mod render;
pub mod scaffold;
