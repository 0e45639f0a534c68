//! The HTTP API beyond loopback: only with a token of at least 128 bits, and over TLS (which
//! `ctl --url https://` verifies) unless plain text is asked for by name.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::controlkit::{after, Controlled};
use crate::harness::*;
use crate::support::{pilot_host, run, Run};

/// Writes `text` into a new file readable by its owner alone.
fn private(path: &Path, text: &str) -> PathBuf {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    path.to_path_buf()
}

/// Writes a self-signed certificate for `names` and its key; returns their paths.
fn certificate(dir: &Scratch, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).unwrap();
    let cert = dir.write(&format!("{stem}.pem"), &made.cert.pem());
    let key = private(
        &dir.join(&format!("{stem}.key")),
        &made.signing_key.serialize_pem(),
    );
    (cert, key)
}

const STRONG: &str = "9f2c4e71a0b83d56e1f7c9a2b4d06e83";

fn ctl(args: &[&str]) -> Run {
    run(pilot_host().arg("ctl").args(args))
}

#[test]
fn https_serves_the_api_and_ctl_verifies_the_certificate() {
    let dir = Scratch::new("sec-tls");
    let (cert, key) = certificate(&dir, "server", &["localhost", "127.0.0.1"]);
    let (other, _) = certificate(&dir, "other", &["localhost", "127.0.0.1"]);
    let token = private(&dir.join("token"), STRONG);
    let manifest = crate::control::two(
        &dir,
        &format!(
            "control_server: {{ listen: \"127.0.0.1:0\", token_file: {}, tls: {{ cert: {}, key: {} }} }}",
            token.display(),
            cert.display(),
            key.display()
        ),
    );
    let c = Controlled::start(&dir, &manifest, &[]);
    let line = c.pilot.wait_log("dashboard: https://", SOON);
    let addr = after(&line, "dashboard: https://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();
    c.wait_pid("a");
    let t = token.to_str().unwrap();
    let ca = cert.to_str().unwrap();
    for url in [
        format!("https://{addr}"),
        format!("https://localhost:{port}"),
    ] {
        let out = ctl(&["--url", &url, "--token-file", t, "--ca-file", ca, "status"]);
        out.expect_code(0).stdout_has("running");
    }
    // Not trusted: the system's authorities, or another certificate.
    for extra in [&[][..], &["--ca-file", other.to_str().unwrap()][..]] {
        let url = format!("https://{addr}");
        let mut args = vec!["--url", url.as_str(), "--token-file", t];
        args.extend_from_slice(extra);
        args.push("status");
        ctl(&args)
            .expect_code(2)
            .stderr_has(&format!("cannot set up TLS with https://{addr}"))
            .stderr_has("--ca-file");
    }
    // Plain HTTP gets no answer from a TLS port.
    ctl(&[
        "--url",
        &format!("http://{addr}"),
        "--token-file",
        t,
        "status",
    ])
    .expect_code(2);
    ctl(&[
        "--url",
        &format!("http://{addr}"),
        "--token-file",
        t,
        "--ca-file",
        ca,
        "status",
    ])
    .expect_code(2)
    .stderr_has("`--ca-file` verifies TLS");
}

fn validate(dir: &Scratch, control: &str) -> Run {
    let manifest = crate::control::two(dir, control);
    run(pilot_host().arg("validate").arg(manifest))
}

#[test]
fn the_api_beyond_loopback_needs_a_strong_token_and_tls_or_plain_text_by_name() {
    let dir = Scratch::new("sec-remote");
    let weak = private(&dir.join("weak"), "password\n");
    let strong = private(&dir.join("strong"), STRONG);
    let (cert, key) = certificate(&dir, "server", &["pilot.test"]);
    let (other_cert, _) = certificate(&dir, "other", &["pilot.test"]);
    let tls = format!(
        "tls: {{ cert: {}, key: {} }}",
        cert.display(),
        key.display()
    );
    let remote = |token: &Path, rest: &str| {
        format!(
            "control_server: {{ listen: \"0.0.0.0:7070\", allow_remote: true, token_file: {}, {rest} }}",
            token.display()
        )
    };
    validate(&dir, &remote(&weak, &tls))
        .expect_code(2)
        .stderr_has("`control_server.token_file`: `")
        .stderr_has("holds a token of about 22 bits, which can be guessed; write one of at least 128 bits into it")
        .stderr_has("`allow_remote` needs it");
    validate(&dir, &remote(&strong, "max_connections: 8"))
        .expect_code(2)
        .stderr_has("`control_server.allow_remote`: would send the token and the API in plain text to `0.0.0.0:7070`; set `tls: { cert: FILE, key: FILE }`, or `insecure_plaintext: true`");
    validate(&dir, &remote(&strong, "insecure_plaintext: true")).expect_code(0);
    validate(&dir, &remote(&strong, &tls)).expect_code(0);
    validate(
        &dir,
        &remote(&strong, &format!("{tls}, insecure_plaintext: true")),
    )
    .expect_code(2)
    .stderr_has("is set along with `tls`; choose one");
    let mismatched = format!(
        "tls: {{ cert: {}, key: {} }}",
        other_cert.display(),
        key.display()
    );
    validate(&dir, &remote(&strong, &mismatched))
        .expect_code(2)
        .stderr_has("`control_server.tls`: the certificate `");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    validate(&dir, &remote(&strong, &tls))
        .expect_code(2)
        .stderr_has("`control_server.tls.key`: `")
        .stderr_has("can be read or written by others");
    // On loopback a weak token is only a warning, from the file or the environment.
    validate(
        &dir,
        &format!(
            "control_server: {{ listen: \"127.0.0.1:0\", token_file: {} }}",
            weak.display()
        ),
    )
    .expect_code(0)
    .stderr_has("warning: `control_server.token_file`: `");
    let manifest = crate::control::two(&dir, "control_server: { listen: \"127.0.0.1:0\" }");
    let c = Controlled::start_env(&dir, &manifest, &[], &[("PILOT_HOST_TOKEN", "1234")]);
    c.pilot
        .wait_log("PILOT_HOST_TOKEN holds a token of about 8 bits", SOON);
}
