//! pilot-host supervises native processes described in a YAML or JSON manifest.
//!
//! The map of the crate:
//!
//! - [`manifest`]: reading and validating manifests into a [`manifest::Manifest`], and its JSON Schema.
//! - [`graph`]: the dependency graph: start levels, stop order, cycles.
//! - [`render`]: the dependency graph as Graphviz DOT, and rendering it with Graphviz.
//! - [`supervisor`]: starting, watching, restarting and stopping the processes; the library API.
//! - [`extension`]: where plugins plug in (ready strategies, lifecycle hooks, stat handlers).
//! - [`plugin`]: the WebAssembly plugin runtime: sandboxes, limits, grants, the compile cache, `plugin check`.
//! - [`control`]: the control plane: HTTP API, dashboard and metrics on a unix socket and TCP, and
//!   Process Pilot's TCP protocol.
//! - [`ctl`]: `pilot-host ctl`, the control plane's client.
//! - [`app`]: what `pilot-host run` does (plugins, guard, signals, control plane, supervision,
//!   outcome), as a library.
//! - [`scaffold`]: `plugin new`: new plugin projects in Rust, C, Python and JavaScript.
//! - [`cli`]: the command line, a thin layer over the modules above: it parses and prints.

pub mod app;
pub mod cli;
pub mod control;
pub mod ctl;
pub mod extension;
pub mod graph;
pub mod manifest;
pub mod plugin;
pub mod render;
pub mod scaffold;
pub mod supervisor;
