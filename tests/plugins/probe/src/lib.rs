//! `probe`: a pilot-host test plugin that tries what it is told, so tests can see what its grants let
//! through: each ready strategy answers not-yet with what happened, or `unavailable` with the error.
//!
//! Ready strategies (`ready_params` in braces):
//! - `read` {path}: reads a file; `write` {path}: writes one; `list` {path}: lists a folder.
//! - `env` {name}: reads an environment variable.
//! - `connect` {addr}: opens a TCP connection to `host:port`.
//! - `escape`: tries, as a new user would, `/etc/passwd`, `/proc/self/environ`, a listing of `/`,
//!   `HOME`, TCP to `127.0.0.1:{port}` (default 9), UDP to `127.0.0.1:9` and a lookup of
//!   `example.com`; answers not-yet listing what got through (`nothing got through` if nothing did).
//! - `root`: lists and reads the metadata of the preopened `/` through its descriptor, as code using
//!   WASI directly does (no path involved); answers not-yet with what happened.
//! - `escape-log`: writes terminal escapes to the host log, stdout and stderr; then ready.
//! - `slow` {ms}: works (spins) for `ms` milliseconds, then ready.
//! - `ok`: ready at once.
//!
//! Stat handler `escape-actions`: asks to restart a process named with a terminal escape, for a
//! reason holding another.
//!
//! Lifecycle hooks: `marker` logs `probe: marker at EVENT of PROCESS`; `hold` allocates 24 MiB, touches
//! it and keeps it as long as the instance lives.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use pilot_plugin_sdk::{
    export_plugin, log, Description, ExitStatus, LifecycleEvent, Params, Plugin, PluginError,
    ProcessInfo, ProcessStats, ReadyStatus, StatAction,
};

/// The plugin; it keeps only what `hold` allocated.
#[derive(Default)]
struct Probe {
    held: Vec<Vec<u8>>,
}

impl Plugin for Probe {
    fn describe(&self) -> Description {
        [
            "read",
            "write",
            "list",
            "env",
            "connect",
            "escape",
            "root",
            "escape-log",
            "slow",
            "ok",
        ]
        .iter()
        .fold(
            Description::new("probe", env!("CARGO_PKG_VERSION")),
            |d, s| d.ready_strategy(*s),
        )
        .lifecycle_hook("marker")
        .lifecycle_hook("hold")
        .stat_handler("escape-actions")
    }

    fn ready_check(
        &self,
        strategy: &str,
        _process: &ProcessInfo,
        params: &Params,
    ) -> Result<ReadyStatus, PluginError> {
        let done = |what: Result<String, String>| match what {
            Ok(happened) => Ok(ReadyStatus::not_yet(happened)),
            Err(e) => Err(PluginError::unavailable(e)),
        };
        match strategy {
            "read" => done(read(params.str("path")?)),
            "write" => done(write(params.str("path")?)),
            "list" => done(list(params.str("path")?)),
            "env" => {
                let name = params.str("name")?;
                Ok(ReadyStatus::not_yet(match std::env::var(name) {
                    Ok(v) => format!("{name}={v}"),
                    Err(_) => format!("{name} is not set"),
                }))
            }
            "connect" => done(connect(params.str("addr")?)),
            "escape" => Ok(ReadyStatus::not_yet(escape(params.u64_or("port", 9)?))),
            "root" => Ok(ReadyStatus::not_yet(root())),
            "escape-log" => {
                log::warn!("probe: \x1b[31mred\x1b[0m \x1b]0;title\x07 bell\x07 done");
                println!("probe: stdout \x1b[2J\x1b[Hcleared");
                eprintln!("probe: stderr \x1b[1mbold\x1b[0m");
                Ok(ReadyStatus::Ready)
            }
            "slow" => {
                let until = Duration::from_millis(params.u64("ms")?);
                let started = std::time::Instant::now();
                while started.elapsed() < until {
                    std::hint::black_box(started);
                }
                Ok(ReadyStatus::Ready)
            }
            _ => Ok(ReadyStatus::Ready),
        }
    }

    fn lifecycle(
        &mut self,
        hook: &str,
        event: LifecycleEvent,
        process: &ProcessInfo,
        _exit: Option<ExitStatus>,
    ) -> Result<(), PluginError> {
        if hook == "hold" {
            self.held.push(vec![0x5A; 24 << 20]);
            log::info!("probe: holding {} MiB", self.held.len() * 24);
        } else {
            log::info!("probe: marker at {event} of {}", process.name);
        }
        Ok(())
    }

    fn stats(
        &mut self,
        _handler: &str,
        _stats: &[ProcessStats],
    ) -> Result<Vec<StatAction>, PluginError> {
        Ok(vec![StatAction::restart(
            "\x1b[31mevil",
            "\x1b]0;pwned\x07 because \x1b[1mI can",
        )])
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read(path)
        .map(|b| format!("read `{path}`: {} bytes", b.len()))
        .map_err(|e| format!("cannot read `{path}`: {e}"))
}

fn write(path: &str) -> Result<String, String> {
    std::fs::write(path, b"probe\n")
        .map(|()| format!("wrote `{path}`"))
        .map_err(|e| format!("cannot write `{path}`: {e}"))
}

fn list(path: &str) -> Result<String, String> {
    std::fs::read_dir(path)
        .map(|d| format!("listed `{path}`: {} entries", d.count()))
        .map_err(|e| format!("cannot list `{path}`: {e}"))
}

fn connect(addr: &str) -> Result<String, String> {
    let target: SocketAddr = addr
        .parse()
        .map_err(|e| format!("`{addr}` is not an address: {e}"))?;
    TcpStream::connect_timeout(&target, Duration::from_millis(300))
        .map(|_| format!("connected to {addr}"))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

/// Lists and stats the preopened `/` through its descriptor; returns what happened.
fn root() -> String {
    let mut happened = Vec::new();
    for (dir, name) in wasip2::filesystem::preopens::get_directories() {
        if name != "/" {
            continue;
        }
        happened.push(match dir.read_directory() {
            Ok(_) => "listed `/`".to_string(),
            Err(e) => format!("cannot list `/`: {e:?}"),
        });
        happened.push(match dir.stat() {
            Ok(s) => format!("stat `/`: {:?}", s.type_),
            Err(e) => format!("cannot stat `/`: {e:?}"),
        });
    }
    if happened.is_empty() {
        "no `/` is preopened".into()
    } else {
        happened.join("; ")
    }
}

/// Tries what a curious plugin would; returns what got through.
fn escape(port: u64) -> String {
    let mut through = Vec::new();
    for path in ["/etc/passwd", "/proc/self/environ"] {
        if let Ok(r) = read(path) {
            through.push(r);
        }
    }
    if let Ok(r) = list("/") {
        through.push(r);
    }
    if let Ok(home) = std::env::var("HOME") {
        through.push(format!("HOME={home}"));
    }
    if let Ok(r) = connect(&format!("127.0.0.1:{port}")) {
        through.push(r);
    }
    let udp = UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"probe", "127.0.0.1:9"));
    if udp.is_ok() {
        through.push("sent UDP to 127.0.0.1:9".into());
    }
    if let Ok(mut addrs) = ("example.com", 80).to_socket_addrs() {
        if let Some(a) = addrs.next() {
            through.push(format!("looked up example.com: {a}"));
        }
    }
    if through.is_empty() {
        "nothing got through".into()
    } else {
        format!("got through: {}", through.join("; "))
    }
}

export_plugin!(Probe);
