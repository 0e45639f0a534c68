//! Helpers of the security tests, which try each attack for real: requests sent as another user (a
//! `pilot-child --request` run as `nobody`), raw HTTP with the headers an attacker chooses, and files
//! planted under a name a command will use, at the moment it starts (from its `pre_exec`, where its
//! pid is known).

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::pilot_child;

/// The uid of `nobody`, the other user of these tests.
pub const NOBODY: u32 = 65534;

/// Returns whether the tests run as root (needed to act as another user); says so when not.
pub fn root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("{test}: skipped, trying this as another user needs root");
    }
    root
}

/// Sends `text` to `target` (`unix:PATH` or `tcp:ADDR`) as the user `uid`; returns the answer.
pub fn request_as(uid: u32, target: &str, text: &str) -> String {
    let out = Command::new(pilot_child())
        .args(["--request", target, text])
        .uid(uid)
        .gid(uid)
        .output()
        .expect("pilot-child runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Returns a request with `headers` (each `Name: value`) and no body, closing the connection after.
pub fn get(path: &str, headers: &[&str]) -> String {
    let mut text = format!("GET {path} HTTP/1.1\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("Connection: close\r\n\r\n");
    text
}

/// An HTTP answer: status, header lines (lowercase names) and body.
#[derive(Debug)]
pub struct Answer {
    /// The status code (0 when the connection closed without one).
    pub status: u16,
    /// `name: value` lines, names lowercase.
    pub headers: Vec<String>,
    /// The body.
    pub body: String,
}

impl Answer {
    /// Parses what a server sent.
    pub fn parse(raw: &str) -> Answer {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .map(|l| match l.split_once(':') {
                Some((k, v)) => format!("{}: {}", k.to_ascii_lowercase(), v.trim()),
                None => l.to_string(),
            })
            .collect();
        Answer {
            status,
            headers,
            body: body.to_string(),
        }
    }

    /// Returns the value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}: ");
        self.headers
            .iter()
            .find_map(|h| h.strip_prefix(prefix.as_str()))
    }
}

/// Sends raw `text` over TCP to `addr` and reads the answer to its end.
pub fn raw_tcp(addr: &str, text: &str) -> Answer {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(text.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    Answer::parse(&String::from_utf8_lossy(&answer))
}

/// What to plant when a command starts, at `PREFIX<pid>SUFFIX`.
pub enum Plant {
    /// A folder.
    Folder(PathBuf, &'static str),
    /// A file with this content.
    File(PathBuf, &'static str, &'static [u8]),
    /// A symbolic link to `target`.
    Link(PathBuf, &'static str, PathBuf),
}

/// A NUL-terminated path `prefix` `pid` `suffix`, built without allocating (in a forked child).
struct PidPath {
    buf: [u8; 4096],
    prefix: usize,
    suffix: Vec<u8>,
}

impl PidPath {
    fn new(prefix: &Path, suffix: &str) -> PidPath {
        let p = prefix.as_os_str().as_encoded_bytes();
        let mut buf = [0u8; 4096];
        buf[..p.len()].copy_from_slice(p);
        PidPath {
            buf,
            prefix: p.len(),
            suffix: suffix.as_bytes().to_vec(),
        }
    }

    /// Writes the pid and the suffix after the prefix; returns the C string.
    fn fill(&mut self, pid: i32) -> *const libc::c_char {
        let mut digits = [0u8; 12];
        let mut n = pid as u32;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            n /= 10;
            len += 1;
            if n == 0 {
                break;
            }
        }
        let mut at = self.prefix;
        for d in digits[..len].iter().rev() {
            self.buf[at] = *d;
            at += 1;
        }
        self.buf[at..at + self.suffix.len()].copy_from_slice(&self.suffix);
        self.buf[at + self.suffix.len()] = 0;
        self.buf.as_ptr().cast()
    }
}

/// Makes `cmd` plant `plants`, in order, as it starts (between fork and exec, knowing its pid), as an
/// attacker who watches for that pid would.
pub fn plant_at_start(cmd: &mut Command, plants: Vec<Plant>) {
    let mut prepared: Vec<(PidPath, u8, std::ffi::CString, &'static [u8])> = plants
        .into_iter()
        .map(|p| match p {
            Plant::Folder(prefix, suffix) => (
                PidPath::new(&prefix, suffix),
                b'd',
                Default::default(),
                &b""[..],
            ),
            Plant::File(prefix, suffix, content) => (
                PidPath::new(&prefix, suffix),
                b'f',
                Default::default(),
                content,
            ),
            Plant::Link(prefix, suffix, target) => (
                PidPath::new(&prefix, suffix),
                b'l',
                std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).unwrap(),
                &b""[..],
            ),
        })
        .collect();
    // SAFETY: the closure makes only system calls (getpid, mkdir, open, write, close, symlink) on
    // memory prepared before the fork; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            let pid = libc::getpid();
            for (path, kind, target, content) in &mut prepared {
                let at = path.fill(pid);
                match kind {
                    b'd' => {
                        libc::mkdir(at, 0o755);
                    }
                    b'f' => {
                        let fd =
                            libc::open(at, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o644);
                        if fd >= 0 {
                            libc::write(fd, content.as_ptr().cast(), content.len());
                            libc::close(fd);
                        }
                    }
                    _ => {
                        libc::symlink(target.as_ptr(), at);
                    }
                }
            }
            Ok(())
        });
    }
}
