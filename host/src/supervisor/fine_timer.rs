//! A sleep with microsecond precision, for the polling that readiness cannot avoid.
//!
//! tokio's timer ticks in milliseconds: a 250 µs pause between two connect attempts really lasts 1 to
//! 2 ms, which added about 1.5 ms to every step of a tcp ready chain (measured). A timerfd, watched by
//! tokio's reactor, wakes within microseconds. If no timerfd can be made, tokio's timer is used.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// A re-armable one-shot timer.
#[derive(Debug)]
pub struct FineTimer {
    fd: Option<AsyncFd<OwnedFd>>,
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
        if arm(fd.get_ref(), pause.max(Duration::from_micros(1))).is_err() {
            return tokio::time::sleep(pause).await;
        }
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return tokio::time::sleep(pause).await;
            };
            let mut expirations = [0u8; 8];
            let read = ready.try_io(|fd| {
                // SAFETY: reads at most 8 bytes into a buffer of 8 bytes we own.
                let n = unsafe { libc::read(fd.as_raw_fd(), expirations.as_mut_ptr().cast(), 8) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            // Woken (or the read failed for good); only a spurious wake-up waits again.
            if read.is_ok() {
                return;
            }
        }
    }
}

fn timerfd() -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: timerfd_create has no memory preconditions.
    let raw = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: an `OwnedFd` keeps its descriptor open and unchanged until it is dropped with the AsyncFd.
    Ok(unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }?)
}

fn arm(fd: &OwnedFd, after: Duration) -> io::Result<()> {
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs() as libc::time_t,
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
    if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
