//! Attacks on the HTTP control API over TCP: the `Bearer` scheme in any case, an address guessing
//! tokens backs off, a DNS-rebinding page's requests are misdirected (421), the dashboard forbids
//! framing and inline code, and idle or slow sockets cannot lock the token holder out.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::attack::{get, raw_tcp, Answer};
use crate::controlkit::Controlled;
use crate::harness::*;

fn start(dir: &Scratch, control: &str) -> (Controlled, String, String) {
    let manifest = crate::control::two(dir, control);
    let c = Controlled::start_env(dir, &manifest, &[], &[("PILOT_HOST_TOKEN", "")]);
    let addr = c.http_addr();
    let token = std::fs::read_to_string(c.token_file())
        .unwrap()
        .trim()
        .to_string();
    c.wait_pid("a");
    (c, addr, token)
}

fn with_token(addr: &str, path: &str, scheme: &str, token: &str) -> Answer {
    raw_tcp(
        addr,
        &get(
            path,
            &[
                &format!("Host: {addr}"),
                &format!("Authorization: {scheme} {token}"),
            ],
        ),
    )
}

#[test]
fn the_bearer_scheme_is_matched_in_any_case() {
    let dir = Scratch::new("sec-bearer");
    let (_c, addr, token) = start(&dir, "control_server: { listen: \"127.0.0.1:0\" }");
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let answer = with_token(&addr, "/v1/processes", scheme, &token);
        assert_eq!(answer.status, 200, "{scheme}: {answer:?}");
    }
    assert_eq!(
        with_token(&addr, "/v1/processes", "Basic", &token).status,
        401
    );
}

#[test]
fn an_address_that_keeps_sending_wrong_tokens_has_to_wait() {
    let dir = Scratch::new("sec-backoff");
    let (c, addr, token) = start(&dir, "control_server: { listen: \"127.0.0.1:0\" }");
    // Requests without a token guess nothing, and do not count.
    for _ in 0..20 {
        assert_eq!(
            raw_tcp(&addr, &get("/v1/processes", &[&format!("Host: {addr}")])).status,
            401
        );
    }
    for i in 0..pilot_host::control::FREE_WRONG_TOKENS {
        let answer = with_token(&addr, "/v1/processes", "Bearer", &format!("guess{i}"));
        assert_eq!(answer.status, 401, "guess {i}: {answer:?}");
    }
    // Now even the right token waits: guessing it meanwhile would tell nothing.
    let blocked = with_token(&addr, "/v1/processes", "Bearer", &token);
    assert_eq!(blocked.status, 429, "{blocked:?}");
    assert!(
        blocked.body.contains("\"kind\":\"too_many_failures\""),
        "{blocked:?}"
    );
    assert_eq!(blocked.header("retry-after"), Some("1"), "{blocked:?}");
    c.pilot
        .wait_log("127.0.0.1 keeps sending wrong tokens", SOON);
    let waited = Instant::now();
    wait_until("the address may try again", SOON, || {
        with_token(&addr, "/v1/processes", "Bearer", &token).status == 200
    });
    assert!(
        waited.elapsed() <= Duration::from_secs(3),
        "{:?}",
        waited.elapsed()
    );
    // The right token reset the count.
    for i in 0..pilot_host::control::FREE_WRONG_TOKENS - 1 {
        assert_eq!(
            with_token(&addr, "/", "Bearer", &format!("x{i}")).status,
            200,
            "no 401, no count"
        );
        assert_eq!(
            with_token(&addr, "/v1/processes", "Bearer", &format!("again{i}")).status,
            401
        );
    }
    assert_eq!(
        with_token(&addr, "/v1/processes", "Bearer", &token).status,
        200
    );
}

#[test]
fn requests_naming_another_host_are_misdirected() {
    let dir = Scratch::new("sec-hosts");
    let (_c, addr, token) = start(
        &dir,
        "control_server: { listen: \"127.0.0.1:0\", allowed_hosts: [pilot.test] }",
    );
    let port = addr.rsplit(':').next().unwrap();
    let auth = format!("Authorization: Bearer {token}");
    for host in [
        format!("evil.example:{port}"),
        "rebind.attacker.example".to_string(),
        format!("10.1.2.3:{port}"),
    ] {
        for path in ["/", "/app.js", "/v1/processes"] {
            let answer = raw_tcp(&addr, &get(path, &[&format!("Host: {host}"), &auth]));
            assert_eq!(answer.status, 421, "{host} {path}: {answer:?}");
            assert!(
                answer.body.contains("\"kind\":\"misdirected\""),
                "{answer:?}"
            );
            assert!(answer.body.contains("allowed_hosts"), "{answer:?}");
        }
    }
    let no_host = raw_tcp(&addr, "GET / HTTP/1.0\r\n\r\n");
    assert_eq!(no_host.status, 421, "{no_host:?}");
    for host in [
        addr.clone(),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("pilot.test:{port}"),
        "PILOT.TEST".to_string(),
    ] {
        let answer = raw_tcp(
            &addr,
            &get("/v1/processes", &[&format!("Host: {host}"), &auth]),
        );
        assert_eq!(answer.status, 200, "{host}: {answer:?}");
    }
}

#[test]
fn the_dashboard_forbids_framing_and_inline_code() {
    let dir = Scratch::new("sec-csp");
    let (_c, addr, _) = start(&dir, "control_server: { listen: \"127.0.0.1:0\" }");
    for path in ["/", "/app.js", "/style.css"] {
        let answer = raw_tcp(&addr, &get(path, &[&format!("Host: {addr}")]));
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.header("content-security-policy"),
            Some("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
            "{path}"
        );
        assert_eq!(answer.header("x-frame-options"), Some("DENY"), "{path}");
    }
}

/// Sends `text` on a kept-alive connection and reads one answer (its body by Content-Length).
fn exchange(stream: &mut BufReader<TcpStream>, text: &str) -> Answer {
    stream.get_mut().write_all(text.as_bytes()).unwrap();
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(stream.read_line(&mut line).unwrap() > 0, "closed: {head}");
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let answer = Answer::parse(&head);
    let length: usize = answer.header("content-length").unwrap().parse().unwrap();
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    Answer {
        body: String::from_utf8_lossy(&body).into_owned(),
        ..answer
    }
}

fn is_open(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let open =
        matches!((&*s).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    s.set_nonblocking(false).unwrap();
    open
}

#[test]
fn idle_sockets_cannot_lock_the_token_holder_out() {
    let dir = Scratch::new("sec-slots");
    let (_c, addr, token) = start(
        &dir,
        "control_server: { listen: \"127.0.0.1:0\", max_connections: 16 }",
    );
    let request = get(
        "/v1/processes",
        &[
            &format!("Host: {addr}"),
            &format!("Authorization: Bearer {token}"),
        ],
    )
    .replace("Connection: close\r\n", "");
    let mut holder = BufReader::new(TcpStream::connect(&addr).unwrap());
    assert_eq!(exchange(&mut holder, &request).status, 200);

    // Far more idle sockets than slots, from the holder's own address.
    let opened = Instant::now();
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    wait_until(
        "an address keeps its share of idle sockets at most",
        SOON,
        || idle.iter().filter(|s| is_open(s)).count() <= 8,
    );
    // The holder's connection kept its slot, and a new one with the token gets in.
    assert_eq!(exchange(&mut holder, &request).status, 200);
    let fresh = raw_tcp(
        &addr,
        &get(
            "/v1/processes",
            &[
                &format!("Host: {addr}"),
                &format!("Authorization: Bearer {token}"),
            ],
        ),
    );
    assert_eq!(fresh.status, 200, "{fresh:?}");
    // Sockets that never ask are closed after the first-request deadline.
    wait_until("every idle socket is closed", SOON, || {
        idle.iter().all(|s| !is_open(s))
    });
    let lasted = opened.elapsed();
    assert!(
        lasted < pilot_host::control::FIRST_REQUEST_TIMEOUT + Duration::from_secs(2),
        "closed after {lasted:?}"
    );
    assert_eq!(exchange(&mut holder, &request).status, 200);
}
