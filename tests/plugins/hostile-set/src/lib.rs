//! `hostile-set`: nine pilot-host test plugins (the examples of this crate), one misbehaviour each, for
//! the scenario where they all run beside a tcp ready chain and a crash loop: supervision must not slow.
//!
//! Each plugin `h-KIND` provides the ready strategy `h-KIND`, which runs [`KIND`](crate) on every call;
//! with `ready_params: { calm: true }` it answers not-yet at once instead (a calm partner whose success
//! keeps a failing plugin out of quarantine, so the pressure lasts).

use std::hint::black_box;
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

pub use pilot_plugin_sdk;
use pilot_plugin_sdk::{log, Params, PluginError, ReadyStatus};

/// What a hostile ready check answers (when it answers at all).
pub type Answer = Result<ReadyStatus, PluginError>;

/// Defines and exports a plugin `$name` whose ready strategy `$name` runs `$behaviour(params)`.
#[macro_export]
macro_rules! plugin {
    ($name:literal, $behaviour:path) => {
        /// The plugin.
        #[derive(Default)]
        struct Hostile;

        impl $crate::pilot_plugin_sdk::Plugin for Hostile {
            fn describe(&self) -> $crate::pilot_plugin_sdk::Description {
                $crate::pilot_plugin_sdk::Description::new($name, env!("CARGO_PKG_VERSION"))
                    .ready_strategy($name)
            }

            fn ready_check(
                &self,
                _strategy: &str,
                _process: &$crate::pilot_plugin_sdk::ProcessInfo,
                params: &$crate::pilot_plugin_sdk::Params,
            ) -> $crate::Answer {
                if params.bool_or("calm", false)? {
                    return Ok($crate::pilot_plugin_sdk::ReadyStatus::not_yet("calm"));
                }
                $behaviour(params)
            }
        }

        $crate::pilot_plugin_sdk::export_plugin!(Hostile);
    };
}

/// Spins until the host stops it (fuel or the deadline).
pub fn spin(_: &Params) -> Answer {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Sleeps 5 ms at a time through WASI, forever (only the host's timeout stops it).
pub fn sleep(_: &Params) -> Answer {
    loop {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Connects to the granted `127.0.0.1:{port}` and reads, blocking, for ever (reconnecting at EOF).
pub fn socket(params: &Params) -> Answer {
    let port = params.u64("port")?;
    let mut buf = [0u8; 4096];
    loop {
        let mut stream = TcpStream::connect(("127.0.0.1", port as u16))
            .map_err(|e| PluginError::unavailable(format!("cannot connect: {e}")))?;
        while stream.read(&mut buf).is_ok_and(|n| n > 0) {}
    }
}

/// Allocates and touches 1 MiB blocks until the memory cap stops it.
pub fn membomb(_: &Params) -> Answer {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![0xA5; 1024 * 1024]);
        black_box(&blocks);
    }
}

/// Recurses until the stack cap stops it.
pub fn recurse(_: &Params) -> Answer {
    fn deeper(depth: u64) -> u64 {
        if black_box(depth) == u64::MAX {
            return 0;
        }
        let frame = black_box([depth; 32]);
        black_box(deeper(depth + 1)) + frame[black_box(5)]
    }
    Ok(ReadyStatus::not_yet(format!("depth {}", deeper(0))))
}

/// Panics (a trap).
pub fn trap(_: &Params) -> Answer {
    panic!("h-trap: panicking on purpose")
}

/// Answers with a 48 MB reason (over the cap on data crossing into the host).
pub fn huge(_: &Params) -> Answer {
    Ok(ReadyStatus::not_yet("x".repeat(48 << 20)))
}

/// Logs as fast as it can, forever (the rate limit drops nearly all of it).
pub fn flood(_: &Params) -> Answer {
    let mut i = 0u64;
    loop {
        log::info!("h-flood: line {i}");
        i += 1;
    }
}

/// Tries `/etc/passwd`, `/proc/self/environ`, `/`, `HOME`, TCP, UDP and a name lookup; answers
/// not-yet with what got through.
pub fn escape(_: &Params) -> Answer {
    let mut through = Vec::new();
    for path in ["/etc/passwd", "/proc/self/environ"] {
        if std::fs::read(path).is_ok() {
            through.push(path.to_string());
        }
    }
    if std::fs::read_dir("/").is_ok() {
        through.push("/".into());
    }
    if std::env::var("HOME").is_ok() {
        through.push("HOME".into());
    }
    if TcpStream::connect_timeout(&([127, 0, 0, 1], 9).into(), Duration::from_millis(50)).is_ok() {
        through.push("tcp".into());
    }
    if UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.send_to(b"x", "127.0.0.1:9"))
        .is_ok()
    {
        through.push("udp".into());
    }
    if ("example.com", 80).to_socket_addrs().is_ok() {
        through.push("dns".into());
    }
    Ok(ReadyStatus::not_yet(format!("got through: {through:?}")))
}
