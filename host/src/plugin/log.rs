//! Plugin output into the host's log: `host.log` calls and WASI stdout/stderr, tagged with the plugin's
//! name, stripped of terminal escapes and control characters, cut at 2 KiB, and rate-limited per plugin
//! (a burst of 200 lines, then 100 lines a second; what is dropped is counted and reported).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use super::bindings::LogLevel;

const BURST: f64 = 200.0;
const PER_SECOND: f64 = 100.0;
const MAX_LINE: usize = 2048;

/// The log of one plugin.
#[derive(Debug)]
pub struct PluginLog {
    name: Arc<str>,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    dropped: u64,
}

/// Returns `text` without terminal escape sequences and control characters (tabs become spaces).
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_LINE));
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI: ESC [ params final-byte; OSC: ESC ] ... BEL or ESC \; others: ESC + one char.
                match chars.next() {
                    Some('[') => {
                        for c in chars.by_ref() {
                            if ('@'..='~').contains(&c) {
                                break;
                            }
                        }
                    }
                    Some(']') => {
                        while let Some(c) = chars.next() {
                            if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                                break;
                            }
                        }
                    }
                    _ => {}
                }
            }
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
        if out.len() >= MAX_LINE {
            out.push_str(" …[cut]");
            break;
        }
    }
    out
}

impl PluginLog {
    /// Creates the log of plugin `name`.
    pub fn new(name: &str) -> Arc<PluginLog> {
        Arc::new(PluginLog {
            name: name.into(),
            bucket: Mutex::new(Bucket {
                tokens: BURST,
                refilled: Instant::now(),
                dropped: 0,
            }),
        })
    }

    /// Writes one line at `level`, unless over the rate limit.
    pub fn line(&self, level: LogLevel, text: &str) {
        let dropped = {
            let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            b.tokens =
                (b.tokens + now.duration_since(b.refilled).as_secs_f64() * PER_SECOND).min(BURST);
            b.refilled = now;
            if b.tokens < 1.0 {
                b.dropped += 1;
                return;
            }
            b.tokens -= 1.0;
            std::mem::take(&mut b.dropped)
        };
        let name = &self.name;
        if dropped > 0 {
            tracing::warn!(
                "plugin `{name}`: {dropped} log lines dropped (rate limit {PER_SECOND}/s)"
            );
        }
        let text = sanitize(text);
        match level {
            LogLevel::Trace => tracing::trace!("plugin `{name}`: {text}"),
            LogLevel::Debug => tracing::debug!("plugin `{name}`: {text}"),
            LogLevel::Info => tracing::info!("plugin `{name}`: {text}"),
            LogLevel::Warn => tracing::warn!("plugin `{name}`: {text}"),
            LogLevel::Error => tracing::error!("plugin `{name}`: {text}"),
        }
    }
}

/// A WASI output stream (stdout or stderr) that turns lines into log lines.
pub struct LogStream {
    log: Arc<PluginLog>,
    level: LogLevel,
}

impl LogStream {
    /// Creates a stream logging at `level`.
    pub fn new(log: Arc<PluginLog>, level: LogLevel) -> LogStream {
        LogStream { log, level }
    }
}

impl wasmtime_wasi::cli::IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            log: self.log.clone(),
            level: self.level,
            pending: Vec::new(),
        })
    }
}

struct LineWriter {
    log: Arc<PluginLog>,
    level: LogLevel,
    pending: Vec<u8>,
}

impl LineWriter {
    fn flush_lines(&mut self, all: bool) {
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            self.log.line(
                self.level,
                String::from_utf8_lossy(&line[..i]).trim_end_matches('\r'),
            );
        }
        if self.pending.len() > MAX_LINE || (all && !self.pending.is_empty()) {
            let line = std::mem::take(&mut self.pending);
            self.log.line(self.level, &String::from_utf8_lossy(&line));
        }
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        self.flush_lines(false);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.flush_lines(true);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_controls_are_stripped() {
        assert_eq!(
            sanitize("\x1b[31mred\x1b[0m\tand\x07 \x1b]0;title\x07plain"),
            "red and plain"
        );
        assert_eq!(sanitize("a\rb\nc"), "abc");
    }

    #[test]
    fn long_lines_are_cut() {
        let s = sanitize(&"x".repeat(10_000));
        assert!(s.len() < MAX_LINE + 16 && s.ends_with("…[cut]"));
    }
}
