//! `webhook-notify`: a pilot-host control plugin that posts a Slack-style JSON message
//! (`{"text": ...}`) to a webhook when a process crashes, when pilot-host gives up on one (a crash loop,
//! a failed start) and when one is not ready in time. Messages are rate-limited: a burst, then one per
//! interval; what the limit holds back is counted and mentioned in the next message.
//!
//! Configuration (`plugins.webhook-notify.config`):
//! - `url` (required): where to post, e.g. `http://127.0.0.1:9000/hook`; its host must be in
//!   `grants.http`.
//! - `burst` (default 5) and `interval_ms` (default 10000): the rate limit.
//! - `prefix` (default `pilot-host`): the start of every message.
//!
//! HTTP (under `/plugins/webhook-notify/`): `GET /` shows the configuration; `POST /test` posts a test
//! message and answers what the webhook answered.

use std::collections::HashSet;

use pilot_plugin_sdk::control::{
    http, ControlDescription, ControlPlugin, Event, EventKind, Request, Response, Setup,
};
use pilot_plugin_sdk::{log, Params, PluginError};
use serde_json::{json, Value};

/// The plugin's state: its configuration, the rate limit, and which processes are being stopped on
/// purpose (their exits are no crash).
#[derive(Default)]
struct WebhookNotify {
    url: String,
    prefix: String,
    burst: u64,
    interval_ms: u64,
    tokens: u64,
    refilled_at: u64,
    held_back: u64,
    stopping: HashSet<String>,
}

impl WebhookNotify {
    /// Takes one message from the rate limit at `now_ms`.
    fn allow(&mut self, now_ms: u64) -> bool {
        if self.refilled_at == 0 {
            self.refilled_at = now_ms;
            self.tokens = self.burst;
        }
        let earned = now_ms.saturating_sub(self.refilled_at) / self.interval_ms.max(1);
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(self.burst);
            self.refilled_at = now_ms;
        }
        if self.tokens == 0 {
            self.held_back += 1;
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Posts `text` about `process` (an event of `kind`) unless the rate limit holds it back.
    fn notify(&mut self, now_ms: u64, kind: &str, process: &str, text: String, event: Value) {
        if !self.allow(now_ms) {
            return;
        }
        let mut text = format!("{}: {text}", self.prefix);
        if self.held_back > 0 {
            text.push_str(&format!(
                " ({} more held back by the rate limit)",
                self.held_back
            ));
            self.held_back = 0;
        }
        let body = json!({ "text": text, "kind": kind, "process": process, "event": event });
        match http::post_json(&self.url, &body) {
            Ok(answer) if answer.status < 300 => {}
            Ok(answer) => log::warn!(
                "the webhook answered {}: {}",
                answer.status,
                answer.text_body()
            ),
            Err(e) => log::warn!("cannot post to the webhook: {e}"),
        }
    }

    /// What an event means for the webhook: `(kind, process, text)`, or nothing to say.
    fn message(&mut self, event: &Event, data: &Value) -> Option<(&'static str, String, String)> {
        let process = event.process.clone().unwrap_or_default();
        match event.kind {
            EventKind::StateChanged => {
                if data["to"] == "stopping" {
                    self.stopping.insert(process);
                } else if data["to"] == "starting" {
                    self.stopping.remove(&process);
                }
                None
            }
            EventKind::Exited if !self.stopping.contains(&process) => {
                let code = data["code"].as_i64();
                let signal = data["signal"].as_i64();
                if code == Some(0) && signal.is_none() {
                    return None;
                }
                let how = match (code, signal) {
                    (_, Some(s)) => format!("was killed by signal {s}"),
                    (Some(c), None) => format!("exited with status {c}"),
                    _ => "ended".to_string(),
                };
                let uptime = data["uptime_sec"].as_f64().unwrap_or(0.0);
                let text = format!("`{process}` crashed: it {how} after {uptime:.1} s");
                Some(("crash", process, text))
            }
            EventKind::GaveUp => {
                let reason = data["reason"].as_str().unwrap_or("no reason given");
                let kind = if reason.starts_with("not ready") {
                    "ready_timeout"
                } else {
                    "gave_up"
                };
                let text = format!("gave up on `{process}`: {reason}");
                Some((kind, process, text))
            }
            _ => None,
        }
    }
}

impl ControlPlugin for WebhookNotify {
    fn describe(&self) -> ControlDescription {
        ControlDescription::new("webhook-notify", env!("CARGO_PKG_VERSION"))
    }

    fn init(&mut self, config: Value) -> Result<Setup, PluginError> {
        let config = Params::config(config);
        self.url = config.str("url")?.to_string();
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            return Err(PluginError::invalid_config(format!(
                "`url` is `{}`; give an http:// or https:// URL",
                self.url
            )));
        }
        self.burst = config.u64_or("burst", 5)?.max(1);
        self.interval_ms = config.u64_or("interval_ms", 10_000)?.max(1);
        self.prefix = config.str_or("prefix", "pilot-host")?.to_string();
        Ok(Setup::default().events(&[
            EventKind::StateChanged,
            EventKind::Exited,
            EventKind::GaveUp,
        ]))
    }

    fn on_event(&mut self, event: &Event) -> Result<(), PluginError> {
        let data = event.data();
        if let Some((kind, process, text)) = self.message(event, &data) {
            self.notify(event.at_ms, kind, &process, text, data);
        }
        Ok(())
    }

    fn handle(&mut self, request: Request) -> Response {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/") => Response::json(
                200,
                &json!({
                    "url": self.url,
                    "burst": self.burst,
                    "interval_ms": self.interval_ms,
                    "notifies_on": ["crash", "gave_up", "ready_timeout"],
                }),
            ),
            ("POST", "/test") => {
                let body =
                    json!({ "text": format!("{}: test message", self.prefix), "kind": "test" });
                match http::post_json(&self.url, &body) {
                    Ok(answer) => Response::json(
                        200,
                        &json!({ "webhook_status": answer.status, "webhook_body": answer.text_body() }),
                    ),
                    Err(e) => Response::json(502, &json!({ "error": e })),
                }
            }
            _ => Response::text(404, "routes: GET /, POST /test\n"),
        }
    }
}

pilot_plugin_sdk::export_control!(WebhookNotify);

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, process: &str, json: Value) -> Event {
        Event {
            seq: 1,
            at_ms: 1000,
            kind,
            process: Some(process.into()),
            json: json.to_string(),
        }
    }

    #[test]
    fn crashes_and_give_ups_make_messages_planned_stops_do_not() {
        let mut p = WebhookNotify::default();
        let crash = event(
            EventKind::Exited,
            "web",
            json!({"type": "exited", "code": 3, "uptime_sec": 0.25}),
        );
        let (kind, _, text) = p.message(&crash, &crash.data()).unwrap();
        assert_eq!(kind, "crash");
        assert_eq!(text, "`web` crashed: it exited with status 3 after 0.2 s");
        let clean = event(EventKind::Exited, "web", json!({"code": 0}));
        assert!(p.message(&clean, &clean.data()).is_none());
        let stopping = event(EventKind::StateChanged, "web", json!({"to": "stopping"}));
        assert!(p.message(&stopping, &stopping.data()).is_none());
        let killed = event(EventKind::Exited, "web", json!({"signal": 15}));
        assert!(
            p.message(&killed, &killed.data()).is_none(),
            "a planned stop is no crash"
        );
        let slow = event(
            EventKind::GaveUp,
            "db",
            json!({"reason": "not ready after 5.0 s"}),
        );
        assert_eq!(p.message(&slow, &slow.data()).unwrap().0, "ready_timeout");
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_one_per_interval() {
        let mut p = WebhookNotify {
            burst: 2,
            interval_ms: 1000,
            ..WebhookNotify::default()
        };
        assert!(p.allow(10_000) && p.allow(10_000));
        assert!(!p.allow(10_500));
        assert_eq!(p.held_back, 1);
        assert!(p.allow(11_000));
        assert!(!p.allow(11_001));
    }
}
