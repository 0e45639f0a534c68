//! Backing off an address that keeps sending wrong tokens: after [`FREE`] wrong tokens, each further
//! one closes the address for twice as long as the last (1 s, 2 s, 4 s ... 5 min), during which its
//! requests are answered 429 without their token being looked at. A right token resets the count, and
//! an address forgets its failures after 15 min without one.
//!
//! Addresses are IPv4 addresses or IPv6 /64 networks (what one host is usually given). Only the
//! decisions live here; the guard ([`super::guard`]) asks and reports.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Wrong tokens an address may send before it has to wait.
pub const FREE: u32 = 10;
/// The first wait.
const FIRST: Duration = Duration::from_secs(1);
/// The longest wait.
const LONGEST: Duration = Duration::from_secs(300);
/// How long an address's failures are remembered after its last one.
const MEMORY: Duration = Duration::from_secs(900);
/// The most addresses remembered; past it, those with the fewest failures are forgotten first.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    until: Instant,
}

/// The failures of every address that sent a wrong token lately.
#[derive(Debug, Default)]
pub struct Throttle {
    entries: HashMap<IpAddr, Entry>,
}

/// Returns the address `ip` is counted under: IPv4 itself, IPv6 its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

impl Throttle {
    /// Returns how long `ip` must still wait, if it must.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let e = self.entries.get(&key(ip))?;
        (e.until > now).then(|| e.until - now)
    }

    /// Notes a wrong token from `ip`; returns the wait it now has to sit out, if any.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.entries.len() >= MAX_ADDRESSES {
            self.forget(now);
        }
        let e = self.entries.entry(key(ip)).or_insert(Entry {
            failures: 0,
            last: now,
            until: now,
        });
        if now.duration_since(e.last) > MEMORY {
            e.failures = 0;
        }
        e.failures += 1;
        e.last = now;
        if e.failures < FREE {
            return None;
        }
        let wait = (FIRST * 2u32.pow((e.failures - FREE).min(16))).min(LONGEST);
        e.until = now + wait;
        Some(wait)
    }

    /// Notes a right token from `ip`: its failures are forgotten.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.entries.remove(&key(ip));
    }

    /// Forgets addresses not heard of for [`MEMORY`], then, if still too many, half of them, those
    /// with the fewest failures first.
    fn forget(&mut self, now: Instant) {
        self.entries
            .retain(|_, e| now.duration_since(e.last) <= MEMORY || e.until > now);
        if self.entries.len() >= MAX_ADDRESSES {
            let mut counts: Vec<u32> = self.entries.values().map(|e| e.failures).collect();
            counts.sort_unstable();
            let median = counts[counts.len() / 2];
            self.entries.retain(|_, e| e.failures > median);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_start_after_the_free_failures_and_double_up_to_the_cap() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let mut t = Throttle::default();
        let mut now = Instant::now();
        for _ in 1..FREE {
            t.failed(ip, now);
            assert_eq!(t.blocked(ip, now), None);
        }
        let mut waits = Vec::new();
        for _ in 0..12 {
            t.failed(ip, now);
            let wait = t.blocked(ip, now).expect("blocked");
            assert_eq!(t.blocked(other, now), None, "per address");
            waits.push(wait.as_secs());
            now += wait;
            assert_eq!(t.blocked(ip, now), None, "open again once waited");
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        t.succeeded(ip);
        t.failed(ip, now);
        assert_eq!(t.blocked(ip, now), None, "a right token resets the count");
    }

    #[test]
    fn failures_are_forgotten_and_ipv6_counts_by_network() {
        let mut t = Throttle::default();
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        for _ in 0..FREE {
            t.failed(a, now);
        }
        assert!(t.blocked(b, now).is_some(), "the same /64");
        assert!(t.blocked("2001:db8:1:3::1".parse().unwrap(), now).is_none());
        let later = now + MEMORY + Duration::from_secs(1);
        t.failed(a, later);
        assert!(t.blocked(a, later).is_none(), "an old count starts over");
    }
}
