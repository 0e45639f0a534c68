//! `hostile`: a pilot-host test plugin that misbehaves on purpose, one way per ready strategy, so the
//! host's sandbox can be tested against each: the host must stop the call within its deadline, keep
//! supervising everything else, and give the next call a fresh instance.
//!
//! Ready strategies (checked with `ready_check`):
//! - `spin`: an endless loop (fuel or the epoch deadline must stop it).
//! - `sleep`: sleeps for an hour through WASI (only the host's outer timeout can stop it).
//! - `membomb`: allocates and touches 1 MiB blocks until allocation fails (the memory cap).
//! - `recurse`: unbounded recursion (the stack cap).
//! - `panic`: panics (a trap).
//! - `huge`: answers not-yet with a 16 MiB reason (the cap on data crossing into the host).
//! - `never`: always answers not-yet (the ready timeout).
//! - `read-ungranted`: reads `/etc/hostname`; answers not-yet saying what it read, or `unavailable`
//!   saying why it could not.
//! - `connect-ungranted`: connects to `127.0.0.1:<ready_params.port>`; answers not-yet if it connected,
//!   or `unavailable` saying why it could not.
//! - `ok`: ready at once (the well-behaved control).
//!
//! Lifecycle hook `log-flood`: 100,000 host log calls. Stat handler `noop`: no actions.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use pilot_plugin_sdk::{
    export_plugin, log, Description, ExitStatus, LifecycleEvent, Params, Plugin, PluginError,
    ProcessInfo, ProcessStats, ReadyStatus, StatAction,
};

/// The names of the ready strategies, in the order `describe` lists them.
const STRATEGIES: [&str; 10] = [
    "spin",
    "sleep",
    "membomb",
    "recurse",
    "panic",
    "huge",
    "never",
    "read-ungranted",
    "connect-ungranted",
    "ok",
];

/// How many log lines `log-flood` writes.
const FLOOD_LINES: u32 = 100_000;

/// The plugin; it keeps no state.
#[derive(Default)]
struct Hostile;

impl Plugin for Hostile {
    fn describe(&self) -> Description {
        let d = Description::new("hostile", env!("CARGO_PKG_VERSION"));
        STRATEGIES
            .iter()
            .fold(d, |d, s| d.ready_strategy(*s))
            .lifecycle_hook("log-flood")
            .stat_handler("noop")
    }

    fn ready_check(
        &self,
        strategy: &str,
        _process: &ProcessInfo,
        params: &Params,
    ) -> Result<ReadyStatus, PluginError> {
        match strategy {
            "spin" => spin(),
            "sleep" => {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(ReadyStatus::not_yet("woke up after an hour"))
            }
            "membomb" => membomb(),
            "recurse" => Ok(ReadyStatus::not_yet(format!("depth {}", recurse(0)))),
            "panic" => panic!("hostile: panicking on purpose"),
            "huge" => Ok(ReadyStatus::not_yet("x".repeat(16 * 1024 * 1024))),
            "never" => Ok(ReadyStatus::not_yet("hostile: never ready")),
            "read-ungranted" => read_ungranted(),
            "connect-ungranted" => connect_ungranted(params),
            "ok" => Ok(ReadyStatus::Ready),
            // The SDK answers names missing from `describe` before they get here.
            other => unreachable!("undeclared ready strategy `{other}`"),
        }
    }

    fn lifecycle(
        &mut self,
        _hook: &str,
        event: LifecycleEvent,
        process: &ProcessInfo,
        _exit: Option<ExitStatus>,
    ) -> Result<(), PluginError> {
        for i in 0..FLOOD_LINES {
            log::info!("hostile: flood line {i} for `{}` at {event}", process.name);
        }
        Ok(())
    }

    fn stats(
        &mut self,
        _handler: &str,
        _stats: &[ProcessStats],
    ) -> Result<Vec<StatAction>, PluginError> {
        Ok(Vec::new())
    }
}

/// Loops forever doing work the optimizer cannot remove.
fn spin() -> Result<ReadyStatus, PluginError> {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates and touches 1 MiB blocks until an allocation fails (which aborts: a trap).
fn membomb() -> Result<ReadyStatus, PluginError> {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![0xA5; 1024 * 1024]);
        black_box(&blocks);
    }
}

/// Recurses until the stack runs out, with a frame the optimizer cannot fold away.
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0; // Never: the stack runs out long before.
    }
    let frame = black_box([depth; 32]);
    black_box(recurse(depth + 1)) + frame[black_box(5)]
}

/// Reads a file nobody granted, and says what happened.
fn read_ungranted() -> Result<ReadyStatus, PluginError> {
    match std::fs::read_to_string("/etc/hostname") {
        Ok(text) => Ok(ReadyStatus::not_yet(format!(
            "hostile: read `/etc/hostname`: {} bytes",
            text.len()
        ))),
        Err(e) => Err(PluginError::unavailable(format!(
            "hostile: cannot read `/etc/hostname`: {e} ({:?})",
            e.kind()
        ))),
    }
}

/// Connects to a port nobody granted, and says what happened.
fn connect_ungranted(params: &Params) -> Result<ReadyStatus, PluginError> {
    let port = params.u64("port")?;
    let port = u16::try_from(port).map_err(|_| {
        PluginError::invalid_config(format!(
            "`ready_params.port` must be at most 65535, got `{port}`"
        ))
    })?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Ok(_) => Ok(ReadyStatus::not_yet(format!(
            "hostile: connected to {addr}"
        ))),
        Err(e) => Err(PluginError::unavailable(format!(
            "hostile: cannot connect to {addr}: {e} ({:?})",
            e.kind()
        ))),
    }
}

export_plugin!(Hostile);
