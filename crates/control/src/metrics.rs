//! `GET /metrics`: the processes and plugins in Prometheus' text format (version 0.0.4).
//!
//! Written by hand: a dozen gauges and counters computed from one snapshot per scrape need no
//! registry, and the format is a line per sample.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::backend::Backend;
use super::model::ProcessView;
use pilot_core::extension::PluginStatus;

/// Serves the metrics.
pub async fn metrics(State(b): State<Backend>) -> Response {
    let text = render(&b.processes().await, &b.plugins());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

type ProcessMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ProcessView) -> f64,
);
type PluginMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PluginStatus) -> f64,
);

const PROCESS: [ProcessMetric; 6] = [
    ("pilot_process_up", "gauge", "Whether the process has a running child (1) or not (0).", |p| f64::from(u8::from(p.pid.is_some()))),
    ("pilot_process_ready", "gauge", "Whether the process is ready (1) or not (0).", |p| f64::from(u8::from(p.ready))),
    ("pilot_process_restarts_total", "counter", "Restarts of the process since pilot-host started.", |p| f64::from(p.restarts)),
    ("pilot_process_cpu_seconds_total", "counter", "CPU seconds (user and system) of the process's current child.", |p| p.cpu_seconds_total),
    ("pilot_process_resident_memory_bytes", "gauge", "Resident memory of the process's child, in bytes, at the latest sample.", |p| p.rss_bytes as f64),
    ("pilot_process_start_time_seconds", "gauge", "When the process's current child started, in seconds since the Unix epoch (0 when none runs).", |p| p.start_time.unwrap_or(0.0)),
];

const PLUGIN: [PluginMetric; 4] = [
    (
        "pilot_plugin_calls_total",
        "counter",
        "Calls into the plugin (ready checks, hooks, stat handlers).",
        |p| p.calls_total as f64,
    ),
    (
        "pilot_plugin_failures_total",
        "counter",
        "Calls into the plugin that trapped, timed out or returned an error.",
        |p| p.failures_total as f64,
    ),
    (
        "pilot_plugin_quarantined",
        "gauge",
        "Whether the plugin is quarantined (1) or not (0).",
        |p| f64::from(u8::from(p.quarantined)),
    ),
    (
        "pilot_plugin_fuel_consumed_total",
        "counter",
        "Fuel consumed by the plugin's calls.",
        |p| p.fuel_consumed_total as f64,
    ),
];

/// Renders the exposition text.
pub fn render(processes: &[ProcessView], plugins: &[PluginStatus]) -> String {
    let mut out = String::with_capacity(256 + processes.len() * 400);
    for (name, kind, help, value) in PROCESS {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for p in processes {
            let _ = writeln!(
                out,
                "{name}{{process=\"{}\"}} {}",
                escape(&p.name),
                value(p)
            );
        }
    }
    for (name, kind, help, value) in PLUGIN {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for p in plugins {
            let _ = writeln!(out, "{name}{{plugin=\"{}\"}} {}", escape(&p.name), value(p));
        }
    }
    out
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
