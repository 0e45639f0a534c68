//! Validation of `control_server`: names, addresses, the token file and who may connect.

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use std::path::Path;

pub(super) use super::control_plugins::{control_plugins, grants};
use super::model::{ControlServer, TlsFiles};
use super::raw::{RawControlServer, RawControlSettings, RawTls};
use super::resolve::{absolute, shown};
use super::validate::Checker;

const FIELD: &str = "control_server";

/// Checks `control_server`: the built-in server's settings (`None` when invalid or not asked for),
/// and the control plugin it names, if it names one (checked by `control_plugins`).
pub(super) fn control_server(
    c: &mut Checker,
    raw: &RawControlServer,
) -> (Option<ControlServer>, Option<String>) {
    match raw {
        RawControlServer::Name(name) if name.trim().is_empty() => {
            c.problem(
                None,
                FIELD,
                "is empty; name a control server (`http`, `tcp` or a control plugin's name) or give settings, e.g. `control_server: { listen: \"127.0.0.1:7070\" }`",
            );
            (None, None)
        }
        RawControlServer::Name(name) if name == "http" || name == "tcp" => (named(name), None),
        // Process Pilot's `control_server: my_server`: a control plugin.
        RawControlServer::Name(name) => (None, Some(name.clone())),
        RawControlServer::Settings(s) => (settings(c, s), None),
    }
}

fn named(name: &str) -> Option<ControlServer> {
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
        _ => None,
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
    let mut token = None;
    let token_file = s.token_file.as_deref().map(|t| {
        let path = absolute(t, &c.base);
        token = token_file(c, t, &path);
        path
    });
    let tls = s.tls.as_ref().and_then(|t| tls(c, t));
    let server = ControlServer {
        listen,
        unix_socket: s.unix_socket.as_deref().map(|p| absolute(p, &c.base)),
        token_file,
        allow_remote: s.allow_remote.unwrap_or(false),
        process_pilot,
        process_pilot_any_user: s.process_pilot_any_user.unwrap_or(false),
        max_connections: s.max_connections.map(|n| n as usize),
        tls,
        insecure_plaintext: s.insecure_plaintext.unwrap_or(false),
        allowed_hosts: s
            .allowed_hosts
            .as_deref()
            .map_or_else(Vec::new, |h| allowed_hosts(c, h)),
    };
    http_rules(c, s, &server, token.as_deref());
    if let Some(addr) = process_pilot.filter(|a| !a.ip().is_loopback()) {
        c.problem(None, "control_server.process_pilot", format!("`{addr}` is not a loopback address; Process Pilot's protocol has no authentication, so it listens on loopback only (e.g. `127.0.0.1:9999`)"));
    }
    if server.process_pilot_any_user && process_pilot.is_none() {
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
    (c.problems.len() == before).then_some(server)
}

/// Checks what HTTP on `listen` needs: loopback, or `allow_remote` with a strong token of one's own
/// and TLS (or plain text asked for by name).
fn http_rules(c: &mut Checker, s: &RawControlSettings, m: &ControlServer, token: Option<&str>) {
    let Some(addr) = m.listen else {
        for (set, key) in [
            (m.allow_remote, "allow_remote"),
            (m.tls.is_some() || s.tls.is_some(), "tls"),
            (m.insecure_plaintext, "insecure_plaintext"),
            (s.allowed_hosts.is_some(), "allowed_hosts"),
        ] {
            if set {
                c.warn(
                    None,
                    &format!("control_server.{key}"),
                    "has no effect without `listen`",
                );
            }
        }
        return;
    };
    let remote = !addr.ip().is_loopback();
    if remote && !m.allow_remote {
        c.problem(None, "control_server.listen", format!("`{addr}` is not a loopback address, so other machines could reach the control API; set `allow_remote: true` with a `token_file`, or listen on `127.0.0.1`"));
    } else if remote && s.token_file.is_none() {
        c.problem(None, "control_server.allow_remote", format!("lets other machines reach `{addr}`, which needs a token of your own: set `token_file` to a file only you can read"));
    }
    if let (Some(token), Some(written)) = (token, s.token_file.as_deref()) {
        let bits = crate::secrets::token_bits(token);
        if bits < crate::secrets::MIN_TOKEN_BITS {
            let message = format!("`{written}` holds a token of about {bits:.0} bits, which can be guessed; write one of at least {:.0} bits into it (e.g. `openssl rand -hex 32 > {written}`)", crate::secrets::MIN_TOKEN_BITS);
            if remote && m.allow_remote {
                c.problem(
                    None,
                    "control_server.token_file",
                    format!("{message}; `allow_remote` needs it"),
                );
            } else {
                c.warn(None, "control_server.token_file", message);
            }
        }
    }
    if m.insecure_plaintext && s.tls.is_some() {
        c.problem(None, "control_server.insecure_plaintext", "is set along with `tls`; choose one (`tls` encrypts, `insecure_plaintext: true` asks for plain HTTP)");
    } else if remote && m.allow_remote && s.tls.is_none() && !m.insecure_plaintext {
        c.problem(None, "control_server.allow_remote", format!("would send the token and the API in plain text to `{addr}`; set `tls: {{ cert: FILE, key: FILE }}`, or `insecure_plaintext: true` on a network you trust"));
    } else if m.insecure_plaintext && !remote {
        c.warn(
            None,
            "control_server.insecure_plaintext",
            format!("has no effect on the loopback address `{addr}`"),
        );
    }
}

/// Checks `tls`: a certificate chain and a private key of one's own that go together.
fn tls(c: &mut Checker, raw: &RawTls) -> Option<TlsFiles> {
    let cert = absolute(&raw.cert, &c.base);
    let key = absolute(&raw.key, &c.base);
    let before = c.problems.len();
    let shown_cert = shown(&raw.cert, &cert);
    match std::fs::metadata(&cert) {
        Ok(m) if m.is_file() => {}
        Ok(_) => c.problem(
            None,
            "control_server.tls.cert",
            format!("{shown_cert} is not a file"),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => c.problem(
            None,
            "control_server.tls.cert",
            format!(
                "{shown_cert} does not exist; give the PEM file of the server's certificate chain"
            ),
        ),
        Err(e) => c.problem(
            None,
            "control_server.tls.cert",
            format!("{shown_cert} cannot be read: {e}"),
        ),
    }
    private_file(
        c,
        "control_server.tls.key",
        &raw.key,
        &key,
        "give the PEM file of the certificate's private key, readable by you alone",
    );
    if c.problems.len() > before {
        return None;
    }
    match crate::tls::server_config(&cert, &key) {
        Ok(_) => Some(TlsFiles { cert, key }),
        Err(e) => {
            c.problem(None, "control_server.tls", e.to_string());
            None
        }
    }
}

/// Checks `allowed_hosts`: host names or IP addresses, alone; returns them lowercase.
fn allowed_hosts(c: &mut Checker, hosts: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    for host in hosts {
        let name = host.trim().trim_end_matches('.').to_ascii_lowercase();
        let why = if name.is_empty() {
            Some("it is empty".to_string())
        } else if host.contains("://") {
            Some("it holds a scheme".to_string())
        } else if name.parse::<std::net::IpAddr>().is_ok() {
            None
        } else if name.contains(['/', '?', '#']) {
            Some("it holds a path".to_string())
        } else if name.contains(':') {
            Some("it holds a port; any port is accepted".to_string())
        } else if name.contains('*') {
            Some("it holds `*`; list each name".to_string())
        } else {
            name.chars()
                .find(|ch| !(ch.is_ascii_alphanumeric() || matches!(ch, '-' | '.' | '_')))
                .map(|ch| format!("it holds `{}`", ch.escape_default()))
        };
        match why {
            None => names.push(name),
            Some(why) => c.problem(
                None,
                "control_server.allowed_hosts",
                format!(
                    "`{}` is not a host name ({why}); write a name or an address alone, e.g. `pilot.example.com`",
                    super::escape_controls(host)
                ),
            ),
        }
    }
    names
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

/// The token file must be a non-empty regular file that only its owner can read; returns the token.
fn token_file(c: &mut Checker, written: &str, path: &Path) -> Option<String> {
    const F: &str = "control_server.token_file";
    let how = "write a token into it (`openssl rand -hex 32 > FILE; chmod 600 FILE`)";
    if !private_file(c, F, written, path, how) {
        return None;
    }
    let shown = shown(written, path);
    match crate::secrets::read_token(path) {
        Ok(token) => Some(token),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            c.problem(None, F, format!("{shown} is empty; write a token into it"));
            None
        }
        Err(e) => {
            c.problem(None, F, format!("{shown} cannot be read: {e}"));
            None
        }
    }
}

/// Checks that `path` is a regular file of one's own that others can neither read nor write.
fn private_file(c: &mut Checker, field: &str, written: &str, path: &Path, how: &str) -> bool {
    let shown = shown(written, path);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            c.problem(None, field, format!("{shown} does not exist; {how}"));
            return false;
        }
        Err(e) => {
            c.problem(None, field, format!("{shown} cannot be read: {e}"));
            return false;
        }
    };
    let problem = if !meta.is_file() {
        format!("{shown} is not a file")
    } else if meta.permissions().mode() & 0o077 != 0 {
        format!(
            "{shown} can be read or written by others; make it private with `chmod 600 {}`",
            path.display()
        )
    } else if meta.uid() != nix::unistd::geteuid().as_raw() {
        format!("{shown} belongs to another user; use a file of your own")
    } else if meta.len() == 0 {
        format!("{shown} is empty; {how}")
    } else {
        return true;
    };
    c.problem(None, field, problem);
    false
}
