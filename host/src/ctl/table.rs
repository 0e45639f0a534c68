//! The `ctl status` table, as a person reads it in a terminal.

use crate::control::model::ProcessView;
use crate::supervisor::State;

/// Renders one line per plugin that failed or is quarantined (nothing when all are well), so that a
/// quarantine shows in `ctl status`.
pub fn render_plugins(plugins: &[serde_json::Value]) -> String {
    let mut out = String::new();
    for p in plugins {
        let failures = p["failures_total"].as_u64().unwrap_or(0);
        let quarantined = p["quarantined"] == true;
        if failures == 0 && !quarantined {
            continue;
        }
        let name = crate::manifest::escape_controls(p["name"].as_str().unwrap_or("?"));
        let state = if quarantined {
            "QUARANTINED"
        } else {
            "failing"
        };
        let last = p["last_error"]
            .as_str()
            .map(|e| format!("; last: {}", crate::manifest::escape_controls(e)))
            .unwrap_or_default();
        out.push_str(&format!(
            "plugin {name}: {state}, {failures} of {} calls failed{last}\n",
            p["calls_total"].as_u64().unwrap_or(0)
        ));
    }
    out
}

/// Renders the processes as an aligned table; `colour` colours the states.
pub fn render(processes: &[ProcessView], colour: bool) -> String {
    let header = [
        "NAME", "STATE", "PID", "UPTIME", "RESTARTS", "CPU", "MEMORY",
    ];
    let rows: Vec<[String; 7]> = processes
        .iter()
        .map(|p| {
            [
                crate::manifest::escape_controls(&p.name),
                p.state.as_str().to_string(),
                p.pid.map_or_else(|| "-".into(), |pid| pid.to_string()),
                if p.pid.is_some() {
                    uptime(p.uptime_sec)
                } else {
                    "-".into()
                },
                p.restarts.to_string(),
                if p.pid.is_some() {
                    format!("{:.1}%", p.cpu_percent)
                } else {
                    "-".into()
                },
                // 0 bytes: not sampled yet.
                if p.pid.is_some() && p.rss_bytes > 0 {
                    memory(p.rss_bytes)
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[&str], state_colour: Option<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            // Numbers are right-aligned, words left-aligned.
            let right = matches!(i, 2..=6);
            let padded = if right {
                format!("{cell:>w$}")
            } else {
                format!("{cell:<w$}")
            };
            match (i, state_colour) {
                (1, Some(c)) => s.push_str(&format!("\x1b[{c}m{padded}\x1b[0m")),
                _ => s.push_str(&padded),
            }
            if i + 1 < cells.len() {
                s.push_str("  ");
            }
        }
        s.trim_end().to_string()
    };
    out.push_str(&line(&header, None));
    out.push('\n');
    for (row, p) in rows.iter().zip(processes) {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        let c = colour.then(|| state_colour(p.state));
        out.push_str(&line(&cells, c));
        out.push('\n');
    }
    out
}

fn state_colour(state: State) -> &'static str {
    match state {
        State::Ready | State::Running => "32",
        State::Failed => "31",
        State::Starting | State::Stopping | State::BackingOff => "33",
        State::Pending | State::Stopped | State::Skipped => "2",
    }
}

/// `3d04h`, `2h05m`, `4m07s`, `12s`.
pub fn uptime(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `512 KiB`, `12.3 MiB`, `1.2 GiB`.
pub fn memory(bytes: u64) -> String {
    let b = bytes as f64;
    if b < 1024.0 * 1024.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.1} GiB", b / 1024.0 / 1024.0 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        assert_eq!(uptime(12.7), "12s");
        assert_eq!(uptime(247.0), "4m07s");
        assert_eq!(uptime(7500.0), "2h05m");
        assert_eq!(uptime(273_600.0), "3d04h");
        assert_eq!(memory(524_288), "512 KiB");
        assert_eq!(memory(12_897_484), "12.3 MiB");
    }
}
