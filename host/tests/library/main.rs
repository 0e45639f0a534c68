//! The supervisor as a library (`pilot-core`), in-process, apart from the command line's tests: real
//! `pilot-child` processes, and a recording test `Extensions` standing in for plugins.

// The command line's test helpers, shared; this target uses a few of them (`harness` allows what
// it leaves unused itself).
#[path = "../cli/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../cli/support.rs"]
mod support;

mod supervisor;
