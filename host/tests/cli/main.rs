//! Integration tests: the real `pilot-host` and `process-graph` binaries, run on fixtures and on
//! manifests written into scratch folders, with real child processes.

mod graph;
mod guest_hostile;
mod guests;
mod harness;
mod library;
mod plugins;
mod run;
mod scaffold;
mod schema;
mod support;
mod validate;
