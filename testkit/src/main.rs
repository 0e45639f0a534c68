//! `pilot-child`: a child process that does what its arguments say, in order, then waits for SIGTERM.
//!
//! Used by pilot-host's integration tests, benchmarks and demo. Every action that waits runs on its own
//! thread, so `--listen-after 50 0 --touch-after 10 f` listens at 50 ms and touches at 10 ms.
//!
//! Actions (MS is milliseconds):
//! - `--listen-after MS PORT`: listen on 127.0.0.1:PORT after MS; answers every request with HTTP 200.
//! - `--print-requests`: a later `--listen-after` prints each request (`NAME got LINE BODY`).
//! - `--touch-after MS PATH`: create the file PATH after MS.
//! - `--pipe-after MS PATH`: write `ready` into the FIFO PATH after MS.
//! - `--own-fifo-after MS PATH`: after MS, do what a service written for Process Pilot does: remove
//!   PATH, make a FIFO of its own there, try a non-blocking write open every 0.1 s until a reader
//!   appears, then write `ready`.
//! - `--exit-after MS CODE`: exit with CODE after MS.
//! - `--ignore-term`: ignore SIGTERM (only SIGKILL stops it).
//! - `--record-stop PATH`: on SIGTERM, append `NAME NANOS` (wall clock) to PATH, then exit 0.
//! - `--linger MS`: on SIGTERM, wait MS before exiting (after `--record-stop`).
//! - `--record-exit PATH`: on SIGTERM, append `NAME NANOS` to PATH just before exiting.
//! - `--name NAME`: the name used by `--record-stop` and in printed lines (default `child`).
//! - `--grandchild PIDFILE`: start a `sleep` grandchild in our process group and write its pid to PIDFILE.
//! - `--pid-file PATH`: write our pid to PATH.
//! - `--pid-file-after MS PATH`: write our pid to PATH after MS (as a daemon does once it is up).
//! - `--append-after MS PATH LINE`: append LINE (and a newline) to PATH after MS.
//! - `--print-env VAR`, `--print-cwd`, `--print-affinity`: print `VAR=value`, `cwd=...`, `affinity=...`.
//! - `--print N`: print N numbered lines on stdout and N on stderr.
//! - `--long-line BYTES`: print one line of BYTES bytes.
//! - `--flood MS`: print `flood K` lines as fast as stdout takes them, for MS.
//! - `--tick MS`: print `NAME tick K` every MS.
//! - `--busy`: keep one core busy.
//! - `--append-start PATH`: append `NAME NANOS` to PATH at start.
//! - `--append-listen PATH`: append `NAME NANOS` to PATH once a later `--listen-after` listens.
//! - `--request unix:PATH|tcp:ADDR TEXT`: connect, send TEXT, print what comes back until the other
//!   side closes (or 10 s pass), then exit 0 (`error: ...` and exit 1 when it cannot connect). Tests
//!   run it as another user to try the control plane as that user would.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

fn append(path: &str, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open append file");
    f.write_all(line.as_bytes()).expect("append");
}

fn after(ms: u64, action: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        action();
    });
}

/// Process Pilot's own way of signalling readiness on a pipe: its own FIFO, opened for writing
/// without blocking (ENXIO until a reader has it open), retried every 0.1 s.
fn own_fifo(path: &str) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path).expect("fifo path");
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {path}"
    );
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(mut f) => {
                f.write_all(b"ready\n").expect("write fifo");
                return;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("open {path}: {e}"),
        }
    }
}

fn serve(listener: TcpListener, print_as: Option<String>) {
    for stream in listener.incoming().flatten() {
        let print_as = print_as.clone();
        std::thread::spawn(move || {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let request = read_request(&mut stream);
            // A readiness probe connects and closes without a request: nothing to print.
            if let Some(name) = print_as.filter(|_| !request.is_empty()) {
                let text = String::from_utf8_lossy(&request);
                let first = text.lines().next().unwrap_or_default();
                let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                println!("{name} got {first} {body}");
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        });
    }
}

/// Reads one request: its headers, then as much body as `content-length` says (64 KiB at most).
fn read_request(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
        let done = match text.split_once("\r\n\r\n") {
            Some((head, body)) => {
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                body.len() >= length
            }
            None => false,
        };
        if n == 0 || done || got.len() > 64 * 1024 {
            return got;
        }
    }
}

/// Sends `text` to `target` (`unix:PATH` or `tcp:ADDR`), prints the answer and exits.
fn request(target: &str, text: &str) -> ! {
    fn exchange(mut s: impl Read + Write, text: &str) -> std::io::Result<Vec<u8>> {
        s.write_all(text.as_bytes())?;
        let mut answer = Vec::new();
        // A server that refuses may close at once: what it said before still counts.
        let _ = s.read_to_end(&mut answer);
        Ok(answer)
    }
    let timeout = Some(Duration::from_secs(10));
    let answer = if let Some(path) = target.strip_prefix("unix:") {
        std::os::unix::net::UnixStream::connect(path).and_then(|s| {
            s.set_read_timeout(timeout)?;
            exchange(s, text)
        })
    } else {
        let addr = target.strip_prefix("tcp:").unwrap_or(target);
        std::net::TcpStream::connect(addr).and_then(|s| {
            s.set_read_timeout(timeout)?;
            exchange(s, text)
        })
    };
    match answer {
        Ok(bytes) => {
            let mut out = std::io::stdout();
            let _ = out.write_all(&bytes);
            let _ = out.flush();
            std::process::exit(0)
        }
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1)
        }
    }
}

/// Blocks SIGTERM in this thread and every thread spawned after, so that `sigwait` alone receives it.
fn block_sigterm() -> libc::sigset_t {
    // SAFETY: plain libc signal-mask calls on a zeroed, initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn main() {
    let set = block_sigterm();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut name = "child".to_string();
    let mut record_stop: Option<String> = None;
    let mut ignore_term = false;
    let mut linger_ms = 0u64;
    let mut record_exit: Option<String> = None;
    let mut listen_record: Option<String> = None;
    let mut print_requests_flag = false;
    let mut i = 0;
    let next = |i: &mut usize| -> String {
        *i += 1;
        args.get(*i)
            .cloned()
            .unwrap_or_else(|| panic!("argument missing after {}", args[*i - 1]))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--name" => name = next(&mut i),
            "--print-requests" => print_requests_flag = true,
            "--listen-after" => {
                let print_requests = print_requests_flag.then(|| name.clone());
                let ms: u64 = next(&mut i).parse().unwrap();
                let port: u16 = next(&mut i).parse().unwrap();
                let record = listen_record.clone().map(|path| (path, name.clone()));
                after(ms, move || {
                    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
                    if let Some((path, name)) = record {
                        append(&path, &format!("{name} {}\n", now_nanos()));
                    }
                    serve(listener, print_requests)
                });
            }
            "--touch-after" => {
                let ms: u64 = next(&mut i).parse().unwrap();
                let path = next(&mut i);
                after(ms, move || {
                    drop(std::fs::File::create(path).expect("touch"))
                });
            }
            "--pipe-after" => {
                let ms: u64 = next(&mut i).parse().unwrap();
                let path = next(&mut i);
                after(ms, move || {
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(path)
                        .expect("open fifo");
                    f.write_all(b"ready\n").expect("write fifo");
                });
            }
            "--own-fifo-after" => {
                let ms: u64 = next(&mut i).parse().unwrap();
                let path = next(&mut i);
                after(ms, move || own_fifo(&path));
            }
            "--linger" => linger_ms = next(&mut i).parse().unwrap(),
            "--record-exit" => record_exit = Some(next(&mut i)),
            "--exit-after" => {
                let ms: u64 = next(&mut i).parse().unwrap();
                let code: i32 = next(&mut i).parse().unwrap();
                after(ms, move || std::process::exit(code));
            }
            "--ignore-term" => ignore_term = true,
            "--record-stop" => record_stop = Some(next(&mut i)),
            "--grandchild" => {
                let pidfile = next(&mut i);
                let child = std::process::Command::new("sleep")
                    .arg("1000")
                    .spawn()
                    .expect("spawn grandchild");
                std::fs::write(pidfile, child.id().to_string()).expect("write pidfile");
                std::mem::forget(child);
            }
            "--pid-file" => {
                std::fs::write(next(&mut i), std::process::id().to_string()).expect("pid file")
            }
            "--append-listen" => listen_record = Some(next(&mut i)),
            "--pid-file-after" => {
                let ms: u64 = next(&mut i).parse().unwrap();
                let path = next(&mut i);
                after(ms, move || {
                    std::fs::write(path, format!("{}\n", std::process::id())).expect("pid file")
                });
            }
            "--append-after" => {
                let ms: u64 = next(&mut i).parse().unwrap();
                let path = next(&mut i);
                let line = next(&mut i);
                after(ms, move || append(&path, &format!("{line}\n")));
            }
            "--append-start" => append(&next(&mut i), &format!("{name} {}\n", now_nanos())),
            "--print-env" => {
                let var = next(&mut i);
                println!(
                    "{var}={}",
                    std::env::var(&var).unwrap_or_else(|_| "<unset>".into())
                );
            }
            "--print-cwd" => println!("cwd={}", std::env::current_dir().unwrap().display()),
            "--print-affinity" => {
                let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                let list = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .unwrap_or("?");
                println!("affinity={}", list.trim());
            }
            "--print" => {
                let n: usize = next(&mut i).parse().unwrap();
                for k in 0..n {
                    println!("out {k}");
                    eprintln!("err {k}");
                }
            }
            "--flood" => {
                let ms: u64 = next(&mut i).parse().unwrap();
                std::thread::spawn(move || {
                    let end = std::time::Instant::now() + Duration::from_millis(ms);
                    let mut out = std::io::stdout().lock();
                    let mut k = 0u64;
                    while std::time::Instant::now() < end {
                        for _ in 0..100 {
                            let _ = writeln!(out, "flood {k}");
                            k += 1;
                        }
                    }
                    let _ = out.flush();
                });
            }
            "--tick" => {
                let ms: u64 = next(&mut i).parse().unwrap();
                let name = name.clone();
                std::thread::spawn(move || {
                    for k in 1.. {
                        std::thread::sleep(Duration::from_millis(ms));
                        println!("{name} tick {k}");
                    }
                });
            }
            "--busy" => {
                std::thread::spawn(|| {
                    let mut x: u64 = 1;
                    loop {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                });
            }
            "--request" => {
                let target = next(&mut i);
                let text = next(&mut i);
                request(&target, &text);
            }
            "--long-line" => {
                let n: usize = next(&mut i).parse().unwrap();
                println!("{}", "x".repeat(n));
            }
            other => panic!("unknown argument {other}"),
        }
        i += 1;
    }
    let _ = std::io::stdout().flush();
    if ignore_term {
        // SAFETY: ignoring a signal has no preconditions.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        loop {
            std::thread::park();
        }
    }
    let mut sig = 0;
    // SAFETY: `set` holds SIGTERM, blocked in every thread.
    unsafe { libc::sigwait(&set, &mut sig) };
    if let Some(path) = &record_stop {
        append(path, &format!("{name} {}\n", now_nanos()));
    }
    std::thread::sleep(Duration::from_millis(linger_ms));
    if let Some(path) = &record_exit {
        append(path, &format!("{name} {}\n", now_nanos()));
    }
    std::process::exit(0);
}
