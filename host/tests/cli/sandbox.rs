//! The sandbox seen from outside, through the real `pilot-host run`: grants open exactly what they
//! name, plugin output reaches the log stripped of escapes and rate-limited, and the compile cache
//! refuses files others could have written.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::harness::{self, *};

fn probe_dir(dir: &Scratch) -> std::path::PathBuf {
    plugin_dir(dir, &[plugin("hostile", "probe")])
}

/// Runs `yaml` with the probe plugin until each of `names` failed its readiness; returns the log.
fn run_probe(
    dir: &Scratch,
    yaml: &str,
    env: &[(&str, &std::ffi::OsStr)],
    names: &[&str],
) -> String {
    let plugins = probe_dir(dir);
    let m = harness::manifest(dir, yaml);
    let pilot = Pilot::start_env(
        &[
            "run".as_ref(),
            m.as_os_str(),
            "--plugins".as_ref(),
            plugins.as_os_str(),
        ],
        env,
    );
    for name in names {
        // The space keeps `write` from matching `overwrite`'s line.
        pilot.wait_log(&format!(" {name}: not ready after 0.3 s"), SOON);
    }
    pilot.stderr_text()
}

/// A process whose readiness is `strategy` of the probe with `params`, failing after 0.3 s.
fn probing(name: &str, strategy: &str, params: &str) -> String {
    format!("  - {{ name: {name}, path: CHILD, ready_strategy: {strategy}, ready_timeout_sec: 0.3, ready_params: {params} }}\n")
}

#[track_caller]
fn says(log: &str, name: &str, want: &str) {
    let line = log
        .lines()
        .find(|l| l.contains(&format!(" {name}: not ready after 0.3 s")))
        .unwrap_or_else(|| panic!("no readiness failure of `{name}`:\n{log}"));
    assert!(line.contains(want), "`{name}`: want `{want}` in:\n{line}");
}

#[test]
fn allow_tcp_opens_only_the_named_destination() {
    let dir = Scratch::new("grant-tcp");
    let (granted, other) = (free_port(), free_port());
    let mut yaml = format!(
        "processes:\n  - {{ name: l1, path: CHILD, args: [--listen-after, 0, {granted}], ready_strategy: tcp, ready_params: {{ port: {granted} }} }}\n  - {{ name: l2, path: CHILD, args: [--listen-after, 0, {other}], ready_strategy: tcp, ready_params: {{ port: {other} }} }}\n"
    );
    yaml += &probing(
        "yes",
        "connect",
        &format!("{{ addr: \"127.0.0.1:{granted}\" }}"),
    );
    yaml += &probing(
        "no",
        "connect",
        &format!("{{ addr: \"127.0.0.1:{other}\" }}"),
    );
    yaml = yaml.replace(
        "ready_timeout_sec: 0.3,",
        "ready_timeout_sec: 0.3, dependencies: [l1, l2],",
    );
    yaml += &format!("plugins:\n  probe: {{ allow_tcp: [\"127.0.0.1:{granted}\"] }}\n");
    let log = run_probe(&dir, &yaml, &[], &["yes", "no"]);
    says(
        &log,
        "yes",
        &format!("says: connected to 127.0.0.1:{granted}"),
    );
    says(&log, "no", &format!("cannot connect to 127.0.0.1:{other}"));
}

#[test]
fn allow_read_lets_a_folder_be_read_not_written_and_nothing_else() {
    let dir = Scratch::new("grant-read");
    dir.write("ro/file", "four");
    dir.write("other/file", "secret");
    let mut yaml = String::from("processes:\n");
    yaml += &probing("read", "read", "{ path: DIR/ro/file }");
    yaml += &probing("write", "write", "{ path: DIR/ro/new }");
    yaml += &probing("overwrite", "write", "{ path: DIR/ro/file }");
    yaml += &probing("elsewhere", "read", "{ path: DIR/other/file }");
    yaml += &probing("list", "list", "{ path: DIR/ro }");
    yaml += "plugins:\n  probe: { allow_read: [DIR/ro] }\n";
    let log = run_probe(
        &dir,
        &yaml,
        &[],
        &["read", "write", "overwrite", "elsewhere", "list"],
    );
    let d = dir.path().display();
    says(&log, "read", &format!("says: read `{d}/ro/file`: 4 bytes"));
    says(&log, "write", &format!("cannot write `{d}/ro/new`"));
    says(&log, "overwrite", &format!("cannot write `{d}/ro/file`"));
    says(&log, "elsewhere", &format!("cannot read `{d}/other/file`"));
    says(&log, "list", &format!("says: listed `{d}/ro`: 1 entries"));
    assert!(!dir.join("ro/new").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("ro/file")).unwrap(),
        "four"
    );
}

#[test]
fn allow_env_exposes_only_the_named_variables() {
    let dir = Scratch::new("grant-env");
    let mut yaml = String::from("processes:\n");
    yaml += &probing("granted", "env", "{ name: PROBE_GRANTED }");
    yaml += &probing("secret", "env", "{ name: PROBE_SECRET }");
    yaml += &probing("home", "env", "{ name: HOME }");
    yaml += "plugins:\n  probe: { allow_env: [PROBE_GRANTED] }\n";
    let log = run_probe(
        &dir,
        &yaml,
        &[
            ("PROBE_GRANTED", "yes".as_ref()),
            ("PROBE_SECRET", "hunter2".as_ref()),
        ],
        &["granted", "secret", "home"],
    );
    says(&log, "granted", "says: PROBE_GRANTED=yes");
    says(&log, "secret", "says: PROBE_SECRET is not set");
    says(&log, "home", "says: HOME is not set");
    assert!(!log.contains("hunter2"), "{log}");
}

#[test]
fn escapes_a_plugin_writes_never_reach_the_terminal() {
    let dir = Scratch::new("escape-log");
    let mut pilot = Pilot::run_with_plugins(
        &harness::manifest(
            &dir,
            "processes:\n  - { name: a, path: CHILD, args: [--exit-after, 100, 0], ready_strategy: escape-log, shutdown_strategy: do_not_restart }\n",
        ),
        &probe_dir(&dir),
    );
    pilot.wait_exit(SOON);
    let log = pilot.stderr_text();
    for want in [
        "plugin `probe`: probe: red  bell done",
        "plugin `probe`: probe: stdout cleared",
        "plugin `probe`: probe: stderr bold",
    ] {
        assert!(log.contains(want), "want `{want}`:\n{}", log.escape_debug());
    }
    let all = log + &pilot.stdout_text();
    assert!(
        !all.contains('\x1b') && !all.contains('\x07'),
        "{}",
        all.escape_debug()
    );
}

#[test]
fn escapes_in_a_stat_handler_s_actions_never_reach_the_terminal() {
    let dir = Scratch::new("escape-actions");
    let pilot = Pilot::run_with_plugins(
        &harness::manifest(
            &dir,
            "stats_interval_sec: 0.1\nprocesses:\n  - { name: a, path: CHILD, stat_handlers: [escape-actions] }\n",
        ),
        &probe_dir(&dir),
    );
    let line = pilot.wait_log("asked to act on", SOON);
    assert!(
        line.contains("`\\u{1b}[31mevil`"),
        "{}",
        line.escape_debug()
    );
    let all = pilot.stderr_text() + &pilot.stdout_text();
    assert!(
        !all.contains('\x1b') && !all.contains('\x07'),
        "{}",
        all.escape_debug()
    );
}

#[test]
fn a_log_flood_is_cut_to_the_rate_limit_with_at_most_one_notice_a_second() {
    let dir = Scratch::new("log-flood");
    let plugins = plugin_dir(&dir, &[plugin("hostile", "hostile")]);
    let m = harness::manifest(
        &dir,
        "processes:\n  - { name: job, path: CHILD, args: [--exit-after, 1500, 0], lifecycle_hooks: [log-flood], shutdown_strategy: do_not_restart }\nplugins:\n  hostile: { call_timeout_ms: 5000, fuel: 100000000000 }\n",
    );
    let started = Instant::now();
    let mut pilot = Pilot::run_with_plugins(&m, &plugins);
    pilot.wait_exit(Duration::from_secs(60));
    let secs = started.elapsed().as_secs_f64();
    let printed = pilot.logs_with("hostile: flood line").len() as f64;
    let notices = pilot
        .logs_with("plugin `hostile`: ")
        .into_iter()
        .filter(|l| l.contains("log lines dropped"))
        .count() as f64;
    // Three hooks of 100,000 lines each: a burst of 200, then 100 a second.
    assert!(
        printed <= 200.0 + 100.0 * secs + 10.0,
        "{printed} lines printed in {secs:.1} s"
    );
    assert!(printed >= 200.0, "{printed} lines printed");
    assert!(
        (1.0..=secs + 2.0).contains(&notices),
        "{notices} notices in {secs:.1} s"
    );
}

#[test]
fn the_compile_cache_refuses_a_file_others_could_have_written() {
    let dir = Scratch::new("cache-perms");
    let plugins = plugin_dir(&dir, &[plugin("examples", "event-log")]);
    let m = harness::manifest(&dir, "processes:\n  - { name: a, path: CHILD }\n");
    let cache = dir.join("cache");
    let validate = || {
        let mut p = Pilot::start_env(
            &[
                "validate".as_ref(),
                m.as_os_str(),
                "--plugins".as_ref(),
                plugins.as_os_str(),
            ],
            &[("PILOT_HOST_CACHE_DIR", cache.as_os_str())],
        );
        assert_eq!(p.wait_exit(SOON).code(), Some(0), "{}", p.stderr_text());
        p.stdout_text()
    };
    assert!(validate().contains("(event-log.wasm, compiled in"));
    assert!(validate().contains("(event-log.wasm, loaded from the compile cache in"));
    let files: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert_eq!(files.len(), 1);
    let file = files[0].path();
    let mode = |f: &std::path::Path| std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    for bits in [0o620, 0o602] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(bits)).unwrap();
        assert!(
            validate().contains("(event-log.wasm, compiled in"),
            "a cache file of mode {bits:o} was loaded"
        );
        // Compiling again wrote a fresh file, only for us.
        assert_eq!(mode(&file), 0o600);
        assert!(validate().contains("loaded from the compile cache"));
    }
}

/// Returns (name, nice) of each thread of `pid`.
fn threads(pid: u32) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, n)| n).to_string();
        // After the name: state is field 3; nice is field 19.
        let nice = rest.split_whitespace().nth(16).and_then(|n| n.parse().ok());
        out.push((name, nice.unwrap_or(i64::MIN)));
    }
    out
}

#[test]
fn plugin_code_runs_on_its_own_threads_at_a_lower_priority() {
    let dir = Scratch::new("plugin-threads");
    let pilot = Pilot::run_with_plugins(
        &harness::manifest(
            &dir,
            "processes:\n  - { name: a, path: CHILD, ready_strategy: slow, ready_params: { ms: 2000 }, ready_timeout_sec: 30 }\nplugins:\n  probe: { call_timeout_ms: 5000 }\n",
        ),
        &probe_dir(&dir),
    );
    pilot.wait_log("a: started", SOON);
    let mut seen = Vec::new();
    wait_until("plugin threads are there", SOON, || {
        seen = threads(pilot.pid());
        seen.iter().any(|(n, _)| n == "pilot-plugin")
    });
    for (name, nice) in &seen {
        let want = if name == "pilot-plugin" { 10 } else { 0 };
        assert_eq!(*nice, want, "thread `{name}` runs at nice {nice}: {seen:?}");
    }
    assert!(
        seen.iter().any(|(n, _)| n.starts_with("tokio-rt")),
        "{seen:?}"
    );
}

/// A plugin instance holding 48 MiB of linear memory (in the pooling allocator's slots) is never
/// copied when pilot-host starts a child: once its threads run, every clone pilot-host makes shares
/// its memory (`CLONE_VM`: the child execs before anything is copied), traced with strace.
#[test]
fn plugin_memory_is_never_copied_when_pilot_host_starts_a_child() {
    let dir = Scratch::new("plugin-memory");
    let trace = dir.join("clones.txt");
    let manifest = harness::manifest(
        &dir,
        "processes:\n  - { name: a, path: CHILD, lifecycle_hooks: [hold], ready_strategy: slow, ready_params: { ms: 100 } }\n  - { name: b, path: CHILD, dependencies: [a] }\nplugins:\n  probe: { call_timeout_ms: 5000 }\n",
    );
    let plugins = probe_dir(&dir);
    let mut pilot = Pilot::start_wrapped(
        &[
            "strace",
            "-f",
            "-qq",
            "-o",
            trace.to_str().unwrap(),
            "-e",
            "trace=clone,clone3,fork,vfork",
            "-e",
            "signal=none",
        ],
        &[
            "run".as_ref(),
            manifest.as_os_str(),
            "--plugins".as_ref(),
            plugins.as_os_str(),
        ],
        &[],
    );
    // Killing strace would leave its tracees running: they are killed by their pids should an
    // assertion fail.
    let mut kill_on_drop = KillTreeOnDrop(Some(pilot.pid()));
    pilot.wait_log("probe: holding 48 MiB", SOON);
    // `b` is spawned once `a` is ready, whose checks begin after its post_start hook held the memory.
    pilot.wait_log("b: started", SOON);
    let host = harness::parent_of(pilot.pid_of("a")).unwrap();
    let smaps = std::fs::read_to_string(format!("/proc/{host}/smaps")).unwrap();
    let mut held = 0;
    let mut anon_kib = 0u64;
    for line in smaps.lines().chain(["00000000-00000000 end"]) {
        if line
            .split(' ')
            .next()
            .is_some_and(|r| r.contains('-') && !r.contains(':'))
        {
            held += usize::from(anon_kib >= 40 << 10);
            anon_kib = 0;
        } else if let Some(kib) = line.strip_prefix("Anonymous:") {
            anon_kib = kib.trim().trim_end_matches(" kB").trim().parse().unwrap();
        }
    }
    assert_eq!(held, 1, "mappings holding 40 MiB or more in pilot-host");
    // SAFETY: kill(2) on pilot-host, which this test started (under its strace).
    unsafe { libc::kill(host as i32, libc::SIGTERM) };
    pilot.wait_exit(SOON);
    kill_on_drop.0 = None;
    let trace = std::fs::read_to_string(&trace).unwrap();
    // Before its threads start, pilot-host forks its guard on purpose (a copy of a small process).
    let lines: Vec<&str> = trace
        .lines()
        .skip_while(|l| !l.contains("CLONE_THREAD"))
        .filter(|l| {
            ["clone(", "clone3(", "fork(", "vfork("]
                .iter()
                .any(|c| l.contains(c))
        })
        .collect();
    let spawns = lines.iter().filter(|l| l.contains("CLONE_PIDFD")).count();
    assert!(spawns >= 2, "no child spawns traced:\n{trace}");
    // vfork shares the memory too.
    let copies: Vec<&&str> = lines
        .iter()
        .filter(|l| !l.contains("CLONE_VM") && !l.contains("vfork("))
        .collect();
    assert!(
        copies.is_empty(),
        "clones that copy pilot-host's memory: {copies:#?}"
    );
}
