//! Child output: read line by line, kept in a bounded buffer per process, printed with the process name
//! as a prefix (coloured on a terminal).
//!
//! Reading never waits for printing: lines go to one printer thread through a bounded queue, and when
//! the queue is full (a flood, or a slow terminal) lines are dropped from the printout and counted,
//! never from the buffer. A line longer than 16 KiB is cut and marked.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};

/// The longest line kept whole, in bytes.
pub const MAX_LINE: usize = 16 * 1024;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Where it came from.
    pub stream: Stream,
    /// The text, without its newline.
    pub text: String,
}

/// The last lines of one process, and the followers of new ones.
#[derive(Debug)]
pub struct LogBuffer {
    inner: Mutex<Kept>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Kept {
    /// Grows as lines come (a quiet process costs nothing), up to the capacity.
    lines: VecDeque<LogLine>,
    /// Made on the first follow.
    followers: Option<tokio::sync::broadcast::Sender<LogLine>>,
}

/// Lines kept for a follower that reads slower than the process prints.
const FOLLOW_LAG: usize = 1024;

impl LogBuffer {
    /// Creates a buffer keeping the last `capacity` lines.
    pub fn new(capacity: usize) -> LogBuffer {
        LogBuffer {
            inner: Mutex::new(Kept::default()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, line: LogLine) {
        let mut kept = self.lock();
        if let Some(followers) = &kept.followers {
            if followers.send(line.clone()).is_err() {
                kept.followers = None;
            }
        }
        if kept.lines.len() == self.capacity {
            kept.lines.pop_front();
        }
        if self.capacity > 0 {
            kept.lines.push_back(line);
        }
    }

    /// Returns the kept lines, oldest first.
    pub fn snapshot(&self) -> Vec<LogLine> {
        self.tail(usize::MAX)
    }

    /// Returns the last `n` kept lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let kept = self.lock();
        let skip = kept.lines.len().saturating_sub(n);
        kept.lines.iter().skip(skip).cloned().collect()
    }

    /// Returns the last `n` kept lines and a receiver of every line after them.
    pub fn follow(&self, n: usize) -> (Vec<LogLine>, tokio::sync::broadcast::Receiver<LogLine>) {
        let mut kept = self.lock();
        let rx = match &kept.followers {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = tokio::sync::broadcast::channel(FOLLOW_LAG);
                kept.followers = Some(tx);
                rx
            }
        };
        let skip = kept.lines.len().saturating_sub(n);
        (kept.lines.iter().skip(skip).cloned().collect(), rx)
    }
}

/// The shared printer of child output.
#[derive(Debug, Clone)]
pub struct Printer {
    queue: mpsc::SyncSender<String>,
    dropped: Arc<AtomicU64>,
    colour: bool,
    width: Arc<std::sync::atomic::AtomicUsize>,
}

const COLOURS: [u8; 6] = [36, 33, 32, 35, 34, 31];

impl Printer {
    /// Starts the printer thread; `width` pads names so output lines up.
    pub fn start(colour: bool, width: usize, events: super::events::Bus) -> Printer {
        let (queue, rx) = mpsc::sync_channel::<String>(8192);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        std::thread::Builder::new()
            .name("pilot-output".into())
            .spawn(move || {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                while let Ok(first) = rx.recv() {
                    let _ = out.write_all(first.as_bytes());
                    while let Ok(more) = rx.try_recv() {
                        let _ = out.write_all(more.as_bytes());
                    }
                    let lost = counter.swap(0, Ordering::Relaxed);
                    if lost > 0 {
                        let _ = writeln!(out, "[pilot-host] {lost} lines of output were not printed (output too slow)");
                        events.send(super::events::Event::OutputDropped { lines: lost });
                    }
                    let _ = out.flush();
                }
            })
            .expect("spawn the output thread");
        Printer {
            queue,
            dropped,
            colour,
            width: Arc::new(width.into()),
        }
    }

    /// Pads names to `width` from now on (a reload may bring longer names).
    pub fn set_width(&self, width: usize) {
        self.width.store(width, Ordering::Relaxed);
    }

    /// Returns the prefix for process number `index` called `name`.
    pub fn prefix(&self, index: usize, name: &str) -> String {
        let width = self.width.load(Ordering::Relaxed);
        if self.colour {
            format!(
                "\x1b[{}m{name:<w$} |\x1b[0m ",
                COLOURS[index % COLOURS.len()],
                w = width
            )
        } else {
            format!("{name:<w$} | ", w = width)
        }
    }

    fn print(&self, prefix: &str, text: &str) {
        let line = format!("{prefix}{text}\n");
        if self.queue.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads `stream` line by line until it closes: into `buffer`, and to `printer` with `prefix`.
pub async fn capture(
    stream: impl AsyncRead + Unpin,
    kind: Stream,
    prefix: String,
    buffer: Arc<LogBuffer>,
    printer: Printer,
) {
    // Small: a thousand children must stay cheap; long lines are put together in `line`.
    let mut reader = BufReader::with_capacity(4 * 1024, stream);
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (part, complete) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], true),
            None => (chunk, false),
        };
        let used = part.len() + usize::from(complete);
        if !skipping {
            let room = MAX_LINE - line.len();
            line.extend_from_slice(&part[..part.len().min(room)]);
        }
        reader.consume(used);
        if !skipping && line.len() >= MAX_LINE && !complete {
            emit(
                &mut line,
                " …[line cut at 16 KiB]",
                kind,
                &prefix,
                &buffer,
                &printer,
            );
            skipping = true;
        } else if complete {
            if !skipping {
                emit(&mut line, "", kind, &prefix, &buffer, &printer);
            }
            skipping = false;
        }
    }
    if !line.is_empty() {
        emit(&mut line, "", kind, &prefix, &buffer, &printer);
    }
}

fn emit(
    line: &mut Vec<u8>,
    suffix: &str,
    kind: Stream,
    prefix: &str,
    buffer: &LogBuffer,
    printer: &Printer,
) {
    let mut text = String::from_utf8_lossy(line).into_owned();
    if text.ends_with('\r') {
        text.pop();
    }
    text.push_str(suffix);
    line.clear();
    printer.print(prefix, &text);
    buffer.push(LogLine { stream: kind, text });
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn captured(input: &[u8], capacity: usize) -> Vec<String> {
        let buffer = Arc::new(LogBuffer::new(capacity));
        let printer = Printer::start(false, 4, crate::supervisor::Bus::new());
        capture(
            input,
            Stream::Stdout,
            "t | ".into(),
            buffer.clone(),
            printer,
        )
        .await;
        buffer.snapshot().into_iter().map(|l| l.text).collect()
    }

    #[tokio::test]
    async fn lines_are_split_and_the_last_one_kept_without_newline() {
        assert_eq!(captured(b"a\nb\r\n\nc", 10).await, vec!["a", "b", "", "c"]);
    }

    #[tokio::test]
    async fn the_buffer_keeps_only_the_last_lines() {
        assert_eq!(captured(b"1\n2\n3\n4\n", 2).await, vec!["3", "4"]);
    }

    #[tokio::test]
    async fn a_huge_line_is_cut_and_the_next_line_survives() {
        let mut input = vec![b'x'; MAX_LINE * 5];
        input.extend_from_slice(b"\nnext\n");
        let lines = captured(&input, 10).await;
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("…[line cut at 16 KiB]"));
        assert_eq!(lines[0].len(), MAX_LINE + " …[line cut at 16 KiB]".len());
        assert_eq!(lines[1], "next");
    }
}
