//! pilot-host's core: what a process supervisor is without plugins, an HTTP server or a command line.
//!
//! - [`manifest`]: reading and validating manifests into a [`manifest::Manifest`], and its JSON Schema.
//! - [`graph`]: the dependency graph: start levels, stop order, cycles, dependents.
//! - [`supervisor`]: starting, watching, restarting and stopping the processes; the library API. Its
//!   coordinator is a state machine without input or output; a thin async shell carries out what it
//!   decides.
//! - [`extension`]: where plugins plug in (ready strategies, lifecycle hooks, stat handlers); the
//!   plugin runtime (`pilot-plugins`) implements it, and an embedder may too.
//! - [`secrets`] and [`tls`]: bearer tokens and TLS files, which the manifest checks and the control
//!   plane (`pilot-control`) serves with.

pub mod extension;
pub mod graph;
pub mod manifest;
pub mod secrets;
pub mod supervisor;
pub mod tls;
