//! The calls of a spec file for a control plugin: HTTP requests (as the control plane passes them on,
//! with the path after `/plugins/NAME`), events fed to `on-event` (written as the supervisor's event
//! JSON, which is what the plugin gets) and ticks, each with what it must answer.
//!
//! ```yaml
//! calls:
//!   - http: { method: POST, path: /restart-group, body: '{"prefix":"web"}', headers: { content-type: application/json } }
//!     expect: { status: 200, body_contains: [restarted] }   # status: 200, [200, 204], 2xx or 200-299
//!   - event: { type: exited, process: web, code: 3 }        # missing fields get plausible values
//!     expect: ok                                            # ok (default), error, { error: KIND }
//!   - tick: {}
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use pilot_core::supervisor::{Event, EventRecord};

/// The `at_ms` of the first event a spec feeds, when it gives none; each next one is a second later.
const FIRST_AT_MS: u64 = 1_700_000_000_000;

/// One call of a control plugin's spec file.
#[derive(Debug, Clone)]
pub struct ControlCall {
    /// Its place in the file's `calls`.
    pub index: usize,
    /// What it calls.
    pub target: ControlTarget,
    /// What it must answer.
    pub expect: ControlExpect,
}

/// What a control plugin's spec call calls.
#[derive(Debug, Clone)]
pub enum ControlTarget {
    /// An HTTP request to the plugin's handler, on a fresh instance.
    Http(HttpCall),
    /// An event for `on-event`, on the events instance.
    Event(Box<EventRecord>),
    /// `on-tick`, on the events instance.
    Tick,
}

/// An HTTP request of a spec file.
#[derive(Debug, Clone)]
pub struct HttpCall {
    /// The method.
    pub method: http::Method,
    /// The path after `/plugins/NAME`, with its query.
    pub path: http::uri::PathAndQuery,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: bytes::Bytes,
}

impl std::fmt::Display for HttpCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// What a control plugin's spec call must answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlExpect {
    /// An HTTP answer with one of these statuses and a body holding each text.
    Http {
        /// The statuses allowed.
        status: Statuses,
        /// Texts the body must contain.
        body_contains: Vec<String>,
    },
    /// `on-event` or `on-tick` returned without the plugin's own error.
    Ok,
    /// The plugin's own error, of the kind if given.
    Error(Option<String>),
}

/// The statuses an HTTP call may answer with.
#[derive(Debug, Clone, PartialEq)]
pub enum Statuses {
    /// One of these.
    List(Vec<u16>),
    /// From the first to the second, both included.
    Range(u16, u16),
}

impl Statuses {
    /// Returns whether `status` is one of them.
    pub fn allows(&self, status: u16) -> bool {
        match self {
            Statuses::List(list) => list.contains(&status),
            Statuses::Range(from, to) => (*from..=*to).contains(&status),
        }
    }
}

impl std::fmt::Display for ControlExpect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlExpect::Http {
                status,
                body_contains,
            } => {
                match status {
                    Statuses::List(l) if l.len() == 1 => write!(f, "status {}", l[0])?,
                    Statuses::List(l) => {
                        let l: Vec<String> = l.iter().map(u16::to_string).collect();
                        write!(f, "status one of {}", l.join(", "))?
                    }
                    Statuses::Range(a, b) => write!(f, "status {a} to {b}")?,
                }
                for t in body_contains {
                    write!(f, ", a body containing `{t}`")?;
                }
                Ok(())
            }
            ControlExpect::Ok => write!(f, "ok"),
            ControlExpect::Error(None) => write!(f, "the plugin's own error"),
            ControlExpect::Error(Some(k)) => write!(f, "error `{k}`"),
        }
    }
}

/// `http:` of a call, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    method: Option<String>,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    json: Option<Value>,
}

/// The parts of a spec call that a control plugin's call may hold.
pub(super) struct RawControl {
    pub http: Option<RawHttp>,
    pub event: Option<Value>,
    pub tick: Option<Value>,
    pub expect: Option<Value>,
}

/// Reads call `index`, the `events`-th event of the file if it is one (from 1).
pub(super) fn call(raw: RawControl, index: usize, events: u64) -> Result<ControlCall, String> {
    let (target, is_http) = match (raw.http, raw.event, raw.tick) {
        (Some(h), None, None) => (ControlTarget::Http(http_call(h)?), true),
        (None, Some(e), None) => (ControlTarget::Event(Box::new(event(e, events)?)), false),
        (None, None, Some(t)) => {
            if !matches!(&t, Value::Null) && t.as_object().is_none_or(|m| !m.is_empty()) {
                return Err(format!("`tick` is `{t}`; write `tick: {{}}`"));
            }
            (ControlTarget::Tick, false)
        }
        _ => return Err("name exactly one of `http`, `event`, `tick`".into()),
    };
    let expect = match (raw.expect, is_http) {
        (None, true) => return Err(
            "an `http` call needs `expect`, e.g. `expect: { status: 200, body_contains: [ok] }`"
                .into(),
        ),
        (None, false) => ControlExpect::Ok,
        (Some(v), true) => http_expect(&v)?,
        (Some(v), false) => outcome_expect(&v)?,
    };
    Ok(ControlCall {
        index,
        target,
        expect,
    })
}

fn http_call(raw: RawHttp) -> Result<HttpCall, String> {
    let method = raw.method.unwrap_or_else(|| "GET".into());
    let method =
        http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| {
            format!("`http.method` is `{method}`; write a method such as `GET` or `POST`")
        })?;
    let path = raw
        .path
        .starts_with('/')
        .then(|| raw.path.parse::<http::uri::PathAndQuery>().ok())
        .flatten()
        .ok_or_else(|| {
            format!(
                "`http.path` is `{}`; write the path after `/plugins/NAME`, starting with `/`, e.g. `/health` or `/restart-group?prefix=web`",
                raw.path
            )
        })?;
    let mut headers = http::HeaderMap::new();
    for (name, value) in &raw.headers {
        let n = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`http.headers` has the name `{name}`, which is not a header name; use letters, digits and `-`"))?;
        let v = http::HeaderValue::from_str(value).map_err(|_| {
            format!("`http.headers.{name}` is `{value}`, which is not a header value (no control characters)")
        })?;
        headers.append(n, v);
    }
    let body = match (raw.body, raw.json) {
        (Some(_), Some(_)) => {
            return Err("`http` has both `body` and `json`; give the body one way".into())
        }
        (Some(text), None) => text.into_bytes(),
        (None, Some(value)) => {
            if !headers.contains_key(http::header::CONTENT_TYPE) {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
            }
            value.to_string().into_bytes()
        }
        (None, None) => Vec::new(),
    };
    Ok(HttpCall {
        method,
        path,
        headers,
        body: body.into(),
    })
}

/// Fields an event of each type gets when the spec leaves them out.
fn defaults(kind: &str) -> Value {
    let pid = Value::from(4242);
    let pairs: Vec<(&str, Value)> = match kind {
        "spawned" | "adopted" => vec![("pid", pid)],
        "ready" => vec![("pid", pid), ("after_ms", 12.5.into())],
        "exited" => vec![("pid", pid), ("code", 0.into()), ("uptime_sec", 1.0.into())],
        "restart_scheduled" => vec![("delay_sec", 0.5.into()), ("restarts", 1.into())],
        "reloaded" => ["added", "removed", "changed"]
            .map(|k| (k, Value::Array(Vec::new())))
            .to_vec(),
        _ => Vec::new(),
    };
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Reads an event as the supervisor writes it, filling in what is left out.
fn event(value: Value, nth: u64) -> Result<EventRecord, String> {
    let Value::Object(mut given) = value else {
        return Err(format!(
            "`event` is `{value}`; write the event's JSON, e.g. `event: {{ type: exited, process: web, code: 3 }}`"
        ));
    };
    let number = |given: &mut Map<String, Value>, key: &str, default: u64| match given.remove(key) {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("`event.{key}` is `{v}`; write a whole number")),
    };
    let seq = number(&mut given, "seq", nth)?;
    let at_ms = number(&mut given, "at_ms", FIRST_AT_MS + (nth - 1) * 1000)?;
    let kind = given.get("type").and_then(Value::as_str).unwrap_or("");
    if kind == "output_dropped" {
        return Err(
            "`event.type` is `output_dropped`, which control plugins never get; feed another event"
                .into(),
        );
    }
    let hint = match kind {
        "state-changed" | "state_changed" => {
            "; the event JSON's `type` of `state-changed` is `state`"
        }
        k if k.contains('-') => "; write the event JSON's `type` with `_`, e.g. `gave_up`",
        _ => "",
    };
    let mut merged = match defaults(kind) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if kind == "exited" && given.contains_key("signal") && !given.contains_key("code") {
        merged.insert("code".into(), Value::Null);
    }
    merged.extend(given);
    let event: Event =
        serde_json::from_value(Value::Object(merged)).map_err(|e| format!("`event`: {e}{hint}"))?;
    Ok(EventRecord { seq, at_ms, event })
}

const ERROR_KINDS: [&str; 4] = ["invalid_config", "unknown_name", "unavailable", "failed"];

fn outcome_expect(v: &Value) -> Result<ControlExpect, String> {
    match v {
        Value::String(s) if s == "ok" => Ok(ControlExpect::Ok),
        Value::String(s) if s == "error" => Ok(ControlExpect::Error(None)),
        Value::Object(m) if m.len() == 1 && m.contains_key("error") => match &m["error"] {
            Value::String(k) if ERROR_KINDS.contains(&k.as_str()) => {
                Ok(ControlExpect::Error(Some(k.clone())))
            }
            other => Err(format!(
                "`expect.error` is `{other}`; use one of `{}`",
                ERROR_KINDS.join("`, `")
            )),
        },
        _ => Err(format!(
            "`expect` is `{v}`; an `event` or `tick` call expects `ok`, `error` or `{{ error: KIND }}`"
        )),
    }
}

fn http_expect(v: &Value) -> Result<ControlExpect, String> {
    let shape = "an `http` call expects `{ status: 200, body_contains: [TEXT] }` (status: a number, a list, `2xx` or `200-299`)";
    let Value::Object(m) = v else {
        return Err(format!("`expect` is `{v}`; {shape}"));
    };
    if let Some(k) = m.keys().find(|k| *k != "status" && *k != "body_contains") {
        return Err(format!("`expect` has the unknown field `{k}`; {shape}"));
    }
    let status = match m.get("status") {
        None => return Err(format!("`expect` has no `status`; {shape}")),
        Some(s) => statuses(s).ok_or_else(|| format!("`expect.status` is `{s}`; {shape}"))?,
    };
    let body_contains = match m.get("body_contains") {
        None => Vec::new(),
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => list
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        Some(other) => {
            return Err(format!(
                "`expect.body_contains` is `{other}`; write a text or a list of texts"
            ))
        }
    };
    Ok(ControlExpect::Http {
        status,
        body_contains,
    })
}

fn statuses(v: &Value) -> Option<Statuses> {
    let code = |v: &Value| {
        v.as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| (100..=599).contains(n))
    };
    match v {
        Value::Number(_) => code(v).map(|c| Statuses::List(vec![c])),
        Value::Array(list) if !list.is_empty() => list
            .iter()
            .map(code)
            .collect::<Option<_>>()
            .map(Statuses::List),
        Value::String(s) => {
            if let Some(class) = s.strip_suffix("xx").and_then(|c| c.parse::<u16>().ok()) {
                return (1..=5)
                    .contains(&class)
                    .then_some(Statuses::Range(class * 100, class * 100 + 99));
            }
            let (a, b) = s.split_once('-')?;
            let (a, b) = (
                code(&a.trim().parse::<u64>().ok()?.into())?,
                code(&b.trim().parse::<u64>().ok()?.into())?,
            );
            (a <= b).then_some(Statuses::Range(a, b))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(yaml: &str) -> RawControl {
        let v: BTreeMap<String, Value> = serde_yaml::from_str(yaml).unwrap();
        RawControl {
            http: v
                .get("http")
                .map(|h| serde_json::from_value(h.clone()).unwrap()),
            event: v.get("event").cloned(),
            tick: v.get("tick").cloned(),
            expect: v.get("expect").cloned(),
        }
    }

    #[test]
    fn events_read_as_the_supervisor_writes_them_with_plausible_defaults() {
        let c = call(raw("event: { type: exited, process: web, code: 3 }"), 0, 2).unwrap();
        let ControlTarget::Event(record) = c.target else {
            panic!("an event")
        };
        assert_eq!((record.seq, record.at_ms), (2, FIRST_AT_MS + 1000));
        let json: Value = serde_json::to_value(&*record).unwrap();
        assert_eq!(json["type"], "exited");
        assert_eq!(json["code"], 3);
        assert_eq!(json["pid"], 4242);
        assert_eq!(c.expect, ControlExpect::Ok);
        let killed = call(
            raw("event: { type: exited, process: web, signal: 9 }"),
            0,
            1,
        )
        .unwrap();
        let ControlTarget::Event(record) = killed.target else {
            panic!("an event")
        };
        assert_eq!(serde_json::to_value(&*record).unwrap()["code"], Value::Null);
    }

    #[test]
    fn statuses_take_a_number_a_list_a_class_or_a_range() {
        let s = |v: Value| statuses(&v);
        assert_eq!(s(200.into()), Some(Statuses::List(vec![200])));
        assert_eq!(
            s(serde_json::json!([200, 204])),
            Some(Statuses::List(vec![200, 204]))
        );
        assert_eq!(s("2xx".into()), Some(Statuses::Range(200, 299)));
        assert_eq!(s("400-404".into()), Some(Statuses::Range(400, 404)));
        for bad in [
            Value::from(42),
            "9xx".into(),
            "300-200".into(),
            serde_json::json!([]),
        ] {
            assert_eq!(s(bad.clone()), None, "{bad}");
        }
    }

    #[test]
    fn mistakes_name_the_field_the_value_and_the_fix() {
        for (yaml, want) in [
            (
                "http: { path: health }\nexpect: { status: 200 }",
                "`http.path` is `health`; write the path after",
            ),
            (
                "http: { path: /h, method: 'G T' }\nexpect: { status: 200 }",
                "`http.method` is `G T`",
            ),
            ("http: { path: /h }", "an `http` call needs `expect`"),
            (
                "http: { path: /h }\nexpect: ok",
                "`expect` is `\"ok\"`; an `http` call expects",
            ),
            (
                "http: { path: /h }\nexpect: { status: 200, body: x }",
                "unknown field `body`",
            ),
            (
                "http: { path: /h }\nexpect: { status: 2000 }",
                "`expect.status` is `2000`",
            ),
            (
                "event: { type: crashed, process: web }",
                "unknown variant `crashed`",
            ),
            (
                "event: { type: gave-up, process: web }",
                "with `_`, e.g. `gave_up`",
            ),
            (
                "event: { type: exited, process: web, cod: 3 }",
                "unknown field `cod`",
            ),
            ("event: { type: output_dropped, lines: 3 }", "never get"),
            (
                "tick: { every: 1 }",
                "`tick` is `{\"every\":1}`; write `tick: {}`",
            ),
            (
                "tick: {}\nexpect: { error: oops }",
                "`expect.error` is `\"oops\"`",
            ),
        ] {
            let e = call(raw(yaml), 0, 1).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}
