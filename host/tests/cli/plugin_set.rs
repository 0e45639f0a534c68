//! The plugin runtime as the supervisor sees it, through `Extensions`, with real plugins on their own
//! threads: quarantine, status and events, a caller that gives up, live reload.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pilot_host::extension::{
    Extensions, LifecycleEvent, PluginEvent, PluginEventSink, ProcessInfo, ReadyAnswer,
};
use pilot_host::manifest::{self, Manifest};
use pilot_host::plugin::{self, LoadedPlugin, PluginHost, PluginSet};

use crate::harness::{plugin, plugin_cache, Scratch};

fn host() -> PluginHost {
    PluginHost::new(Some(plugin_cache())).unwrap()
}

async fn load(host: &PluginHost, names: &[(&str, &str)]) -> Vec<LoadedPlugin> {
    let mut out = Vec::new();
    for (group, name) in names {
        out.push(host.load_file(&plugin(group, name)).await.unwrap());
    }
    out
}

fn manifest_of(dir: &Scratch, file: &str, plugins: &[LoadedPlugin], yaml: &str) -> Manifest {
    let path = dir.write(file, &yaml.replace("CHILD", "/bin/true"));
    let catalog = plugin::catalog(plugins).unwrap();
    manifest::load(&path, &catalog).unwrap().manifest
}

fn recorder() -> (PluginEventSink, Arc<Mutex<Vec<PluginEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (Arc::new(move |e| sink.lock().unwrap().push(e)), events)
}

fn info() -> ProcessInfo {
    ProcessInfo {
        name: "web".into(),
        pid: Some(1),
        path: "/bin/true".into(),
        args: Vec::new(),
        working_directory: "/".into(),
        restart_count: 0,
    }
}

fn calls(set: &PluginSet, name: &str) -> (u64, u64, bool) {
    let s = set.plugins().into_iter().find(|p| p.name == name).unwrap();
    (s.calls_total, s.failures_total, s.quarantined)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_stops_every_call_and_a_success_resets_the_count() {
    let dir = Scratch::new("quarantine");
    let host = host();
    let plugins = load(&host, &[("hostile", "hostile")]).await;
    let m = manifest_of(
        &dir,
        "m.yaml",
        &plugins,
        "processes:\n  - { name: web, path: CHILD, ready_strategy: ok }\n",
    );
    let (sink, events) = recorder();
    let set = PluginSet::start(&host, plugins, &m, sink).await.unwrap();
    let p = info();
    for strategy in ["panic", "panic", "ok", "panic", "panic"] {
        set.ready_check(strategy, &p, "{}").await;
    }
    assert_eq!(
        calls(&set, "hostile"),
        (5, 4, false),
        "a success in between resets the count"
    );
    let answer = set.ready_check("panic", &p, "{}").await;
    assert!(
        matches!(answer, ReadyAnswer::Error(ref e) if e.contains("panicked")),
        "{answer:?}"
    );
    assert_eq!(calls(&set, "hostile"), (6, 5, true));
    // Quarantined: no call is made any more, of any kind.
    let answer = set.ready_check("ok", &p, "{}").await;
    assert_eq!(
        answer,
        ReadyAnswer::NotYet("plugin `hostile` 0.1.0 is quarantined".into())
    );
    set.lifecycle("log-flood", LifecycleEvent::PreStart, &p)
        .await;
    assert!(set.stats("noop", &[]).await.is_empty());
    assert_eq!(calls(&set, "hostile"), (6, 5, true));
    let events = events.lock().unwrap().clone();
    let failed = events
        .iter()
        .filter(|e| matches!(e, PluginEvent::CallFailed { call, .. } if call == "ready check `panic` of `web`"))
        .count();
    assert_eq!(failed, 5, "{events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, PluginEvent::Quarantined { plugin } if plugin == "hostile"))
            .count(),
        1,
        "{events:?}"
    );
    let status = set.plugins().into_iter().next().unwrap();
    assert!(status.last_error.unwrap().contains("panicked"));
    assert!(status.fuel_consumed_total > 0);
    assert!(status.file.ends_with("hostile.wasm"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_does_not_cancel_the_call_half_way() {
    let dir = Scratch::new("give-up");
    let host = host();
    let plugins = load(&host, &[("hostile", "probe")]).await;
    let m = manifest_of(
        &dir,
        "m.yaml",
        &plugins,
        "processes:\n  - { name: web, path: CHILD, ready_strategy: slow }\n",
    );
    let (sink, _) = recorder();
    let set = PluginSet::start(&host, plugins, &m, sink).await.unwrap();
    let p = info();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(20),
        set.ready_check("slow", &p, r#"{"ms": 300}"#),
    )
    .await;
    assert!(gave_up.is_err(), "the call takes 300 ms");
    // Queued behind the abandoned call, on the plugin's thread: it ran to its end and kept its instance.
    let actor = set.actor("probe").unwrap();
    let live = actor.with(|s| Box::pin(async move { s.is_live() })).await;
    assert_eq!(live, Some(true));
    assert_eq!(calls(&set, "probe"), (1, 0, false));
    assert_eq!(set.ready_check("ok", &p, "{}").await, ReadyAnswer::Ready);
}

/// Starts a set with the probe (used), mem-guard and event-log (loaded); returns it and those plugins.
async fn reloadable(dir: &Scratch) -> (PluginSet, Vec<LoadedPlugin>) {
    let host = host();
    let plugins = load(
        &host,
        &[
            ("hostile", "probe"),
            ("examples", "mem-guard"),
            ("examples", "event-log"),
        ],
    )
    .await;
    let first = manifest_of(
        dir,
        "a.yaml",
        &plugins,
        "processes:\n  - { name: web, path: CHILD, ready_strategy: env, ready_params: { name: PATH } }\n",
    );
    let (sink, _) = recorder();
    let set = PluginSet::start(&host, plugins.clone(), &first, sink)
        .await
        .unwrap();
    (set, plugins)
}

fn names(set: &PluginSet) -> Vec<String> {
    set.plugins().into_iter().map(|p| p.name).collect()
}

/// The probe gets a grant (so its instances must be made afresh), mem-guard gets used.
const SECOND: &str = "processes:\n  - { name: web, path: CHILD, ready_strategy: env, ready_params: { name: PATH }, stat_handlers: [mem-guard] }\nplugins:\n  probe: { allow_env: [PATH] }\n  mem-guard: { config: { max_rss_mib: 1 } }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_starts_new_plugins_and_restarts_changed_ones() {
    let dir = Scratch::new("reload");
    let (set, plugins) = reloadable(&dir).await;
    assert_eq!(
        names(&set),
        ["probe"],
        "only the plugins the manifest uses start"
    );
    let probe = set.actor("probe").unwrap();
    set.reload(&manifest_of(&dir, "b.yaml", &plugins, SECOND))
        .await
        .unwrap();
    assert_eq!(names(&set), ["mem-guard", "probe"]);
    assert!(
        !Arc::ptr_eq(&probe, &set.actor("probe").unwrap()),
        "settings changed"
    );
    let answer = set.ready_check("env", &info(), r#"{"name": "PATH"}"#).await;
    assert!(
        matches!(answer, ReadyAnswer::NotYet(ref r) if r.starts_with("PATH=/")),
        "{answer:?}"
    );
    // Unchanged settings keep their actor.
    let mem_guard = set.actor("mem-guard").unwrap();
    set.reload(&manifest_of(&dir, "b.yaml", &plugins, SECOND))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&mem_guard, &set.actor("mem-guard").unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_plugin_that_cannot_start_changes_nothing() {
    let dir = Scratch::new("reload-error");
    let (set, plugins) = reloadable(&dir).await;
    let probe = set.actor("probe").unwrap();
    let broken = manifest_of(
        &dir,
        "c.yaml",
        &plugins,
        "processes:\n  - { name: web, path: CHILD, lifecycle_hooks: [event-log] }\nplugins:\n  probe: { allow_env: [PATH] }\n  mem-guard: { config: { max_rss_mib: \"many\" } }\n",
    );
    let errors = set.reload(&broken).await.unwrap_err();
    assert_eq!(errors.len(), 2, "every problem is returned: {errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("plugin `event-log` 0.1.0: cannot start: invalid configuration")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("plugin `mem-guard` 0.1.0: cannot start")),
        "{errors:?}"
    );
    assert_eq!(names(&set), ["probe"]);
    assert!(Arc::ptr_eq(&probe, &set.actor("probe").unwrap()));
}
