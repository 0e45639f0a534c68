//! Outgoing HTTP from control plugins written with the C and JavaScript SDKs (`pilot_http_send`,
//! `pilot.httpSend`), run by the real `pilot-host` against a local webhook receiver: a granted host
//! receives the request, an ungranted one never does and the plugin is told `HTTP-request-denied`
//! with the grant to add, a granted port where nothing listens fails with its wasi:http error.

use std::time::Duration;

use serde_json::Value;

use crate::controlkit::{call, json, Controlled};
use crate::harness::*;
use crate::hookserver::Hook;

#[test]
fn c_and_javascript_control_plugins_post_to_granted_hosts_only() {
    let dir = Scratch::new("cp-sdk-http");
    let granted = Hook::start();
    let other = Hook::start();
    let closed = format!("127.0.0.1:{}", free_port());
    let manifest = manifest(
        &dir,
        &format!(
            "control_plugins: [control-c, control-js]\nprocesses:\n  - {{ name: web, path: CHILD, args: [--name, web] }}\nplugins:\n  control-c: {{ grants: {{ http: [\"{a}\", \"{closed}\"] }} }}\n  control-js: {{ grants: {{ http: [\"{a}\", \"{closed}\"] }} }}\n",
            a = granted.addr
        ),
    );
    let plugins = plugin_dir(
        &dir,
        &[
            plugin("control", "control-c"),
            plugin("control", "control-js"),
        ],
    );
    // A JavaScript component compiles for seconds the first time: `validate` fills the compile cache.
    let mut validate = Pilot::start(&[
        "validate".as_ref(),
        manifest.as_os_str(),
        "--plugins".as_ref(),
        plugins.as_os_str(),
    ]);
    assert_eq!(
        validate.wait_exit(Duration::from_secs(120)).code(),
        Some(0),
        "{}",
        validate.stderr_text()
    );
    let c = Controlled::start(&dir, &manifest, &["--plugins", plugins.to_str().unwrap()]);
    c.wait_pid("web");
    for (name, sdk) in [("control-c", "c"), ("control-js", "js")] {
        // Granted: the receiver gets the POST, JSON body, the plugin's header and a length.
        let path = format!(
            "/plugins/{name}/send?to={}",
            granted.url(&format!("/{sdk}"))
        );
        let answer: Value = json(&c.unix(), "POST", &path, None, 200);
        assert_eq!(answer["status"], 200, "{name}: {answer}");
        assert_eq!(answer["body"], "ok", "{name}: {answer}");
        assert_eq!(answer["content_length"], "2", "{name}: {answer}");
        // It answered after the receiver's answer: the request is already there.
        let got = granted.wait(&format!("{name}'s POST"), SOON, |got| {
            got.iter().any(|r| r.path == format!("/{sdk}"))
        });
        let post = got.iter().find(|r| r.path == format!("/{sdk}")).unwrap();
        assert_eq!(post.method, "POST");
        assert_eq!(post.json()["from"], name, "{post:?}");

        // Not granted: refused before any connection, the message naming the grant.
        let path = format!("/plugins/{name}/send?to={}", other.url("/x"));
        let (status, text) = call(&c.unix(), "POST", &path, None);
        assert_eq!(status, 403, "{name}: {text}");
        assert!(
            text.starts_with("HTTP-request-denied: POST http://")
                && text.contains(&format!(
                    "the host `{}` is not in `plugins.{name}.grants.http`",
                    other.addr
                )),
            "{name}: {text}"
        );

        // Granted, but nothing listens: the wasi:http error code, not a denial.
        let path = format!("/plugins/{name}/send?to=http://{closed}/x");
        let (status, text) = call(&c.unix(), "POST", &path, None);
        assert_eq!(status, 502, "{name}: {text}");
        assert!(
            text.starts_with("connection-refused: POST http://") && !text.contains("denied"),
            "{name}: {text}"
        );

        // Not a URL: the plugin's own input error.
        let (status, text) = call(
            &c.unix(),
            "POST",
            &format!("/plugins/{name}/send?to=ftp://x"),
            None,
        );
        assert_eq!(status, 400, "{name}: {text}");
        assert!(
            text.contains("`ftp://x` is not an http:// or https:// URL"),
            "{name}: {text}"
        );
    }
    assert!(other.received().is_empty(), "{:?}", other.received());
    // Each denial is in the log, naming the plugin and the grant.
    for name in ["control-c", "control-js"] {
        c.pilot.wait_log(
            &format!(
                "plugin `{name}`: denied an HTTP request to `{}` (not in `plugins.{name}.grants.http`)",
                other.addr
            ),
            SOON,
        );
    }
}
