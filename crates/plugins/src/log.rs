//! Plugin output into the host's log: `host.log` calls and WASI stdout/stderr, tagged with the plugin's
//! name, stripped of terminal escapes and control characters, cut at 2 KiB, and rate-limited per plugin
//! (a burst of 200 lines, then 100 lines a second). Dropped lines are counted and reported at most once
//! a second per plugin, in the log and as a [`PluginEvent::LogDropped`].

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::bindings::LogLevel;
use pilot_core::extension::{PluginEvent, PluginEventSink};

const BURST: f64 = 200.0;
const PER_SECOND: f64 = 100.0;
const MAX_LINE: usize = 2048;

/// The shortest time between two "lines dropped" notices of one plugin.
pub const NOTICE_EVERY: Duration = Duration::from_secs(1);

/// The log of one plugin.
pub struct PluginLog {
    name: Arc<str>,
    bucket: Mutex<Bucket>,
    events: PluginEventSink,
}

impl std::fmt::Debug for PluginLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginLog")
            .field("name", &self.name)
            .finish()
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    dropped: u64,
    dropped_since: Option<Instant>,
    last_notice: Option<Instant>,
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
    /// Creates the log of plugin `name`, reporting dropped lines to `events`.
    pub fn new(name: &str, events: PluginEventSink) -> Arc<PluginLog> {
        Arc::new(PluginLog {
            name: name.into(),
            bucket: Mutex::new(Bucket {
                tokens: BURST,
                refilled: Instant::now(),
                dropped: 0,
                dropped_since: None,
                last_notice: None,
            }),
            events,
        })
    }

    /// Returns the plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes one line at `level`, unless over the rate limit.
    pub fn line(&self, level: LogLevel, text: &str) {
        let now = Instant::now();
        let notice = {
            let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
            b.tokens =
                (b.tokens + now.duration_since(b.refilled).as_secs_f64() * PER_SECOND).min(BURST);
            b.refilled = now;
            if b.tokens < 1.0 {
                b.dropped += 1;
                b.dropped_since.get_or_insert(now);
                let notice = b.take_notice(now);
                drop(b);
                self.notify(notice);
                return;
            }
            b.tokens -= 1.0;
            b.take_notice(now)
        };
        self.notify(notice);
        let name = &self.name;
        let text = sanitize(text);
        match level {
            LogLevel::Trace => tracing::trace!("plugin `{name}`: {text}"),
            LogLevel::Debug => tracing::debug!("plugin `{name}`: {text}"),
            LogLevel::Info => tracing::info!("plugin `{name}`: {text}"),
            LogLevel::Warn => tracing::warn!("plugin `{name}`: {text}"),
            LogLevel::Error => tracing::error!("plugin `{name}`: {text}"),
        }
    }

    /// Reports lines dropped so far if no notice was given in the last second; returns when to call
    /// again if some are still unreported.
    pub fn flush_notice(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let notice = b.take_notice(now);
        let again = (b.dropped > 0).then(|| b.last_notice.map_or(now, |t| t + NOTICE_EVERY));
        drop(b);
        self.notify(notice);
        again
    }

    /// Reports every line dropped so far, due or not (when the plugin stops).
    pub fn flush_final(&self) {
        let now = Instant::now();
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        b.last_notice = None;
        let notice = b.take_notice(now);
        drop(b);
        self.notify(notice);
    }

    fn notify(&self, notice: Option<(u64, Duration)>) {
        let Some((count, over)) = notice else { return };
        let name = &self.name;
        tracing::warn!(
            "plugin `{name}`: {count} log lines dropped in {:.1} s (limit: {BURST} at once, then {PER_SECOND} a second)",
            over.as_secs_f64().max(0.1)
        );
        (self.events)(PluginEvent::LogDropped {
            plugin: name.to_string(),
            count,
        });
    }
}

impl Bucket {
    /// Takes the dropped count for a notice, if one is due.
    fn take_notice(&mut self, now: Instant) -> Option<(u64, Duration)> {
        let due = self
            .last_notice
            .is_none_or(|t| now.duration_since(t) >= NOTICE_EVERY);
        if self.dropped == 0 || !due {
            return None;
        }
        self.last_notice = Some(now);
        let since = self.dropped_since.take().unwrap_or(now);
        Some((std::mem::take(&mut self.dropped), now.duration_since(since)))
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
    fn dropped_lines_are_noticed_at_most_once_a_second() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let log = PluginLog::new("flood", Arc::new(move |e| sink.lock().unwrap().push(e)));
        for i in 0..10_000 {
            log.line(LogLevel::Trace, &format!("line {i}"));
        }
        let noticed = |events: &Mutex<Vec<PluginEvent>>| {
            events
                .lock()
                .unwrap()
                .iter()
                .map(|e| match e {
                    PluginEvent::LogDropped { count, .. } => *count,
                    other => panic!("unexpected event {other:?}"),
                })
                .collect::<Vec<_>>()
        };
        // The first drop is noticed at once; the rest waits out the second.
        assert_eq!(noticed(&events), [1]);
        assert!(
            log.flush_notice().is_some(),
            "more dropped lines are pending"
        );
        assert_eq!(noticed(&events), [1]);
        log.bucket.lock().unwrap().last_notice = Some(Instant::now() - NOTICE_EVERY);
        assert_eq!(log.flush_notice(), None);
        let counts = noticed(&events);
        assert_eq!(counts.len(), 2);
        // Every line was logged or counted (a token or two may have refilled meanwhile).
        let logged = 10_000 - counts.iter().sum::<u64>();
        assert!((200..210).contains(&logged), "{logged} lines logged");
    }

    #[test]
    fn long_lines_are_cut() {
        let s = sanitize(&"x".repeat(10_000));
        assert!(s.len() < MAX_LINE + 16 && s.ends_with("…[cut]"));
    }
}
