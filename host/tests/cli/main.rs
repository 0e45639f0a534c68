//! Integration tests: the real `pilot-host` and `process-graph` binaries, run on fixtures and on
//! manifests written into scratch folders, with real child processes.

mod control;
mod control_access;
mod control_compat;
mod control_limits;
mod controlkit;
mod ctl;
mod dashboard;
mod graph;
mod harness;
mod library;
mod plugins;
mod run;
mod schema;
mod support;
mod validate;
