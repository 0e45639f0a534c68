//! The `pilot-host` binary: parses the command line and hands over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    pilot_host::cli::run(pilot_host::cli::Cli::parse())
}
