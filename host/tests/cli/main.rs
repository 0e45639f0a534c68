//! Integration tests of the command line: the real `pilot-host` and `process-graph` binaries, run on
//! fixtures and on manifests written into scratch folders.

mod graph;
mod schema;
mod support;
mod validate;
