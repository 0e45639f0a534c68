//! What a plugin tries beyond its grants: file opens outside its folders, connects to addresses it was
//! not granted, UDP, name lookups and environment reads. `plugin check` records each attempt as a
//! finding; `run` logs them at debug level.
//!
//! Sockets are observed through WASI's socket address check. Name lookups, environment reads and path
//! operations are observed by wrapping those WASI host functions in the linker, shared by `run` and
//! `check`: a wrapper notes the attempt, then hands the call to the WASI implementation unchanged. A
//! path the guest's libc cannot map to a preopened folder never reaches the host, so `plugin check`
//! offers the plugin an empty, read-only folder as `/`: every absolute path then arrives at a wrapper,
//! which refuses it (`access`) and records it, as are listing that folder and reading its metadata
//! through the descriptor itself.
//!
//! Not observable: which environment variable a plugin looked for (the guest reads the whole
//! environment at once; without `allow_env` it is empty), and anything the plugin decides not to try.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;
use wasmtime_wasi::cli::WasiCliView;
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::bindings::cli::environment;
use wasmtime_wasi::p2::bindings::filesystem::preopens;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self as fs, Descriptor, DescriptorFlags, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{self, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{self, Network};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsView};

use super::check::world::StandIn;
use super::store::StoreState;

/// The WASI interfaces wrapped, at the version wasmtime-wasi 48 defines them (guests built against any
/// 0.2.x link to these).
const PREOPENS: &str = "wasi:filesystem/preopens@0.2.12";
const FS_TYPES: &str = "wasi:filesystem/types@0.2.12";
const ENVIRONMENT: &str = "wasi:cli/environment@0.2.12";
const NAME_LOOKUP: &str = "wasi:sockets/ip-name-lookup@0.2.12";

/// One access a plugin tried that its grants do not allow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Attempt {
    /// What it tried: `open`, `list`, `stat`, `write`, `connect`, `listen`, `udp`, `lookup`,
    /// `environment`, or (control plugins) `http` and `control`.
    pub kind: &'static str,
    /// What it tried it on: a path, an address, a host name, or empty for `environment`.
    pub target: String,
}

impl Attempt {
    /// A socket use the address check refused.
    pub fn socket(usage: SocketAddrUse, addr: SocketAddr) -> Attempt {
        let kind = match usage {
            SocketAddrUse::TcpConnect => "connect",
            SocketAddrUse::TcpBind | SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => {
                "listen"
            }
            _ => "udp",
        };
        Attempt {
            kind,
            target: addr.to_string(),
        }
    }
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = pilot_core::manifest::escape_controls(&self.target);
        match self.kind {
            "open" => write!(f, "tried to open `{target}`: not granted"),
            "list" => write!(f, "tried to list `{target}`: not granted"),
            "stat" => write!(f, "tried to read the metadata of `{target}`: not granted"),
            "write" => write!(f, "tried to change `{target}`: not granted for writing"),
            "connect" => write!(f, "tried to connect to `{target}`: not granted"),
            "listen" => write!(f, "tried to listen on `{target}`: never granted"),
            "udp" => write!(f, "tried to use UDP with `{target}`: never granted"),
            "http" => write!(
                f,
                "tried an HTTP request to `{target}`: not granted (grant it in `grants.http`)"
            ),
            "control" if target == "rate" => {
                write!(f, "asked for changes faster than its rate limit allows")
            }
            "control" => write!(
                f,
                "tried the control call `{target}`: not granted (grant it in `grants.control`)"
            ),
            "lookup" => write!(
                f,
                "tried to look up the host name `{target}`: never granted (grant `allow_tcp` with the name; pilot-host resolves it)"
            ),
            _ => write!(
                f,
                "tried to read its environment: not granted (grant variables with `allow_env`)"
            ),
        }
    }
}

/// Notes attempts: into the list `plugin check` reads, or else the debug log. Under `plugin check`
/// it also leads to the stand-in world of the check.
#[derive(Clone)]
pub struct Recorder {
    plugin: Arc<str>,
    attempts: Option<Arc<Mutex<Vec<Attempt>>>>,
    stand_in: Option<Arc<StandIn>>,
}

impl Recorder {
    /// Returns, under `plugin check`, the stand-in that granted control calls and outgoing
    /// requests reach instead of the supervisor and the network.
    pub fn stand_in(&self) -> Option<&Arc<StandIn>> {
        self.stand_in.as_ref()
    }

    /// Notes `attempt` once.
    pub fn record(&self, attempt: Attempt) {
        match &self.attempts {
            Some(list) => {
                let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
                if !list.contains(&attempt) {
                    list.push(attempt);
                }
            }
            None => tracing::debug!("plugin `{}` {attempt}", self.plugin),
        }
    }
}

/// The watch of one Store: the recorder, and which descriptors are the decoy `/` or stand for which
/// guest path (for messages).
#[derive(Clone)]
pub struct Watch {
    recorder: Recorder,
    decoys: HashSet<u32>,
    paths: HashMap<u32, String>,
    env_granted: bool,
}

impl Watch {
    /// Creates the watch of a Store of plugin `plugin`.
    pub fn new(plugin: &str, observed: Option<super::store::Observed>, env_granted: bool) -> Watch {
        Watch {
            recorder: Recorder {
                plugin: plugin.into(),
                stand_in: observed.as_ref().map(|o| o.stand_in.clone()),
                attempts: observed.map(|o| o.attempts),
            },
            decoys: HashSet::new(),
            paths: HashMap::new(),
            env_granted,
        }
    }

    /// Returns the recorder, for callbacks that outlive a borrow of the Store.
    pub fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }

    /// Notes `attempt`.
    pub fn record(&self, attempt: Attempt) {
        self.recorder.record(attempt);
    }

    fn observing(&self) -> bool {
        self.recorder.attempts.is_some()
    }

    /// Returns the guest path of `rel` under descriptor `fd`.
    fn path(&self, fd: u32, rel: &str) -> String {
        let base = self.paths.get(&fd).map_or("", String::as_str);
        let rel = rel.trim_start_matches("./");
        match (base.trim_end_matches('/'), rel) {
            ("", ".") | ("", "") => "/".into(),
            (base, "." | "") => format!("{base}/"),
            (base, rel) => format!("{base}/{rel}"),
        }
    }
}

/// Wraps the observed WASI functions in `linker` (after WASI itself was added to it).
pub fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker
        .instance(PREOPENS)?
        .func_wrap("get-directories", get_directories)?;
    let mut types = linker.instance(FS_TYPES)?;
    types.func_wrap_async("[method]descriptor.open-at", open_at)?;
    types.func_wrap_async("[method]descriptor.stat-at", stat_at)?;
    types.func_wrap_async("[method]descriptor.metadata-hash-at", metadata_hash_at)?;
    types.func_wrap_async("[method]descriptor.readlink-at", readlink_at)?;
    types.func_wrap_async("[method]descriptor.create-directory-at", create_dir_at)?;
    types.func_wrap_async("[method]descriptor.unlink-file-at", unlink_file_at)?;
    types.func_wrap_async("[method]descriptor.remove-directory-at", remove_dir_at)?;
    types.func_wrap_async("[method]descriptor.read-directory", read_directory)?;
    types.func_wrap_async("[method]descriptor.stat", stat)?;
    types.func_wrap_async("[method]descriptor.metadata-hash", metadata_hash)?;
    linker
        .instance(ENVIRONMENT)?
        .func_wrap("get-environment", get_environment)?;
    linker
        .instance(NAME_LOOKUP)?
        .func_wrap("resolve-addresses", resolve_addresses)?;
    linker.allow_shadowing(false);
    Ok(())
}

type Preopens = Vec<(Resource<Descriptor>, String)>;

fn get_directories(
    mut store: StoreContextMut<'_, StoreState>,
    (): (),
) -> wasmtime::Result<(Preopens,)> {
    let state = store.data_mut();
    let dirs = preopens::Host::get_directories(&mut state.filesystem())?;
    if state.watch.observing() {
        for (fd, name) in &dirs {
            if name == "/" {
                state.watch.decoys.insert(fd.rep());
            } else {
                state.watch.paths.insert(fd.rep(), name.clone());
            }
        }
    }
    Ok((dirs,))
}

/// Returns `Err(access)` after recording, when `fd` is the decoy `/`; `None` to go on.
fn refuse(state: &mut StoreState, fd: u32, path: &str, kind: &'static str) -> Option<ErrorCode> {
    if !state.watch.decoys.contains(&fd) {
        return None;
    }
    let target = state.watch.path(fd, path);
    state.watch.record(Attempt { kind, target });
    Some(ErrorCode::Access)
}

/// Converts a WASI filesystem error into the code the guest sees (or a trap).
fn code(state: &mut StoreState, e: wasmtime_wasi::p2::FsError) -> wasmtime::Result<ErrorCode> {
    fs::Host::convert_error_code(&mut state.filesystem(), e)
}

type Async<'a, R> = Box<dyn std::future::Future<Output = wasmtime::Result<R>> + Send + 'a>;

fn open_at(
    mut store: StoreContextMut<'_, StoreState>,
    (fd, path_flags, path, oflags, flags): (
        Resource<Descriptor>,
        PathFlags,
        String,
        OpenFlags,
        DescriptorFlags,
    ),
) -> Async<'_, (Result<Resource<Descriptor>, ErrorCode>,)> {
    Box::new(async move {
        let state = store.data_mut();
        let writes = flags.contains(DescriptorFlags::WRITE)
            || oflags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE);
        let kind = if writes { "write" } else { "open" };
        let at = fd.rep();
        if let Some(e) = refuse(state, at, &path, kind) {
            return Ok((Err(e),));
        }
        let shown = state.watch.observing().then(|| state.watch.path(at, &path));
        let result = state
            .filesystem()
            .open_at(fd, path_flags, path, oflags, flags)
            .await;
        match result {
            Ok(new) => {
                if let Some(shown) = shown {
                    state.watch.paths.insert(new.rep(), shown);
                }
                Ok((Ok(new),))
            }
            Err(e) => {
                let e = code(state, e)?;
                if let (Some(target), ErrorCode::NotPermitted | ErrorCode::ReadOnly) = (shown, e) {
                    state.watch.record(Attempt {
                        kind: "write",
                        target,
                    });
                }
                Ok((Err(e),))
            }
        }
    })
}

/// Defines a wrapper for a `descriptor.*-at` method with a path and no other tracking.
macro_rules! at_wrapper {
    ($name:ident, $method:ident, $kind:literal, ($($arg:ident: $ty:ty),*), $ret:ty) => {
        fn $name(
            mut store: StoreContextMut<'_, StoreState>,
            (fd, $($arg,)* path): (Resource<Descriptor>, $($ty,)* String),
        ) -> Async<'_, (Result<$ret, ErrorCode>,)> {
            Box::new(async move {
                let state = store.data_mut();
                if let Some(e) = refuse(state, fd.rep(), &path, $kind) {
                    return Ok((Err(e),));
                }
                let result = state.filesystem().$method(fd, $($arg,)* path).await;
                match result {
                    Ok(v) => Ok((Ok(v),)),
                    Err(e) => Ok((Err(code(state, e)?),)),
                }
            })
        }
    };
}

at_wrapper!(stat_at, stat_at, "open", (pf: PathFlags), fs::DescriptorStat);
at_wrapper!(
    metadata_hash_at,
    metadata_hash_at,
    "open",
    (pf: PathFlags),
    fs::MetadataHashValue
);
at_wrapper!(readlink_at, readlink_at, "open", (), String);
at_wrapper!(create_dir_at, create_directory_at, "write", (), ());
at_wrapper!(unlink_file_at, unlink_file_at, "write", (), ());
at_wrapper!(remove_dir_at, remove_directory_at, "write", (), ());

/// Defines a wrapper for a method of the descriptor itself (no path): refused on the decoy `/`.
macro_rules! self_wrapper {
    ($name:ident, $method:ident, $kind:literal, $ret:ty) => {
        fn $name(
            mut store: StoreContextMut<'_, StoreState>,
            (fd,): (Resource<Descriptor>,),
        ) -> Async<'_, (Result<$ret, ErrorCode>,)> {
            Box::new(async move {
                let state = store.data_mut();
                if let Some(e) = refuse(state, fd.rep(), ".", $kind) {
                    return Ok((Err(e),));
                }
                let result = state.filesystem().$method(fd).await;
                match result {
                    Ok(v) => Ok((Ok(v),)),
                    Err(e) => Ok((Err(code(state, e)?),)),
                }
            })
        }
    };
}

self_wrapper!(
    read_directory,
    read_directory,
    "list",
    Resource<fs::DirectoryEntryStream>
);
self_wrapper!(stat, stat, "stat", fs::DescriptorStat);
self_wrapper!(metadata_hash, metadata_hash, "stat", fs::MetadataHashValue);

fn get_environment(
    mut store: StoreContextMut<'_, StoreState>,
    (): (),
) -> wasmtime::Result<(Vec<(String, String)>,)> {
    let state = store.data_mut();
    if !state.watch.env_granted {
        state.watch.record(Attempt {
            kind: "environment",
            target: String::new(),
        });
    }
    Ok((environment::Host::get_environment(&mut state.cli())?,))
}

fn resolve_addresses(
    mut store: StoreContextMut<'_, StoreState>,
    (net, name): (Resource<Network>, String),
) -> wasmtime::Result<(Result<Resource<ResolveAddressStream>, network::ErrorCode>,)> {
    let state = store.data_mut();
    state.watch.record(Attempt {
        kind: "lookup",
        target: name.clone(),
    });
    let mut sockets = state.sockets();
    match ip_name_lookup::Host::resolve_addresses(&mut sockets, net, name) {
        Ok(stream) => Ok((Ok(stream),)),
        Err(e) => Ok((Err(network::Host::convert_error_code(&mut sockets, e)?),)),
    }
}
