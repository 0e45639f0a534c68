//! CPU time and resident memory of the children, read from `/proc/PID/stat`: one `pread` per process
//! per sample, through a file kept open while the process lives.
//!
//! sysinfo reads three files per process and lists its threads on every refresh (about 17 system calls
//! per process, measured); that alone cost pilot-host about 0.4 % of a core over 100 idle children at
//! one sample a second. `/proc/PID/stat` has everything needed: utime, stime, start time and RSS.
//!
//! CPU % is the CPU time used between two samples of the same process over the time between them, so
//! the first sample of a process reads 0 (as any delta-based reading must). At most `keep_open()` files
//! stay open, so the sampler never takes more than its share of the descriptors; past that, a file is
//! opened and closed at each sample.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::time::Instant;

/// How many `/proc/PID/stat` files are kept open at most: a quarter of the open-file limit, so a
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

/// One process being followed.
#[derive(Debug)]
struct Followed {
    file: Option<File>,
    start_time: u64,
    last: Option<(u64, Instant)>,
}

/// Reads CPU % and RSS of a changing set of processes.
#[derive(Debug)]
pub struct Sampler {
    followed: HashMap<u32, Followed>,
    ticks_per_sec: f64,
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
            ticks_per_sec: hz.max(1) as f64,
            page_size: page.max(1) as u64,
        }
    }
}

impl Sampler {
    /// Returns CPU % (of one core, since the previous sample), RSS in bytes and CPU seconds used of
    /// each of `pids` (`None` for a process that is gone), and forgets processes not in `pids`.
    pub fn sample(&mut self, pids: &[u32]) -> Vec<Option<(f64, u64, f64)>> {
        let wanted: HashSet<u32> = pids.iter().copied().collect();
        self.followed.retain(|pid, _| wanted.contains(pid));
        pids.iter()
            .map(|&pid| self.read(pid, Instant::now()))
            .collect()
    }

    fn read(&mut self, pid: u32, now: Instant) -> Option<(f64, u64, f64)> {
        let mut buf = [0u8; 1024];
        let kept = self
            .followed
            .get(&pid)
            .and_then(|f| f.file.as_ref())
            .and_then(|file| file.read_at(&mut buf, 0).ok());
        let len = match kept {
            Some(len) => len,
            None => {
                // Not kept open, or the file is of an earlier process with this pid (ESRCH).
                let opened = File::open(format!("/proc/{pid}/stat"))
                    .and_then(|file| Ok((file.read_at(&mut buf, 0)?, file)));
                let Ok((len, file)) = opened else {
                    self.followed.remove(&pid);
                    return None;
                };
                let open = self.followed.values().filter(|f| f.file.is_some()).count();
                let followed = self.followed.entry(pid).or_insert(Followed {
                    file: None,
                    start_time: 0,
                    last: None,
                });
                if followed.file.is_some() || open < keep_open() {
                    followed.file = Some(file);
                }
                len
            }
        };
        let line = parse(&buf[..len])?;
        let followed = self.followed.get_mut(&pid)?;
        if followed.start_time != line.start_time {
            followed.start_time = line.start_time;
            followed.last = None;
        }
        let cpu = match followed.last {
            Some((ticks, at)) if now > at => {
                let used = line.cpu_ticks.saturating_sub(ticks) as f64 / self.ticks_per_sec;
                used / now.duration_since(at).as_secs_f64() * 100.0
            }
            _ => 0.0,
        };
        followed.last = Some((line.cpu_ticks, now));
        let seconds = line.cpu_ticks as f64 / self.ticks_per_sec;
        Some((cpu, line.rss_pages * self.page_size, seconds))
    }
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

    #[test]
    fn our_own_process_is_read_and_a_second_sample_measures_cpu() {
        let me = std::process::id();
        let mut sampler = Sampler::default();
        let (cpu, rss, _) = sampler.sample(&[me])[0].expect("this process exists");
        assert_eq!(cpu, 0.0, "the first sample has nothing to compare with");
        assert!(rss > 0);
        let start = Instant::now();
        let mut x = 1u64;
        while start.elapsed().as_millis() < 100 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let (cpu, _, seconds) = sampler.sample(&[me])[0].expect("this process exists");
        assert!(cpu > 0.0, "busy for 100 ms, cpu {cpu}");
        assert!(seconds >= 0.05, "busy for 100 ms, {seconds} CPU seconds");
        assert_eq!(sampler.sample(&[u32::MAX]), vec![None]);
        assert!(
            sampler.followed.is_empty(),
            "processes no longer asked for are forgotten"
        );
    }
}
