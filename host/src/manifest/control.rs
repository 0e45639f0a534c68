//! Validation of `control_server`: names, addresses, the token file and who may connect.

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use super::model::ControlServer;
use super::raw::{RawControlServer, RawControlSettings};
use super::resolve::{absolute, shown};
use super::validate::Checker;

const FIELD: &str = "control_server";

/// Checks `control_server`; `None` when it is invalid or names a server pilot-host does not provide.
pub(super) fn control_server(c: &mut Checker, raw: &RawControlServer) -> Option<ControlServer> {
    match raw {
        RawControlServer::Name(name) if name.trim().is_empty() => {
            c.problem(
                None,
                FIELD,
                "is empty; name a control server (`http` or `tcp`) or give settings, e.g. `control_server: { listen: \"127.0.0.1:7070\" }`",
            );
            None
        }
        RawControlServer::Name(name) => named(c, name),
        RawControlServer::Settings(s) => settings(c, s),
    }
}

fn named(c: &mut Checker, name: &str) -> Option<ControlServer> {
    let parse = |a: &str| a.parse::<SocketAddr>().expect("a valid default address");
    match name {
        "http" => Some(ControlServer {
            listen: Some(parse(ControlServer::HTTP_LISTEN)),
            ..ControlServer::default()
        }),
        "tcp" => Some(ControlServer {
            process_pilot: Some(parse(ControlServer::PROCESS_PILOT_LISTEN)),
            ..ControlServer::default()
        }),
        other => {
            c.warn(
                None,
                FIELD,
                format!("`{other}` is not a control server pilot-host provides (known: `http`, `tcp`); it is ignored"),
            );
            None
        }
    }
}

fn settings(c: &mut Checker, s: &RawControlSettings) -> Option<ControlServer> {
    let before = c.problems.len();
    let listen = s
        .listen
        .as_deref()
        .and_then(|a| address(c, "control_server.listen", a, ControlServer::HTTP_LISTEN));
    let process_pilot = s.process_pilot.as_deref().and_then(|a| {
        address(
            c,
            "control_server.process_pilot",
            a,
            ControlServer::PROCESS_PILOT_LISTEN,
        )
    });
    let token_file = s.token_file.as_deref().map(|t| {
        let path = absolute(t, &c.base);
        token_file(c, t, &path);
        path
    });
    let allow_remote = s.allow_remote.unwrap_or(false);
    if let Some(addr) = listen.filter(|a| !a.ip().is_loopback()) {
        if !allow_remote {
            c.problem(None, "control_server.listen", format!("`{addr}` is not a loopback address, so other machines could reach the control API; set `allow_remote: true` with a `token_file`, or listen on `127.0.0.1`"));
        } else if token_file.is_none() {
            c.problem(None, "control_server.allow_remote", format!("lets other machines reach `{addr}`, which needs a token of your own: set `token_file` to a file only you can read"));
        }
    }
    if allow_remote && s.listen.is_none() {
        c.warn(
            None,
            "control_server.allow_remote",
            "has no effect without `listen`",
        );
    }
    if let Some(addr) = process_pilot.filter(|a| !a.ip().is_loopback()) {
        c.problem(None, "control_server.process_pilot", format!("`{addr}` is not a loopback address; Process Pilot's protocol has no authentication, so it listens on loopback only (e.g. `127.0.0.1:9999`)"));
    }
    let process_pilot_any_user = s.process_pilot_any_user.unwrap_or(false);
    if process_pilot_any_user && process_pilot.is_none() {
        c.warn(
            None,
            "control_server.process_pilot_any_user",
            "has no effect without `process_pilot`",
        );
    }
    if s.max_connections == Some(0) {
        c.problem(
            None,
            "control_server.max_connections",
            "is 0, which refuses every connection; give at least 1 (default 2048)",
        );
    }
    (c.problems.len() == before).then(|| ControlServer {
        listen,
        unix_socket: s.unix_socket.as_deref().map(|p| absolute(p, &c.base)),
        token_file,
        allow_remote,
        process_pilot,
        process_pilot_any_user,
        max_connections: s.max_connections.map(|n| n as usize),
    })
}

fn address(c: &mut Checker, field: &str, written: &str, example: &str) -> Option<SocketAddr> {
    match written.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            c.problem(
                None,
                field,
                format!("`{written}` is not an address; write `IP:PORT`, e.g. `{example}`"),
            );
            None
        }
    }
}

/// The token file must be a non-empty regular file that only its owner can read.
fn token_file(c: &mut Checker, written: &str, path: &std::path::Path) {
    const F: &str = "control_server.token_file";
    let shown = shown(written, path);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            c.problem(None, F, format!("{shown} does not exist; write a token into it (`head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE`)"));
            return;
        }
        Err(e) => {
            c.problem(None, F, format!("{shown} cannot be read: {e}"));
            return;
        }
    };
    if !meta.is_file() {
        c.problem(None, F, format!("{shown} is not a file"));
    } else if meta.permissions().mode() & 0o077 != 0 {
        c.problem(
            None,
            F,
            format!(
                "{shown} can be read or written by others; make it private with `chmod 600 {}`",
                path.display()
            ),
        );
    } else if meta.uid() != nix::unistd::geteuid().as_raw() {
        c.problem(
            None,
            F,
            format!("{shown} belongs to another user; use a file of your own"),
        );
    } else if meta.len() == 0 {
        c.problem(None, F, format!("{shown} is empty; write a token into it"));
    }
}
