//! The same plugin costs per guest language (Rust, C, Python, JavaScript), on each language's hostile
//! test plugin (its well-behaved `ok` ready check and `noop` stat handler): component size, first
//! compile, load from the compile cache, fresh instance, warm smallest call, warm ready check.
//! Medians (min–max) of repeated runs; the Rust plugin is the baseline of the ratios.

use std::path::PathBuf;
use std::time::Instant;

use pilot_host::manifest::PluginSettings;
use pilot_host::plugin::{call_fn, PluginHost, ReadyStatus, Sandbox};

/// One language's plugin: file, ready strategy and stat handler that answer at once.
struct Guest {
    lang: &'static str,
    file: &'static str,
    ok: &'static str,
    noop: &'static str,
}

const GUESTS: [Guest; 4] = [
    Guest {
        lang: "Rust",
        file: "hostile",
        ok: "ok",
        noop: "noop",
    },
    Guest {
        lang: "C",
        file: "hostile-c",
        ok: "c-ok",
        noop: "c-noop",
    },
    Guest {
        lang: "Python",
        file: "hostile-py",
        ok: "py-ok",
        noop: "py-noop",
    },
    Guest {
        lang: "JavaScript",
        file: "hostile-js",
        ok: "js-ok",
        noop: "js-noop",
    },
];

/// Median, min and max.
type Stat = (f64, f64, f64);

fn stat(mut v: Vec<f64>) -> Stat {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// One language's figures.
struct Figures {
    size_mb: f64,
    compile_ms: Stat,
    cache_ms: Stat,
    fresh_us: Stat,
    call_us: Stat,
    ready_us: Stat,
}

fn path(file: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins/hostile")
        .join(format!("{file}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask plugins` first",
        path.display()
    );
    path
}

/// Times `calls` in batches of `batch`; returns microseconds per call, per batch.
async fn per_call<F>(sandbox: &mut Sandbox, batches: usize, batch: usize, mut call: F) -> Vec<f64>
where
    F: AsyncFnMut(&mut Sandbox),
{
    let mut out = Vec::new();
    for _ in 0..batches {
        let t = Instant::now();
        for _ in 0..batch {
            call(sandbox).await;
        }
        out.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
    }
    out
}

async fn measure(guest: &Guest, cache: &std::path::Path) -> Figures {
    let file = path(guest.file);
    let wasm = std::fs::read(&file).unwrap();
    // Big components take seconds to compile: fewer rounds for them.
    let rounds = if wasm.len() > 4 << 20 { 3 } else { 5 };
    let cold = PluginHost::new(None).unwrap();
    let compiles = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            cold.engine.compile(&wasm).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let host = PluginHost::new(Some(cache.to_path_buf())).unwrap();
    host.engine.compile(&wasm).unwrap();
    let loads = (0..20)
        .map(|_| {
            let t = Instant::now();
            assert!(host.engine.compile(&wasm).unwrap().1, "not from the cache");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();

    let plugin = host.load_file(&file).await.unwrap();
    let mut sandbox = plugin.sandbox(&host, PluginSettings::default());
    let mut fresh = Vec::new();
    for _ in 0..50 {
        sandbox.discard();
        let t = Instant::now();
        sandbox
            .call(call_fn(|_, _| Box::pin(async { Ok(()) })))
            .await
            .unwrap();
        fresh.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let noop = guest.noop;
    let calls = per_call(&mut sandbox, 9, 500, async |s: &mut Sandbox| {
        let r = s
            .call(call_fn(move |p, st| {
                Box::pin(async move { p.pilot_plugin_plugin().call_stats(st, noop, &[]).await })
            }))
            .await
            .unwrap();
        assert!(r.is_ok(), "{r:?}");
    })
    .await;
    let ok = guest.ok;
    let readies = per_call(&mut sandbox, 9, 500, async |s: &mut Sandbox| {
        let info = pilot_host::plugin::sample_process_info();
        let r = s
            .call(call_fn(move |p, st| {
                Box::pin(async move {
                    p.pilot_plugin_plugin()
                        .call_ready_check(st, ok, &info, "{}")
                        .await
                })
            }))
            .await
            .unwrap();
        assert!(matches!(r, Ok(ReadyStatus::Ready)), "{r:?}");
    })
    .await;
    Figures {
        size_mb: wasm.len() as f64 / 1e6,
        compile_ms: stat(compiles),
        cache_ms: stat(loads),
        fresh_us: stat(fresh),
        call_us: stat(calls),
        ready_us: stat(readies),
    }
}

fn cell((med, min, max): Stat, unit: &str, base: Option<Stat>) -> String {
    let ratio = base.map_or(String::new(), |b| format!("; {:.1}×", med / b.0));
    format!("{med:.3} {unit} ({min:.3}–{max:.3}{ratio})")
}

/// Measures every language and prints the README's table.
pub async fn run() {
    let cache = std::env::temp_dir().join(format!("pilot-bench-langs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    println!();
    println!("Per language, on each hostile test plugin's `ok` / `noop`; ratios against Rust:");
    println!();
    println!("| language | size | first compile | cache load | fresh instance | warm smallest call | warm ready check |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut rust: Option<Figures> = None;
    for guest in &GUESTS {
        let f = measure(guest, &cache).await;
        let b = rust.as_ref();
        println!(
            "| {} | {:.2} MB | {} | {} | {} | {} | {} |",
            guest.lang,
            f.size_mb,
            cell(f.compile_ms, "ms", b.map(|b| b.compile_ms)),
            cell(f.cache_ms, "ms", b.map(|b| b.cache_ms)),
            cell(f.fresh_us, "µs", b.map(|b| b.fresh_us)),
            cell(f.call_us, "µs", b.map(|b| b.call_us)),
            cell(f.ready_us, "µs", b.map(|b| b.ready_us)),
        );
        if rust.is_none() {
            rust = Some(f);
        }
    }
    let _ = std::fs::remove_dir_all(&cache);
}
