//! Integration tests: the real `pilot-host` and `process-graph` binaries, run on fixtures and on
//! manifests written into scratch folders, with real child processes.

mod attack;
mod check;
mod check_control;
mod check_trust;
mod control;
mod control_access;
mod control_compat;
mod control_limits;
mod control_plugins;
mod control_plugins_sdks;
mod controlkit;
mod ctl;
mod dashboard;
mod graph;
mod guest_hostile;
mod guests;
mod harness;
mod hookserver;
mod hostile;
mod library;
mod plugin_set;
mod plugins;
mod run;
mod sandbox;
mod scaffold;
mod scenario;
mod schema;
mod security_files;
mod security_http;
mod security_local;
mod security_tls;
mod supervision;
mod support;
mod validate;
