//! What the benchmarks drive: a running `pilot-host` (its log read line by line, with the timestamps
//! it writes), children spawned directly as baselines, and readings from `/proc`. Everything started
//! here is stopped by its owner's `Drop`, by pid, never by name.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A generous deadline for things that take milliseconds.
pub const SOON: Duration = Duration::from_secs(10);

/// The release binaries and the scratch folder.
pub struct Paths {
    /// `target/release/pilot-host`.
    pub host: PathBuf,
    /// `target/release/pilot-child`.
    pub child: PathBuf,
    /// A folder of our own, removed at the end.
    pub scratch: PathBuf,
}

impl Paths {
    /// Returns a fresh, empty folder `name` inside the scratch folder.
    pub fn dir(&self, name: &str) -> Result<PathBuf, String> {
        let dir = self.scratch.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// Returns a `pilot-child` command with no input and piped output, as pilot-host starts them.
    pub fn child(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.child);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

/// Returns the wall clock in nanoseconds since the epoch, as `pilot-child --append-start` writes it.
pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128
}

/// Waits until `cond` holds, polling every 200 µs; an error names `what` past `timeout`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting until {what}"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

/// Reads the `NAME NANOS` lines of `pilot-child --append-start`.
pub fn read_times(path: &Path) -> Vec<(String, i128)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (name, t) = l.split_once(' ')?;
            Some((name.to_string(), t.parse().ok()?))
        })
        .collect()
}

/// Reads a pid file once it holds a number.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Returns a port the OS just gave out on 127.0.0.1.
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot get a free port: {e}"))
}

/// Sends `signal` to the process `pid` (never to a group, never by name).
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory preconditions.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// Returns whether `pid` is a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    matches!(state, Some(s) if s != 'Z' && s != 'X')
}

/// Returns the CPU time of `pid` (all its threads) in seconds, from its CPU-time clock (nanoseconds:
/// `/proc/PID/stat`'s clock ticks are 10 ms, a third of what pilot-host uses in 30 idle seconds),
/// or from utime + stime where the kernel gives no such clock.
pub fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid only writes into `clock`, which we own.
    if unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) } == 0 {
        if let Some(seconds) = clock_seconds(clock) {
            return Ok(seconds);
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    // After the command: state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields
        .get(11..13)
        .ok_or("short /proc stat line")?
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Ok(ticks as f64 / hz as f64)
}

/// Returns the resident set size of `pid` in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| format!("no VmRSS for {pid}"))
}

/// Returns the CPU time this thread has used, in seconds.
pub fn thread_cpu_seconds() -> f64 {
    clock_seconds(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or(0.0)
}

/// Reads `clock`, in seconds.
fn clock_seconds(clock: libc::clockid_t) -> Option<f64> {
    // SAFETY: timespec is plain data, and clock_gettime only writes into the one we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    let read = unsafe { libc::clock_gettime(clock, &mut ts) } == 0;
    read.then(|| ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

/// Children spawned directly by the bench (the baselines), killed and reaped on drop.
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Children {
    /// Spawns one more.
    pub fn spawn(&mut self, mut cmd: Command) -> Result<u32, String> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot spawn {cmd:?}: {e}"))?;
        let pid = child.id();
        self.0.push(child);
        Ok(pid)
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// The log lines of a pilot-host, with a condition variable to wait on.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

/// A running `pilot-host run MANIFEST`, its output discarded and its log kept; killed on drop.
pub struct Host {
    child: Child,
    log: Arc<Log>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// The file pilot-host logs to, read only when asked ([`Host::run_quiet`]).
    file: Option<PathBuf>,
}

impl Host {
    /// Starts pilot-host on `manifest`.
    pub fn run(paths: &Paths, manifest: &Path) -> Result<Host, String> {
        let mut child = Command::new(&paths.host)
            .arg("run")
            .arg(manifest)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", paths.host.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Log::default());
        let into = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                into.lines.lock().unwrap().push(line);
                into.changed.notify_all();
            }
        });
        Ok(Host {
            child,
            log,
            reader: Some(reader),
            file: None,
        })
    }

    /// Starts pilot-host on `manifest` with its log going to the file `log`, read only when asked: no
    /// thread here waits on pilot-host's output, so none is woken by a log line while pilot-host
    /// works. For sub-millisecond latencies on 2 CPUs, where a woken reader takes one of them.
    pub fn run_quiet(paths: &Paths, manifest: &Path, log: &Path) -> Result<Host, String> {
        let file = std::fs::File::create(log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let child = Command::new(&paths.host)
            .arg("run")
            .arg(manifest)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", paths.host.display()))?;
        Ok(Host {
            child,
            log: Arc::default(),
            reader: None,
            file: Some(log.to_path_buf()),
        })
    }

    /// Reads the log file again, for a quiet host.
    fn refresh(&self) {
        if let Some(text) = self
            .file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
        {
            *self.log.lines.lock().unwrap() = text.lines().map(str::to_string).collect();
        }
    }

    /// Returns pilot-host's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns the log lines containing `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.refresh();
        let lines = self.log.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Waits until at least `n` log lines contain `needle`, and returns them.
    pub fn wait_lines(
        &self,
        needle: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + timeout;
        self.refresh();
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            let found: Vec<String> = lines
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect();
            if found.len() >= n {
                return Ok(found);
            }
            let now = Instant::now();
            if now >= deadline {
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                return Err(format!("pilot-host logged {} of {n} lines with `{needle}` within {timeout:?}; last lines:\n{tail}", found.len()));
            }
            if self.file.is_some() {
                drop(lines);
                std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
                self.refresh();
                lines = self.log.lines.lock().unwrap();
                continue;
            }
            lines = self
                .log
                .changed
                .wait_timeout(lines, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Returns the pids of every child pilot-host logged as started.
    pub fn child_pids(&self) -> Vec<u32> {
        self.lines_with(": started, pid ")
            .iter()
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect()
    }

    /// Sends SIGTERM, waits for pilot-host to exit, and checks that its children are gone.
    /// Returns how long the exit took.
    pub fn stop(mut self) -> Result<Duration, String> {
        let children = self.child_pids();
        let start = Instant::now();
        signal(self.pid(), libc::SIGTERM);
        let mut status = None;
        wait_until(
            "pilot-host exits after SIGTERM",
            Duration::from_secs(30),
            || {
                status = self.child.try_wait().ok().flatten();
                status.is_some()
            },
        )?;
        let took = start.elapsed();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let left: Vec<u32> = children.into_iter().filter(|&p| alive(p)).collect();
        if !left.is_empty() {
            // Ours by pid (pilot-host logged them); pilot-host should have stopped them.
            for &pid in &left {
                signal(pid, libc::SIGKILL);
            }
            return Err(format!("children {left:?} outlived pilot-host"));
        }
        Ok(took)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // Its children die with it (death signal and guard process).
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parses the RFC 3339 UTC timestamp that starts a pilot-host log line into nanoseconds since the
/// epoch: `2026-01-02T03:04:05.123456Z  INFO ...`.
pub fn log_time_ns(line: &str) -> Option<i128> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (parts.next()??, parts.next()??, parts.next()??);
    let digits = frac.len().min(9);
    let nanos = frac[..digits].parse::<i64>().ok()? * 10i64.pow(9 - digits as u32);
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(secs as i128 * 1_000_000_000 + nanos as i128)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_parse_to_epoch_nanos() {
        assert_eq!(
            log_time_ns("1970-01-01T00:00:01.5Z  INFO x"),
            Some(1_500_000_000)
        );
        assert_eq!(
            log_time_ns("2026-11-26T11:26:57.324608Z  INFO a: started, pid 5710"),
            Some(1_795_692_417_324_608_000)
        );
        assert_eq!(log_time_ns("garbage"), None);
    }
}
