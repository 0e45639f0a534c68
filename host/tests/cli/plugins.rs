//! `pilot-host` with real WebAssembly plugins: the examples doing their jobs, grants enforced, hostile
//! plugins stopped within their limits while supervision goes on, `plugin check`, the compile cache.

use crate::harness::{self, *};

fn examples() -> Vec<std::path::PathBuf> {
    ["http-ready", "file-ready", "mem-guard", "event-log"]
        .iter()
        .map(|n| plugin("examples", n))
        .collect()
}

#[test]
fn validate_lists_the_plugins_and_checks_names_against_them() {
    let dir = Scratch::new("plugin-validate");
    let plugins = plugin_dir(&dir, &examples());
    let ok = harness::manifest(
        &dir,
        "processes:\n  - { name: web, path: CHILD, ready_strategy: http, ready_params: { url: 'http://127.0.0.1:1/' }, lifecycle_hooks: [event-log], stat_handlers: [mem-guard] }\n",
    );
    let mut pilot = Pilot::start(&[
        "validate".as_ref(),
        ok.as_os_str(),
        "--plugins".as_ref(),
        plugins.as_os_str(),
    ]);
    assert_eq!(
        pilot.wait_exit(SOON).code(),
        Some(0),
        "{}",
        pilot.stderr_text()
    );
    let out = pilot.stdout_text();
    assert!(
        out.contains("plugin `http-ready` 0.1.0 (http-ready.wasm, "),
        "{out}"
    );
    assert!(out.contains("ready strategies `http`"), "{out}");

    let bad = dir.write("bad.yaml", &format!(
        "processes:\n  - {{ name: web, path: {}, ready_strategy: htp, lifecycle_hooks: [event-logg] }}\nplugins:\n  nope: {{}}\n",
        pilot_child().display()
    ));
    let mut pilot = Pilot::start(&[
        "validate".as_ref(),
        bad.as_os_str(),
        "--plugins".as_ref(),
        plugins.as_os_str(),
    ]);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(2));
    let err = pilot.stderr_text();
    assert!(err.contains("`htp` is not a known ready strategy (known: `tcp`, `pipe`, `file`, `file-ready`, `http`); did you mean `tcp`?") || err.contains("`htp` is not a known ready strategy"), "{err}");
    assert!(err.contains("no loaded plugin provides lifecycle hook `event-logg` (known: `event-log`); did you mean `event-log`?"), "{err}");
    assert!(err.contains("no loaded plugin is called `nope`"), "{err}");
}

#[test]
fn two_plugins_claiming_one_name_is_an_error() {
    let dir = Scratch::new("plugin-clash");
    let plugins = plugin_dir(&dir, &[plugin("examples", "http-ready")]);
    std::fs::copy(
        plugins.join("http-ready.wasm"),
        plugins.join("http-ready-copy.wasm"),
    )
    .unwrap();
    let m = harness::manifest(&dir, "processes:\n  - { name: a, path: CHILD }\n");
    let mut pilot = Pilot::start(&[
        "run".as_ref(),
        m.as_os_str(),
        "--plugins".as_ref(),
        plugins.as_os_str(),
    ]);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(2));
    let err = pilot.stderr_text();
    assert!(
        err.contains("ready strategy `http` is provided by both"),
        "{err}"
    );
    assert!(pilot.logs_with("a: started").is_empty());
}

#[test]
fn http_ready_waits_for_a_2xx_on_a_granted_address() {
    let dir = Scratch::new("http-ready");
    let plugins = plugin_dir(&dir, &examples());
    let port = free_port();
    let m = harness::manifest(
        &dir,
        &format!(
            r#"
ready_check_interval_sec: 0.02
processes:
  - name: web
    path: CHILD
    args: [--listen-after, 200, {port}]
    ready_strategy: http
    ready_params: {{ url: "http://127.0.0.1:{port}/health" }}
  - {{ name: worker, path: CHILD, dependencies: [web] }}
plugins:
  http-ready: {{ allow_tcp: ["127.0.0.1:{port}"] }}
"#
        ),
    );
    let pilot = Pilot::run_with_plugins(&m, &plugins);
    let (line, ms) = pilot.wait_ready("web");
    assert!(ms >= 150.0, "ready before the server listened: {line}");
    pilot.wait_log("worker: started", SOON);
}

#[test]
fn without_a_grant_the_plugin_cannot_connect_and_the_process_fails_with_the_reason() {
    let dir = Scratch::new("http-ungranted");
    let plugins = plugin_dir(&dir, &examples());
    let port = free_port();
    let m = harness::manifest(
        &dir,
        &format!(
            r#"
processes:
  - name: web
    path: CHILD
    args: [--listen-after, 0, {port}]
    ready_strategy: http
    ready_timeout_sec: 0.5
    ready_params: {{ url: "http://127.0.0.1:{port}/" }}
"#
        ),
    );
    let mut pilot = Pilot::run_with_plugins(&m, &plugins);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(1));
    let log = pilot.stderr_text();
    assert!(log.contains("web: not ready after 0.5 s (`http`"), "{log}");
}

#[test]
fn file_ready_reads_only_a_granted_folder() {
    let dir = Scratch::new("file-ready");
    let plugins = plugin_dir(&dir, &examples());
    std::fs::create_dir(dir.join("flags")).unwrap();
    let m = harness::manifest(
        &dir,
        r#"
ready_check_interval_sec: 0.02
processes:
  - { name: db, path: CHILD, args: [--touch-after, 150, DIR/flags/db], ready_strategy: file-ready, ready_params: { path: DIR/flags/db } }
  - { name: api, path: CHILD, dependencies: [db] }
plugins:
  file-ready: { allow_read: [DIR/flags] }
"#,
    );
    let pilot = Pilot::run_with_plugins(&m, &plugins);
    pilot.wait_log("db: ready after", SOON);
    pilot.wait_log("api: started", SOON);
}

#[test]
fn event_log_records_every_lifecycle_event() {
    let dir = Scratch::new("event-log");
    let plugins = plugin_dir(&dir, &examples());
    std::fs::create_dir(dir.join("logs")).unwrap();
    let m = harness::manifest(
        &dir,
        r#"
processes:
  - name: job
    path: CHILD
    args: [--exit-after, 100, 3]
    lifecycle_hooks: [event-log]
    restart: { min_uptime_sec: 10, initial_delay_sec: 0.01, max_restarts: 1 }
plugins:
  event-log: { allow_write: [DIR/logs], config: { path: DIR/logs/events.jsonl } }
"#,
    );
    let mut pilot = Pilot::run_with_plugins(&m, &plugins);
    assert_eq!(
        pilot.wait_exit(SOON).code(),
        Some(1),
        "the crash loop budget of 1 is spent"
    );
    let text = std::fs::read_to_string(dir.join("logs/events.jsonl")).unwrap_or_default();
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "pre-start",
            "post-start",
            "on-shutdown",
            "on-restart",
            "pre-start",
            "post-start",
            "on-shutdown"
        ],
        "{text}"
    );
    assert_eq!(events[2]["exit_code"], 3, "{text}");
    assert_eq!(
        events[2]["pid"], events[1]["pid"],
        "on_shutdown names the pid that exited: {text}"
    );
    assert_eq!(events[4]["restarts"], 1, "{text}");
}

#[test]
fn mem_guard_restarts_only_the_processes_that_name_it() {
    let dir = Scratch::new("mem-guard");
    let plugins = plugin_dir(&dir, &examples());
    let m = harness::manifest(
        &dir,
        r#"
stats_interval_sec: 0.1
processes:
  - { name: hog, path: CHILD, stat_handlers: [mem-guard] }
  - { name: bystander, path: CHILD }
plugins:
  mem-guard: { config: { max_rss_mib: 0, samples: 2 } }
"#,
    );
    let pilot = Pilot::run_with_plugins(&m, &plugins);
    pilot.wait_log("hog: stat handler `mem-guard` asks to restart it", SOON);
    wait_until("hog restarted", SOON, || {
        pilot.logs_with("hog: started").len() >= 2
    });
    assert_eq!(pilot.logs_with("bystander: started").len(), 1);
}

/// A manifest with one hostile ready check beside a healthy tcp chain and a crash-looping process.
fn hostile_manifest(dir: &Scratch, strategy: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let plugins = plugin_dir(dir, &[plugin("hostile", "hostile")]);
    let (p1, p2) = (free_port(), free_port());
    // The memory bomb and the huge answer must reach their own failure before the deadline, and
    // fail three times before the ready timeout, even on a starved CPU.
    let timeout_ms = if slow(strategy) { 1000 } else { 100 };
    let ready_timeout = ready_timeout(strategy);
    let m = harness::manifest(
        dir,
        &format!(
            r#"
ready_check_interval_sec: 0.01
processes:
  - name: victim
    path: CHILD
    ready_strategy: {strategy}
    ready_timeout_sec: {ready_timeout}
    ready_params: {{ port: {p1} }}
  - {{ name: one, path: CHILD, args: [--listen-after, 50, {p1}], ready_strategy: tcp, ready_params: {{ port: {p1} }} }}
  - {{ name: two, path: CHILD, args: [--listen-after, 50, {p2}], ready_strategy: tcp, ready_params: {{ port: {p2} }}, dependencies: [one] }}
  - name: crashy
    path: CHILD
    args: [--exit-after, 20, 1]
    restart: {{ initial_delay_sec: 0.01, factor: 1, jitter: 0, max_restarts: 1000 }}
plugins:
  hostile: {{ call_timeout_ms: {timeout_ms}, fuel: 100000000000 }}
"#
        ),
    );
    (m, plugins)
}

/// Whether `strategy` does real work before it fails (so it gets more time under load).
fn slow(strategy: &str) -> bool {
    matches!(strategy, "membomb" | "huge")
}

/// The victim's ready timeout, as `run` prints it.
fn ready_timeout(strategy: &str) -> &'static str {
    if slow(strategy) {
        "6.0"
    } else {
        "1.5"
    }
}

fn hostile_run(dir: &Scratch, strategy: &str) -> Pilot {
    let (m, plugins) = hostile_manifest(dir, strategy);
    Pilot::run_with_plugins(&m, &plugins)
}

fn assert_hostile_contained(strategy: &str, want: &str) {
    let dir = Scratch::new(&format!("hostile-{strategy}"));
    let pilot = hostile_run(&dir, strategy);
    assert_contained(&pilot, strategy, want);
}

fn assert_contained(pilot: &Pilot, strategy: &str, want: &str) {
    let line = pilot.wait_log(want, SOON);
    assert!(
        line.contains(&format!("ready check `{strategy}` of `victim`")),
        "{line}"
    );
    // Meanwhile the healthy chain got ready and the crash loop kept restarting.
    pilot.wait_log("two: ready after", SOON);
    wait_until("crashy restarts on", SOON, || {
        pilot.logs_with("crashy: started").len() >= 10
    });
    pilot.wait_log(
        "plugin `hostile` 0.1.0: quarantined after 3 failed calls in a row",
        SOON,
    );
    pilot.wait_log(
        &format!("victim: not ready after {} s", ready_timeout(strategy)),
        SOON,
    );
}

#[test]
fn a_spinning_plugin_is_interrupted_at_its_deadline() {
    assert_hostile_contained("spin", "ran past its 100 ms deadline; interrupted");
}

#[test]
fn a_spinning_plugin_starves_nothing_on_one_cpu() {
    // On one CPU, the crash loop restarts as often while a check spins to its deadline as while a
    // calm check (`never`: not ready, at once) runs: counted over the same span, the victim's 1.5 s
    // of checks, in three rounds paired and alternating.
    let (mut calm, mut spin) = (0, 0);
    for round in 0..3 {
        calm += starts_while_checked(&format!("calm-{round}"), "never", None);
        let interrupted = "ran past its 100 ms deadline; interrupted";
        spin += starts_while_checked(&format!("spin-{round}"), "spin", Some(interrupted));
    }
    assert!(calm >= 30, "the calm runs are the baseline: {calm} starts");
    assert!(
        calm as f64 <= spin as f64 * 1.2,
        "crashy started {spin} times beside a spinning check, {calm} beside a calm one"
    );
}

/// Runs the hostile manifest with `strategy` on one CPU; returns how often `crashy` started before
/// the victim's checks ended (its ready timeout), after checking the containment `want` if given.
fn starts_while_checked(label: &str, strategy: &str, want: Option<&str>) -> usize {
    let dir = Scratch::new(&format!("hostile-one-cpu-{label}"));
    let (m, plugins) = hostile_manifest(&dir, strategy);
    let pilot = Pilot::start_on_one_cpu(&[
        "run".as_ref(),
        m.as_os_str(),
        "--plugins".as_ref(),
        plugins.as_os_str(),
    ]);
    let end = format!("victim: not ready after {} s", ready_timeout(strategy));
    match want {
        Some(want) => assert_contained(&pilot, strategy, want),
        None => {
            pilot.wait_log(&end, SOON);
        }
    }
    let log = pilot.stderr_text();
    let before_end = &log[..log.find(&end).expect("the end of the checks is logged")];
    before_end.matches("crashy: started").count()
}

#[test]
fn a_plugin_sleeping_in_wasi_is_stopped_at_its_deadline() {
    assert_hostile_contained("sleep", "did not return within its 100 ms limit; stopped");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_memory_bomb_hits_its_cap_and_the_memory_comes_back() {
    // Warm the compile cache first: compiling leaves the allocator bigger, loading does not.
    let warm = Scratch::new("hostile-membomb-warm");
    let (m, plugins) = hostile_manifest(&warm, "never");
    let mut validate = Pilot::start(&[
        "validate".as_ref(),
        m.as_os_str(),
        "--plugins".as_ref(),
        plugins.as_os_str(),
    ]);
    assert_eq!(validate.wait_exit(SOON).code(), Some(0));
    // The baseline: the same supervisor and plugin, asked a check that allocates nothing.
    let calm_dir = Scratch::new("hostile-membomb-baseline");
    let calm = hostile_run(&calm_dir, "never");
    calm.wait_log("victim: not ready after 1.5 s", SOON);
    let baseline = rss_kib(calm.pid());
    let dir = Scratch::new("hostile-membomb");
    let bomb = hostile_run(&dir, "membomb");
    assert_contained(&bomb, "membomb", "hit its memory cap of 64 MiB");
    let after_bombs = rss_kib(bomb.pid());
    assert!(
        after_bombs < baseline + 8 * 1024,
        "RSS after three 64 MiB bombs: {after_bombs} KiB; baseline {baseline} KiB"
    );
}

#[test]
fn deep_recursion_traps() {
    assert_hostile_contained("recurse", "accessed memory out of bounds");
}

#[test]
fn a_panic_traps() {
    assert_hostile_contained("panic", "panicked or aborted");
}

#[test]
fn a_huge_answer_is_refused() {
    assert_hostile_contained("huge", "passed more than 1024 KiB to the host in one call");
}

#[test]
fn ungranted_files_and_sockets_are_unreachable() {
    for (strategy, want) in [
        ("read-ungranted", "cannot read `/etc/hostname`"),
        ("connect-ungranted", "cannot connect to 127.0.0.1:"),
    ] {
        let dir = Scratch::new(&format!("hostile-{strategy}"));
        let pilot = hostile_run(&dir, strategy);
        pilot.wait_log("victim: not ready after 1.5 s", SOON);
        let log = pilot.stderr_text();
        assert!(log.contains(want), "{strategy}: {log}");
        assert!(log.contains("victim: not ready after 1.5 s"), "{log}");
    }
}

#[test]
fn a_ready_check_that_never_says_ready_times_out_with_its_reason() {
    let dir = Scratch::new("hostile-never");
    let pilot = hostile_run(&dir, "never");
    pilot.wait_log("victim: not ready after 1.5 s", SOON);
    assert!(
        pilot
            .stderr_text()
            .contains("victim: not ready after 1.5 s (`never` says: hostile: never ready)"),
        "{}",
        pilot.stderr_text()
    );
}

#[test]
fn a_describe_that_traps_is_reported_and_nothing_starts() {
    let dir = Scratch::new("describe-trap");
    let plugins = plugin_dir(&dir, &[plugin("hostile", "describe-trap")]);
    let m = harness::manifest(&dir, "processes:\n  - { name: a, path: CHILD }\n");
    let mut pilot = Pilot::run_with_plugins(&m, &plugins);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(2));
    assert!(
        pilot
            .stderr_text()
            .contains("describe-trap.wasm`: `describe` panicked or aborted"),
        "{}",
        pilot.stderr_text()
    );
    assert!(pilot.logs_with("a: started").is_empty());
}
