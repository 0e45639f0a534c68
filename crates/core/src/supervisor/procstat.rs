//! CPU time and resident memory of the children, and the `/proc/PID/stat` line the rest of the
//! supervisor reads (state, group, start time).
//!
//! The contract: a [`Sampler`] reads each pid it is given once per call; CPU % is the CPU time used
//! between two readings of the same process over the time between them (the first reads 0); at most
//! `keep_open()` files stay open. Why each reading is made the way it is, with the measurements:
//! `docs/design/sampling.md`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::time::{Duration, Instant};

use nix::time::ClockId;
use nix::unistd::Pid;

/// How long a resident set read from an idle process is trusted: reclaim can shrink it meanwhile.
pub const RSS_REFRESH: Duration = Duration::from_secs(30);

/// How many `/proc/PID/statm` files are kept open at most: a quarter of the open-file limit, so a
/// thousand children are read with one `pread` each and the sampler never takes more than its share.
fn keep_open() -> usize {
    static KEEP: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *KEEP.get_or_init(|| {
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(256, |(soft, _)| (soft / 4).clamp(64, 16_384) as usize)
    })
}

/// The fields of `/proc/PID/stat` the supervisor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatLine {
    /// The state letter (`R`, `S`, `Z` for a zombie, ...).
    pub state: u8,
    /// The process group.
    pub pgrp: u64,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// When the process started, in clock ticks after boot (tells a reused pid apart).
    pub start_time: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

/// Reads and parses `/proc/PID/stat` of `pid`.
pub fn read(pid: &str) -> Option<StatLine> {
    parse(&std::fs::read(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses a `/proc/PID/stat` line; the command name may hold spaces and parentheses.
pub fn parse(line: &[u8]) -> Option<StatLine> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&line[close + 1..]).ok()?;
    // After the name: state is field 3 of proc(5), so field N is at index N - 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().take(22).collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(StatLine {
        state: *fields.first()?.as_bytes().first()?,
        pgrp: field(5)?,
        cpu_ticks: field(14)? + field(15)?,
        start_time: field(22)?,
        rss_pages: field(24)?,
    })
}

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// CPU % of one core since the previous reading (0 at the first).
    pub cpu_percent: f64,
    /// Resident set, in bytes.
    pub rss_bytes: u64,
    /// CPU time used since the process started, in seconds.
    pub cpu_seconds: f64,
    /// Whether any of the above differs from the previous reading (true at the first): an idle
    /// process reads the same each time, and nothing needs to hear of it.
    pub changed: bool,
}

/// One process being followed.
#[derive(Debug)]
struct Followed {
    /// Its CPU-time clock; `None` where the kernel refuses one (then `/proc/PID/stat` is read).
    clock: Option<ClockId>,
    /// Its `/proc/PID/statm`, while fewer than `keep_open()` are open.
    statm: Option<File>,
    /// CPU time in nanoseconds at the last reading, and when.
    last: Option<(u64, Instant)>,
    /// The resident set last read, in bytes, and when.
    rss: Option<(u64, Instant)>,
    /// Whether it ran between the two previous readings (its CPU % then was not 0).
    ran: bool,
}

/// Reads CPU % and RSS of a changing set of processes.
#[derive(Debug)]
pub struct Sampler {
    followed: HashMap<u32, Followed>,
    /// How many `statm` files are open (counted at each sample, raised as files are kept).
    open: usize,
    ticks_per_sec: u64,
    page_size: u64,
}

impl Default for Sampler {
    fn default() -> Self {
        use nix::unistd::{sysconf, SysconfVar};
        let hz = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
        let page = sysconf(SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096);
        Sampler {
            followed: HashMap::new(),
            open: 0,
            ticks_per_sec: hz.max(1) as u64,
            page_size: page.max(1) as u64,
        }
    }
}

impl Sampler {
    /// Returns a reading of each of `pids` (`None` for a process that is gone), and forgets
    /// processes not in `pids`.
    pub fn sample(&mut self, pids: &[u32]) -> Vec<Option<Reading>> {
        let wanted: HashSet<u32> = pids.iter().copied().collect();
        self.followed.retain(|pid, _| wanted.contains(pid));
        self.open = self.followed.values().filter(|f| f.statm.is_some()).count();
        pids.iter()
            .map(|&pid| {
                let reading = self.read(pid, Instant::now());
                if reading.is_none() {
                    self.followed.remove(&pid);
                }
                reading
            })
            .collect()
    }

    fn read(&mut self, pid: u32, now: Instant) -> Option<Reading> {
        let followed = self.followed.entry(pid).or_insert_with(|| Followed {
            clock: nix::time::clock_getcpuclockid(Pid::from_raw(pid as i32)).ok(),
            statm: None,
            last: None,
            rss: None,
            ran: false,
        });
        let (cpu_ns, stat_rss) = match followed.clock {
            Some(clock) => {
                let t = nix::time::clock_gettime(clock).ok()?;
                (t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64, None)
            }
            None => {
                let line = read(&pid.to_string())?;
                let ns = line.cpu_ticks * (1_000_000_000 / self.ticks_per_sec);
                (ns, Some(line.rss_pages * self.page_size))
            }
        };
        let ran = followed.last.is_none_or(|(ns, _)| ns != cpu_ns);
        let stale = followed
            .rss
            .is_none_or(|(_, at)| now.duration_since(at) >= RSS_REFRESH);
        let rss = match (stat_rss, followed.rss) {
            (Some(bytes), _) => bytes,
            (None, Some((bytes, _))) if !ran && !stale => bytes,
            (None, _) => {
                let had = followed.statm.is_some();
                let pages = read_statm(pid, &mut followed.statm, self.open < keep_open())?;
                if !had && followed.statm.is_some() {
                    self.open += 1;
                }
                pages * self.page_size
            }
        };
        let changed = ran || followed.ran || followed.rss.is_none_or(|(old, _)| old != rss);
        if stat_rss.is_some() || ran || stale {
            followed.rss = Some((rss, now));
        }
        let cpu = match followed.last {
            Some((ns, at)) if now > at => {
                let used = cpu_ns.saturating_sub(ns) as f64 / 1e9;
                used / now.duration_since(at).as_secs_f64() * 100.0
            }
            _ => 0.0,
        };
        // The first reading has nothing to compare with: it counts as a change, not as a run.
        followed.ran = ran && followed.last.is_some();
        followed.last = Some((cpu_ns, now));
        Some(Reading {
            cpu_percent: cpu,
            rss_bytes: rss,
            cpu_seconds: cpu_ns as f64 / 1e9,
            changed,
        })
    }
}

/// The resident pages of `pid` (the second field of `/proc/PID/statm`), through `kept` when it is
/// open (and keeping the file opened for it when `keep`).
fn read_statm(pid: u32, kept: &mut Option<File>, keep: bool) -> Option<u64> {
    let mut buf = [0u8; 128];
    let len = match kept.as_ref().map(|file| file.read_at(&mut buf, 0)) {
        Some(Ok(len)) => len,
        // The process is gone (ESRCH), or the file was never kept.
        Some(Err(_)) => return None,
        None => {
            let file = File::open(format!("/proc/{pid}/statm")).ok()?;
            let len = file.read_at(&mut buf, 0).ok()?;
            if keep {
                *kept = Some(file);
            }
            len
        }
    };
    std::str::from_utf8(&buf[..len])
        .ok()?
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_an_awkward_name_parses() {
        let line = b"4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 120 0 0 0 7 5 0 0 20 0 3 0 98765 12345678 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse(line),
            Some(StatLine {
                state: b'S',
                pgrp: 4242,
                cpu_ticks: 12,
                start_time: 98765,
                rss_pages: 321
            })
        );
        assert_eq!(parse(b"4242 (truncated) S 1 2"), None);
    }

    /// Keeps this thread busy until it used `seconds` of CPU, however loaded the machine is.
    fn burn(seconds: f64) {
        let used = || {
            let t = nix::time::clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
            t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9
        };
        let start = used();
        let mut x = 1u64;
        while used() - start < seconds {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }

    #[test]
    fn our_own_process_is_read_and_a_second_sample_measures_cpu() {
        let me = std::process::id();
        let mut sampler = Sampler::default();
        let first = sampler.sample(&[me])[0].expect("this process exists");
        let (cpu, rss) = (first.cpu_percent, first.rss_bytes);
        assert_eq!(cpu, 0.0, "the first sample has nothing to compare with");
        assert!(rss > 0);
        burn(0.1);
        let second = sampler.sample(&[me])[0].expect("this process exists");
        let (cpu, seconds) = (second.cpu_percent, second.cpu_seconds);
        assert!(cpu > 0.0, "busy for 100 ms, cpu {cpu}");
        assert!(seconds >= 0.05, "busy for 100 ms, {seconds} CPU seconds");
        assert_eq!(sampler.sample(&[u32::MAX]), vec![None]);
        assert!(
            sampler.followed.is_empty(),
            "processes no longer asked for are forgotten"
        );
    }

    #[test]
    fn cpu_time_sums_every_thread_and_a_process_that_ran_has_its_memory_read_again() {
        let me = std::process::id();
        let mut sampler = Sampler::default();
        let before = sampler.sample(&[me])[0].expect("this process exists");
        let (rss0, secs0) = (before.rss_bytes, before.cpu_seconds);
        // Two threads busy, and 64 MiB touched: a process that ran may have grown.
        let grown: Vec<u8> = std::thread::scope(|s| {
            s.spawn(|| burn(0.15));
            s.spawn(|| burn(0.15));
            vec![1u8; 64 << 20]
        });
        let after = sampler.sample(&[me])[0].expect("this process exists");
        let (rss1, secs1) = (after.rss_bytes, after.cpu_seconds);
        assert!(after.changed);
        assert!(
            secs1 - secs0 >= 0.3,
            "two threads busy 150 ms each: {} CPU seconds",
            secs1 - secs0
        );
        assert!(
            rss1 >= rss0 + (32 << 20),
            "64 MiB touched: RSS {rss0} -> {rss1}"
        );
        assert_eq!(std::hint::black_box(&grown)[grown.len() - 1], 1);
    }

    #[test]
    fn an_idle_process_reads_the_same_and_says_so() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .expect("sleep starts");
        let pid = child.id();
        let mut sampler = Sampler::default();
        let first = sampler.sample(&[pid])[0].expect("the child exists");
        assert!(first.changed, "a first reading is news");
        // `sleep` ran between its spawn and its first nap: wait until two readings agree.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = first;
        let idle = loop {
            std::thread::sleep(Duration::from_millis(20));
            let r = sampler.sample(&[pid])[0].expect("the child exists");
            if !r.changed {
                break r;
            }
            assert!(Instant::now() < deadline, "sleep never went idle: {r:?}");
            last = r;
        };
        assert_eq!(idle.cpu_percent, 0.0);
        assert_eq!(idle.rss_bytes, last.rss_bytes);
        assert_eq!(idle.cpu_seconds, last.cpu_seconds);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(sampler.sample(&[pid]), vec![None], "a reaped child is gone");
    }
}
