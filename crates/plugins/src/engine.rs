//! The one wasmtime engine: fuel and epoch interruption on, an epoch ticker on an OS thread that runs
//! only while plugin code runs, and a compile cache of serialized components on disk.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// How often the epoch advances while a plugin runs: the granularity of wall-clock deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The engine, its epoch ticker, the threads plugins run on and the compile cache.
#[derive(Clone)]
pub struct PluginEngine {
    /// The wasmtime engine.
    pub engine: Engine,
    /// The threads plugin code runs on.
    pub threads: super::threads::PluginThreads,
    ticker: Arc<Ticker>,
    cache_dir: Option<PathBuf>,
}

struct Ticker {
    active: AtomicUsize,
    parked: AtomicBool,
    wake: Condvar,
    lock: Mutex<()>,
}

/// Idle ticks before the ticker parks: calls in quick succession then cost no wake-up.
const IDLE_TICKS_BEFORE_PARKING: u32 = 100;

/// Keeps the epoch ticking while alive; one per running plugin call.
pub struct Ticking(Arc<Ticker>);

impl Drop for Ticking {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where compiled plugins are cached unless `PILOT_HOST_CACHE_DIR` says otherwise.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PILOT_HOST_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("pilot-host").join("components"))
}

/// The pooling allocator's slots, sized for the largest plugin accepted and kept warm between
/// instances.
///
/// A control plugin serves every request on a fresh instance, so an instance must be cheap: measured
/// here (`cargo bench --bench plugins`, a trivial Rust plugin: store, instantiate, `init`), 43 µs with
/// a fresh mapping per memory, 34 µs from the pool, 17 µs when a slot's first 2 MiB of memory and its
/// tables stay resident. Resetting a slot with `madvise` costs a TLB shoot-down on every CPU running
/// pilot-host's threads and page faults on the next use; below the thresholds wasmtime clears the slot
/// with `memset` instead. Larger memories (a Python plugin, a memory bomb) are still given back.
///
/// The pool reserves address space, not memory: each slot can hold a plugin's largest memory cap
/// (4 GiB, wasm32's limit). Unused warm slots are capped so their resident pages stay bounded (16 slots
/// of at most 2 MiB).
fn pool_config() -> wasmtime::PoolingAllocationConfig {
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.max_memory_size(4 << 30)
        // Python and JavaScript components: many core instances, large function tables.
        .table_elements(200_000)
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10)
        .max_unused_warm_slots(16);
    pool
}

impl PluginEngine {
    /// Creates the engine; `cache_dir` of `None` disables the compile cache.
    pub fn new(cache_dir: Option<PathBuf>) -> wasmtime::Result<PluginEngine> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(512 * 1024);
        // Instances come from a pool of slots (see `pool_config`), their memories from copy-on-write
        // images of the compiled plugin.
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool_config()));
        let engine = Engine::new(&config)?;
        let ticker = Arc::new(Ticker {
            active: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            wake: Condvar::new(),
            lock: Mutex::new(()),
        });
        let weak_engine = engine.weak();
        let t = ticker.clone();
        std::thread::Builder::new()
            .name("pilot-epoch".into())
            .spawn(move || {
                let mut idle = 0;
                loop {
                    idle = if t.active.load(Ordering::SeqCst) == 0 {
                        idle + 1
                    } else {
                        0
                    };
                    if idle >= IDLE_TICKS_BEFORE_PARKING {
                        let guard = t.lock.lock().unwrap_or_else(|p| p.into_inner());
                        t.parked.store(true, Ordering::SeqCst);
                        let _guard = t
                            .wake
                            .wait_while(guard, |_| t.active.load(Ordering::SeqCst) == 0)
                            .unwrap_or_else(|p| p.into_inner());
                        t.parked.store(false, Ordering::SeqCst);
                        idle = 0;
                    }
                    std::thread::sleep(EPOCH_TICK);
                    match weak_engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .map_err(|e| wasmtime::format_err!("cannot start the epoch ticker: {e}"))?;
        let threads = super::threads::PluginThreads::new()
            .map_err(|e| wasmtime::format_err!("cannot start the plugin threads: {e}"))?;
        Ok(PluginEngine {
            engine,
            threads,
            ticker,
            cache_dir,
        })
    }

    /// Starts the epoch ticking until the returned guard drops.
    pub fn ticking(&self) -> Ticking {
        self.ticker.active.fetch_add(1, Ordering::SeqCst);
        if self.ticker.parked.load(Ordering::SeqCst) {
            // Wake the parked ticker (under its lock, so the wake-up cannot be missed).
            let _guard = self.ticker.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.ticker.wake.notify_all();
        }
        Ticking(self.ticker.clone())
    }

    fn cache_path(&self, wasm: &[u8]) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let digest = Sha256::digest(wasm);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Some(dir.join(format!("{hex}-{:016x}.cwasm", engine_hash.finish())))
    }

    /// Compiles `wasm`, or loads it from the cache; returns the component and whether it was cached.
    pub fn compile(&self, wasm: &[u8]) -> wasmtime::Result<(Component, bool)> {
        let cached = self.cache_path(wasm);
        if let Some(path) = cached.as_deref().filter(|p| written_by_us(p)) {
            // SAFETY: the file is ours (owned by this user, not writable by others) and was written by
            // `Component::serialize` of an engine with the same compatibility hash (it is in the name).
            match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => tracing::debug!("ignoring cached `{}`: {e}", path.display()),
            }
        }
        let component = Component::new(&self.engine, wasm)?;
        if let Some(path) = cached {
            if let Err(e) = store_artifact(&path, &component) {
                tracing::debug!(
                    "cannot cache the compiled plugin at `{}`: {e}",
                    path.display()
                );
            }
        }
        Ok((component, false))
    }
}

impl PluginEngine {
    /// Compiles `wasm` without the cache (for `plugin check`'s compile time).
    pub fn compile_fresh(&self, wasm: &[u8]) -> wasmtime::Result<Component> {
        Component::new(&self.engine, wasm)
    }
}

/// Returns whether `path` exists and was plausibly written by this user for us: owned by us, and not
/// writable by group or others (a file someone else could swap must never be deserialized).
fn written_by_us(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let uid = nix::unistd::geteuid().as_raw();
    meta.is_file() && meta.uid() == uid && meta.permissions().mode() & 0o022 == 0
}

fn store_artifact(path: &Path, component: &Component) -> std::io::Result<()> {
    let dir = path.parent().expect("cache files live in a folder");
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)
}
