//! A sleep with microsecond precision, for the polling that readiness cannot avoid.
//!
//! tokio's timer ticks in milliseconds: a 250 µs pause between two connect attempts really lasts 1 to
//! 2 ms, which added about 1.5 ms to every step of a tcp ready chain (measured). A timerfd, watched by
//! tokio's reactor, wakes within microseconds. If no timerfd can be made, tokio's timer is used.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd, RawFd};
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;

/// A re-armable one-shot timer.
#[derive(Debug)]
pub struct FineTimer {
    fd: Option<AsyncFd<Timer>>,
}

/// nix's timerfd, with the raw descriptor tokio's reactor registers.
#[derive(Debug)]
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl FineTimer {
    /// Makes a timer (falling back to tokio's timer if the timerfd cannot be made).
    pub fn new() -> FineTimer {
        FineTimer {
            fd: timerfd()
                .map_err(|e| tracing::debug!("no timerfd ({e}); pauses are rounded to ms"))
                .ok(),
        }
    }

    /// Sleeps for `pause` (at least 1 µs).
    pub async fn sleep(&self, pause: Duration) {
        let Some(fd) = &self.fd else {
            return tokio::time::sleep(pause).await;
        };
        // A one-shot expiration of zero would disarm the timer.
        let after = TimeSpec::from_duration(pause.max(Duration::from_micros(1)));
        if fd
            .get_ref()
            .0
            .set(Expiration::OneShot(after), TimerSetTimeFlags::empty())
            .is_err()
        {
            return tokio::time::sleep(pause).await;
        }
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return tokio::time::sleep(pause).await;
            };
            let mut expirations = [0u8; 8];
            let read = ready.try_io(|fd| {
                nix::unistd::read(fd.get_ref().0.as_fd(), &mut expirations).map_err(io::Error::from)
            });
            // Woken (or the read failed for good); only a spurious wake-up waits again.
            if read.is_ok() {
                return;
            }
        }
    }
}

fn timerfd() -> io::Result<AsyncFd<Timer>> {
    let fd = TimerFd::new(
        ClockId::CLOCK_MONOTONIC,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )?;
    // SAFETY: `Timer` owns its descriptor, which stays open and unchanged until the AsyncFd drops it.
    Ok(unsafe { AsyncFd::register_with_interest(Timer(fd), tokio::io::Interest::READABLE) }?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sub_millisecond_pause_lasts_about_that_long() {
        let timer = FineTimer::new();
        assert!(timer.fd.is_some(), "a timerfd can be made on Linux");
        let mut fastest = Duration::MAX;
        for _ in 0..20 {
            let start = std::time::Instant::now();
            timer.sleep(Duration::from_micros(200)).await;
            let took = start.elapsed();
            assert!(took >= Duration::from_micros(200), "woke early: {took:?}");
            fastest = fastest.min(took);
        }
        // tokio's timer would take at least a millisecond every time.
        assert!(
            fastest < Duration::from_micros(900),
            "fastest pause {fastest:?}"
        );
    }
}
