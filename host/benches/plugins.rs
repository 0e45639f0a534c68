//! Plugin runtime benchmarks: `cargo bench -p pilot-host --bench plugins` (run by `cargo xtask bench`).
//!
//! Every figure is a median over repeated runs, printed with min–max, beside a baseline measured in the
//! same run: raw wasmtime calls without pilot-host's per-call limits, a cold compile against a cache hit.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pilot_host::manifest::PluginSettings;
use pilot_host::plugin::control::ControlPlugin;
use pilot_host::plugin::{call_fn, AnyPlugin, LoadedPlugin, PluginHost, ReadyStatus, Sandbox};

#[path = "plugins/languages.rs"]
mod languages;

fn hostile() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/hostile/hostile.wasm");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask plugins` first",
        path.display()
    );
    path
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn row(what: &str, unit: &str, ours: Vec<f64>, baseline: Option<(&str, Vec<f64>)>, target: &str) {
    let (med, min, max) = stats(ours);
    let base = match baseline {
        Some((name, b)) => {
            let (bm, bmin, bmax) = stats(b);
            format!(
                "{name}: {bm:.3} {unit} ({bmin:.3}–{bmax:.3}); ratio {:.2}",
                med / bm
            )
        }
        None => String::new(),
    };
    println!("| {what} | {med:.3} {unit} ({min:.3}–{max:.3}) | {base} | {target} |");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let wasm = std::fs::read(hostile()).unwrap();
    let cache = std::env::temp_dir().join(format!("pilot-bench-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    println!("| what | pilot-host median (min–max) | baseline in the same run | target |");
    println!("| --- | --- | --- | --- |");
    compile_cache(&wasm, &cache);
    let host = PluginHost::new(Some(cache.clone())).unwrap();
    let plugin = host.load_file(&hostile()).await.unwrap();
    let mut sandbox = plugin.sandbox(&host, PluginSettings::default());
    sandbox
        .call(call_fn(|_, _| Box::pin(async { Ok(()) })))
        .await
        .unwrap();
    warm_ready_check(&mut sandbox).await;
    warm_stat_handler(&mut sandbox).await;
    round_trip(&host, &plugin, &mut sandbox).await;
    fresh_instance(&mut sandbox).await;
    fresh_control_instance(&host).await;
    spin_deadline(&host, &plugin).await;
    let _ = std::fs::remove_dir_all(&cache);
}

fn info() -> pilot_host::plugin::GuestProcessInfo {
    pilot_host::plugin::sample_process_info()
}

/// Loads from the compile cache against a first compile.
fn compile_cache(wasm: &[u8], cache: &std::path::Path) {
    let cold = PluginHost::new(None).unwrap();
    let compiles: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            cold.engine.compile(wasm).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cached = PluginHost::new(Some(cache.to_path_buf())).unwrap();
    cached.engine.compile(wasm).unwrap();
    let hits: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            let (_, from_cache) = cached.engine.compile(wasm).unwrap();
            assert!(from_cache);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    row(
        "load a compiled plugin from the cache",
        "ms",
        hits,
        Some(("first compile", compiles)),
        "≤ 1 ms vs about 90 ms",
    );
}

const BATCH: usize = 2000;

/// A warm call on a live instance, through the sandbox (fuel, deadline, epoch, timeout armed per
/// call), against the same export called in a tight loop under one arming (raw wasmtime).
async fn warm_ready_check(sandbox: &mut Sandbox) {
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..BATCH {
            let r = ready_check(sandbox).await;
            assert!(matches!(r, Ok(ReadyStatus::Ready)));
        }
        ours.push(t.elapsed().as_secs_f64() * 1e6 / BATCH as f64);
        let i = info();
        let per_call = sandbox
            .call(call_fn(move |p, s| {
                Box::pin(async move {
                    let t = Instant::now();
                    for _ in 0..BATCH {
                        p.pilot_plugin_plugin()
                            .call_ready_check(&mut *s, "ok", &i, "{}")
                            .await?
                            .ok();
                    }
                    Ok(t.elapsed().as_secs_f64() * 1e6 / BATCH as f64)
                })
            }))
            .await
            .unwrap();
        raw.push(per_call);
    }
    row(
        "warm ready check on a live instance",
        "µs",
        ours,
        Some(("raw wasmtime call", raw)),
        "≤ 1 µs (raw 0.36 µs)",
    );
}

async fn ready_check(
    sandbox: &mut Sandbox,
) -> Result<ReadyStatus, pilot_host::plugin::PluginError> {
    let i = info();
    sandbox
        .call(call_fn(move |p, s| {
            Box::pin(async move {
                p.pilot_plugin_plugin()
                    .call_ready_check(s, "ok", &i, "{}")
                    .await
            })
        }))
        .await
        .unwrap()
}

/// The smallest call: a stat handler given an empty list (no strings cross, nothing to parse).
async fn warm_stat_handler(sandbox: &mut Sandbox) {
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..BATCH {
            let r = sandbox
                .call(call_fn(|p, s| {
                    Box::pin(
                        async move { p.pilot_plugin_plugin().call_stats(s, "noop", &[]).await },
                    )
                }))
                .await
                .unwrap();
            assert!(r.is_ok());
        }
        ours.push(t.elapsed().as_secs_f64() * 1e6 / BATCH as f64);
        let per_call = sandbox
            .call(call_fn(|p, s| {
                Box::pin(async move {
                    let t = Instant::now();
                    for _ in 0..BATCH {
                        p.pilot_plugin_plugin()
                            .call_stats(&mut *s, "noop", &[])
                            .await?
                            .ok();
                    }
                    Ok(t.elapsed().as_secs_f64() * 1e6 / BATCH as f64)
                })
            }))
            .await
            .unwrap();
        raw.push(per_call);
    }
    row(
        "warm empty stat handler call on a live instance",
        "µs",
        ours,
        Some(("raw wasmtime call", raw)),
        "≤ 1 µs (raw 0.36 µs)",
    );
}

/// The whole path of a supervisor's call: over the channel to the plugin's actor on the plugin
/// threads, answered by a oneshot; against the same call on a sandbox the caller owns.
async fn round_trip(host: &PluginHost, plugin: &LoadedPlugin, sandbox: &mut Sandbox) {
    const ROUND_TRIPS: usize = 500;
    let events = pilot_host::plugin::no_events();
    let actor = plugin
        .actor(host, PluginSettings::default(), events, None)
        .unwrap();
    let (mut through, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..ROUND_TRIPS {
            let i = info();
            let r = actor
                .call("bench".into(), move |p, s| {
                    Box::pin(async move {
                        p.pilot_plugin_plugin()
                            .call_ready_check(s, "ok", &i, "{}")
                            .await
                    })
                })
                .await
                .unwrap();
            assert!(matches!(r, Ok(ReadyStatus::Ready)));
        }
        through.push(t.elapsed().as_secs_f64() * 1e6 / ROUND_TRIPS as f64);
        let t = Instant::now();
        for _ in 0..ROUND_TRIPS {
            ready_check(sandbox).await.unwrap();
        }
        direct.push(t.elapsed().as_secs_f64() * 1e6 / ROUND_TRIPS as f64);
    }
    row(
        "warm ready check through the plugin's actor (channel, plugin thread, oneshot)",
        "µs",
        through,
        Some(("the same call on a sandbox the caller owns", direct)),
        "≤ 50 µs (a ready check runs every 100 ms)",
    );
}

/// A fresh instance: store with its WASI context, instantiate, init; then the (empty) call.
async fn fresh_instance(sandbox: &mut Sandbox) {
    let mut fresh = Vec::new();
    for _ in 0..200 {
        sandbox.discard();
        let t = Instant::now();
        sandbox
            .call(call_fn(|_, _| Box::pin(async { Ok(()) })))
            .await
            .unwrap();
        fresh.push(t.elapsed().as_secs_f64() * 1e6);
    }
    row(
        "fresh instance (store, WASI context, instantiate, init)",
        "µs",
        fresh,
        None,
        "≤ 20 µs",
    );
}

/// A fresh instance of the control probe, with `init`, as every request to a control plugin makes
/// (its WASI and `wasi:http` contexts included); freed after the timing.
async fn fresh_control_instance(host: &PluginHost) {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins/control/control-probe.wasm");
    let Ok(AnyPlugin::Control(loaded)) = host.load_any(&file).await else {
        println!("| fresh control plugin instance | skipped: {} is missing or not a control plugin | | |", file.display());
        return;
    };
    let settings = PluginSettings {
        config: Some(serde_json::json!({ "events": [] })),
        ..Default::default()
    };
    let plugin = ControlPlugin::detached(host, &loaded, settings)
        .await
        .unwrap();
    let mut fresh = Vec::new();
    for _ in 0..220 {
        let took = plugin.time_fresh_instance().await.unwrap();
        fresh.push(took.as_secs_f64() * 1e6);
    }
    row(
        "fresh control plugin instance, as each request makes (store, WASI and HTTP contexts, instantiate, init)",
        "µs",
        fresh.split_off(20),
        None,
        "≤ 20 µs",
    );
}

/// How far past its deadline a spinning plugin is stopped.
async fn spin_deadline(host: &PluginHost, plugin: &LoadedPlugin) {
    let settings = || PluginSettings {
        call_timeout: Some(Duration::from_millis(50)),
        fuel: Some(u64::MAX / 4),
        ..Default::default()
    };
    let mut late = Vec::new();
    for _ in 0..10 {
        let mut spinner = plugin.sandbox(host, settings());
        let i = info();
        let t = Instant::now();
        let r = spinner
            .call(call_fn(move |p, s| {
                Box::pin(async move {
                    p.pilot_plugin_plugin()
                        .call_ready_check(s, "spin", &i, "{}")
                        .await
                })
            }))
            .await;
        assert!(r.is_err());
        late.push((t.elapsed().as_secs_f64() - 0.050) * 1e3);
    }
    row(
        "spinning plugin stopped past its 50 ms deadline",
        "ms",
        late,
        None,
        "≤ 2 ms",
    );

    languages::run().await;
}
