//! The integration tests: the real `pilot-host` binary, real child processes, real plugins.

mod harness;
mod library;
mod run;
