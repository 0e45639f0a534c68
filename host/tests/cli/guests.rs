//! Plugins written in C, Python and JavaScript, run by the real `pilot-host` with real children: the
//! examples doing their jobs, and the compile cache making a big component's second start fast.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::harness::{self, *};

/// How long compiling a 12 to 18 MB component may take on a busy 2-core machine.
const COMPILE: Duration = Duration::from_secs(300);

/// Compiles `plugins` into the tests' shared compile cache once per test run (`validate` loads every
/// plugin in a folder), so runs that follow start in milliseconds, within their usual deadlines.
pub fn warm(plugins: &[PathBuf]) {
    static WARMED: OnceLock<Mutex<Vec<PathBuf>>> = OnceLock::new();
    let mut warmed = WARMED.get_or_init(Default::default).lock().unwrap();
    let cold: Vec<PathBuf> = plugins
        .iter()
        .filter(|p| !warmed.contains(p))
        .cloned()
        .collect();
    if cold.is_empty() {
        return;
    }
    let dir = Scratch::new("warm");
    let folder = plugin_dir(&dir, &cold);
    let m = harness::manifest(&dir, "processes:\n  - { name: a, path: CHILD }\n");
    let mut pilot = Pilot::start(&[
        "validate".as_ref(),
        m.as_os_str(),
        "--plugins".as_ref(),
        folder.as_os_str(),
    ]);
    assert_eq!(
        pilot.wait_exit(COMPILE).code(),
        Some(0),
        "{}",
        pilot.stderr_text()
    );
    warmed.extend(cold);
}

/// A plugin folder in `dir` with the example `name`, compiled into the cache already.
fn example(dir: &Scratch, name: &str) -> PathBuf {
    let wasm = plugin("examples", name);
    warm(std::slice::from_ref(&wasm));
    plugin_dir(dir, &[wasm])
}

#[test]
fn pidfile_ready_waits_for_the_process_own_pid_not_a_stale_file() {
    let dir = Scratch::new("pidfile-ready");
    let plugins = example(&dir, "pidfile-ready");
    std::fs::create_dir(dir.join("run")).unwrap();
    // Left over from an earlier run: another pid.
    std::fs::write(dir.join("run/cache.pid"), "1\n").unwrap();
    let m = harness::manifest(
        &dir,
        r#"
ready_check_interval_sec: 0.02
processes:
  - name: cache
    path: CHILD
    args: [--pid-file-after, 300, DIR/run/cache.pid]
    ready_strategy: pidfile-ready
    ready_params: { path: DIR/run/cache.pid }
  - { name: api, path: CHILD, dependencies: [cache] }
plugins:
  pidfile-ready: { allow_read: [DIR/run] }
"#,
    );
    let pilot = Pilot::run_with_plugins(&m, &plugins);
    let (line, ms) = pilot.wait_ready("cache");
    assert!(ms >= 250.0, "ready on the stale pid file: {line}");
    pilot.wait_log("api: started", SOON);
    let written = std::fs::read_to_string(dir.join("run/cache.pid")).unwrap();
    assert_eq!(written.trim(), pilot.pid_of("cache").to_string());
}

#[test]
fn pidfile_ready_without_a_grant_says_what_to_grant() {
    let dir = Scratch::new("pidfile-ungranted");
    let plugins = example(&dir, "pidfile-ready");
    std::fs::create_dir(dir.join("run")).unwrap();
    let m = harness::manifest(
        &dir,
        r#"
processes:
  - name: cache
    path: CHILD
    args: [--pid-file-after, 0, DIR/run/cache.pid]
    ready_strategy: pidfile-ready
    ready_timeout_sec: 0.5
    ready_params: { path: run/cache.pid }
    working_directory: DIR
"#,
    );
    let mut pilot = Pilot::run_with_plugins(&m, &plugins);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(1));
    let log = pilot.stderr_text();
    assert!(
        log.contains(&format!(
            "unavailable: cannot read pid file `{}/run/cache.pid`: Capabilities insufficient \
             (is its folder in `plugins.pidfile-ready.allow_read`?)",
            dir.path().display()
        )),
        "{log}"
    );
}

#[test]
fn file_contains_waits_for_a_line_matching_the_pattern() {
    let dir = Scratch::new("file-contains");
    let plugins = example(&dir, "file-contains");
    std::fs::create_dir(dir.join("logs")).unwrap();
    let m = harness::manifest(
        &dir,
        r#"
ready_check_interval_sec: 0.02
processes:
  - name: db
    path: CHILD
    args: [--append-after, 50, DIR/logs/db.log, "starting up",
           --append-after, 400, DIR/logs/db.log, "ready to accept connections on port 5432"]
    ready_strategy: file-contains
    ready_params: { path: logs/db.log, pattern: 'accept connections on port \d+$' }
    working_directory: DIR
  - { name: api, path: CHILD, dependencies: [db] }
plugins:
  file-contains: { allow_read: [DIR/logs] }
"#,
    );
    let pilot = Pilot::run_with_plugins(&m, &plugins);
    let (line, ms) = pilot.wait_ready("db");
    assert!(ms >= 350.0, "ready before the line was written: {line}");
    pilot.wait_log("api: started", SOON);
}

#[test]
fn file_contains_reports_a_bad_pattern_as_invalid_config() {
    let dir = Scratch::new("file-contains-bad");
    let plugins = example(&dir, "file-contains");
    let m = harness::manifest(
        &dir,
        r#"
processes:
  - name: db
    path: CHILD
    ready_strategy: file-contains
    ready_timeout_sec: 2
    ready_params: { path: DIR/db.log, pattern: "(unclosed" }
plugins:
  file-contains: { allow_read: [DIR] }
"#,
    );
    let mut pilot = Pilot::run_with_plugins(&m, &plugins);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(1));
    let log = pilot.stderr_text();
    assert!(
        log.contains("`ready_params.pattern` is not a valid regular expression: missing ), unterminated subpattern"),
        "{log}"
    );
}

#[test]
fn cpu_guard_restarts_only_a_process_that_stays_busy() {
    let dir = Scratch::new("cpu-guard");
    let plugins = example(&dir, "cpu-guard");
    let m = harness::manifest(
        &dir,
        r#"
stats_interval_sec: 0.1
processes:
  - { name: spinner, path: CHILD, args: [--busy], stat_handlers: [cpu-guard] }
  - { name: calm, path: CHILD, stat_handlers: [cpu-guard] }
plugins:
  cpu-guard: { config: { max_cpu_percent: 5, samples: 3 } }
"#,
    );
    let pilot = Pilot::run_with_plugins(&m, &plugins);
    let line = pilot.wait_log("spinner: stat handler `cpu-guard` asks to restart it", SOON);
    assert!(
        line.contains("CPU above 5% for 3 samples in a row"),
        "{line}"
    );
    wait_until("spinner restarted", SOON, || {
        pilot.logs_with("spinner: started").len() >= 2
    });
    assert!(pilot.logs_with("calm: stat handler").is_empty());
    assert_eq!(pilot.logs_with("calm: started").len(), 1);
}

#[test]
fn cpu_guard_rejects_a_bad_config_before_anything_starts() {
    let dir = Scratch::new("cpu-guard-config");
    let plugins = example(&dir, "cpu-guard");
    let m = harness::manifest(
        &dir,
        r#"
processes:
  - { name: spinner, path: CHILD, stat_handlers: [cpu-guard] }
plugins:
  cpu-guard: { config: { max_cpu_percent: "lots" } }
"#,
    );
    let mut pilot = Pilot::run_with_plugins(&m, &plugins);
    assert_eq!(pilot.wait_exit(SOON).code(), Some(2));
    let log = pilot.stderr_text();
    assert!(
        log.contains("`config.max_cpu_percent` must be a number, got `\"lots\"`"),
        "{log}"
    );
    assert!(pilot.logs_with("spinner: started").is_empty());
}

/// Runs `validate` on `plugin` with a cache folder of its own; returns what it printed.
fn validate_with_cache(dir: &Scratch, plugin: &Path, cache: &Path) -> String {
    let plugins = plugin_dir(dir, &[plugin.to_path_buf()]);
    let m = harness::manifest(dir, "processes:\n  - { name: a, path: CHILD }\n");
    let mut p = Pilot::start_env(
        &[
            "validate".as_ref(),
            m.as_os_str(),
            "--plugins".as_ref(),
            plugins.as_os_str(),
        ],
        &[("PILOT_HOST_CACHE_DIR", cache.as_os_str())],
    );
    assert_eq!(p.wait_exit(COMPILE).code(), Some(0), "{}", p.stderr_text());
    p.stdout_text()
}

#[test]
fn big_components_compile_once_then_load_from_the_cache() {
    for name in ["file-contains", "cpu-guard"] {
        let dir = Scratch::new(&format!("big-cache-{name}"));
        let cache = dir.join("cache");
        let wasm = plugin("examples", name);
        let first = validate_with_cache(&dir, &wasm, &cache);
        assert!(
            first.contains(&format!("({name}.wasm, compiled in ")),
            "{first}"
        );
        let second = validate_with_cache(&dir, &wasm, &cache);
        assert!(
            second.contains(&format!("({name}.wasm, loaded from the compile cache in ")),
            "{second}"
        );
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
    }
}

#[test]
fn the_c_and_python_sdks_name_the_key_and_value_of_bad_params() {
    for (plugin_name, params, want) in [
        (
            "pidfile-ready",
            "{ path: 5 }",
            "invalid configuration: `ready_params.path` must be a string, got `5`",
        ),
        (
            "file-contains",
            "{ path: x, pattern: y, max_bytes: -1 }",
            "invalid configuration: `ready_params.max_bytes` must be a whole number, got `-1`",
        ),
    ] {
        let dir = Scratch::new(&format!("params-{plugin_name}"));
        let plugins = example(&dir, plugin_name);
        let m = harness::manifest(
            &dir,
            &format!(
                "processes:\n  - {{ name: a, path: CHILD, ready_strategy: {plugin_name}, ready_timeout_sec: 0.5, ready_params: {params} }}\n"
            ),
        );
        let mut pilot = Pilot::run_with_plugins(&m, &plugins);
        assert_eq!(pilot.wait_exit(SOON).code(), Some(1));
        let log = pilot.stderr_text();
        assert!(log.contains(want), "{plugin_name}: {log}");
    }
}
