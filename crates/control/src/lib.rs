//! The control plane: the HTTP API, the dashboard and Prometheus metrics on a unix socket (on by
//! default, one per manifest) and optionally on TCP with a bearer token, plus Process Pilot's own TCP
//! protocol. `pilot-host ctl` is its client ([`crate::ctl`]).
//!
//! Starting is two steps so that nothing runs when the control plane cannot: [`bind`] makes the
//! listeners (refusing a second run of the same manifest), then [`Bound::serve`] serves them over a
//! running supervisor. The returned [`ControlPlane`] stops every listener and removes its socket and
//! generated token when dropped.
//!
//! Who may do what (the README's "Security model"): the socket and Process Pilot's protocol serve
//! pilot-host's own user and root, as the kernel names the peer ([`peer`]); HTTP on TCP serves whoever
//! holds the token, behind a guard (host check, back-off of token guessers, slots kept for token
//! holders) and, beyond loopback, over TLS ([`tls`]).

mod api;
mod backend;
mod compat;
mod dashboard;
mod error;
mod frame;
mod guard;
mod hosts;
mod metrics;
pub mod model;
pub mod paths;
pub mod peer;
mod plugins;
mod serve;
mod slots;
mod start;
mod stream;
mod throttle;
pub use pilot_core::tls;
mod view;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;

pub use self::api::MAX_BODY;
pub use self::backend::{Backend, Until};
pub use self::dashboard::CSP;
pub use self::paths::{token_bits, MIN_TOKEN_BITS};
pub use self::serve::{FIRST_REQUEST_TIMEOUT, HEADER_TIMEOUT};
pub use self::start::StartError;
pub use self::throttle::FREE as FREE_WRONG_TOKENS;
use pilot_core::manifest::{ControlServer as ManifestControl, TlsFiles};

/// The most connections served at once per listener, unless the manifest says otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 2048;

pub use pilot_core::secrets::TOKEN_VAR;

/// What to listen on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// The unix socket; `None`: none.
    pub socket: Option<PathBuf>,
    /// Whether `socket` is the default one, in the per-user folder pilot-host creates and checks.
    pub default_folder: bool,
    /// HTTP on TCP, with a bearer token.
    pub listen: Option<SocketAddr>,
    /// The file holding that token (else PILOT_HOST_TOKEN, else one is generated beside the socket).
    pub token_file: Option<PathBuf>,
    /// Process Pilot's protocol on TCP.
    pub process_pilot: Option<SocketAddr>,
    /// Whether every local user may use Process Pilot's protocol (else pilot-host's user and root).
    pub process_pilot_any_user: bool,
    /// Most connections served at once per listener.
    pub max_connections: usize,
    /// TLS on `listen`.
    pub tls: Option<TlsFiles>,
    /// Host names requests on `listen` may carry besides loopback and the listen address.
    pub allowed_hosts: Vec<String>,
}

impl Settings {
    /// Returns the settings of a run of `manifest_path`: its `control_server` section, then
    /// `--control-socket` over the socket's path; `enabled: false` (`--no-control`) turns all off.
    pub fn for_run(
        manifest_path: &Path,
        manifest: Option<&ManifestControl>,
        socket: Option<PathBuf>,
        enabled: bool,
    ) -> Settings {
        if !enabled {
            return Settings::default();
        }
        let m = manifest.cloned().unwrap_or_default();
        let explicit = socket.or(m.unix_socket);
        Settings {
            default_folder: explicit.is_none(),
            socket: Some(explicit.unwrap_or_else(|| paths::default_socket(manifest_path))),
            listen: m.listen,
            token_file: m.token_file,
            process_pilot: m.process_pilot,
            process_pilot_any_user: m.process_pilot_any_user,
            max_connections: m.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            tls: m.tls,
            allowed_hosts: m.allowed_hosts,
        }
    }
}

/// Files that belong to one run, removed when dropped.
#[derive(Debug, Default)]
struct Owned(Vec<PathBuf>);

impl Drop for Owned {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The HTTP listener on TCP and what guards it.
struct Http {
    listener: TcpListener,
    token: Arc<str>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    hosts: hosts::Hosts,
}

/// Listeners made by [`bind`], not serving yet.
pub struct Bound {
    unix: Option<UnixListener>,
    tcp: Option<Http>,
    process_pilot: Option<TcpListener>,
    process_pilot_any_user: bool,
    max: usize,
    owned: Owned,
    addresses: Addresses,
}

/// Where a control plane listens, for people and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Addresses {
    /// The unix socket.
    pub socket: Option<PathBuf>,
    /// The HTTP address (with the port the OS picked for port 0).
    pub http: Option<SocketAddr>,
    /// Whether it serves TLS.
    pub https: bool,
    /// Where the bearer token is, when it is in a file.
    pub token_file: Option<PathBuf>,
    /// Process Pilot's protocol.
    pub process_pilot: Option<SocketAddr>,
    /// Whether every local user may use it.
    pub process_pilot_any_user: bool,
}

/// Makes every listener of `settings` and prints where they are.
pub async fn bind(settings: &Settings) -> Result<Bound, StartError> {
    let mut owned = Owned::default();
    let mut addresses = Addresses::default();
    let unix = match &settings.socket {
        None => None,
        Some(path) => {
            if settings.default_folder {
                paths::ensure_private_dir(path.parent().unwrap_or(Path::new("/")))?;
            }
            paths::clear_stale(path).await?;
            let listener = paths::bind_private(path)?;
            owned.0.push(path.clone());
            addresses.socket = Some(path.clone());
            Some(listener)
        }
    };
    let tcp = match settings.listen {
        None => None,
        Some(addr) => Some(http(settings, addr, &mut owned, &mut addresses).await?),
    };
    let process_pilot = match settings.process_pilot {
        None => None,
        Some(addr) => {
            let listener = listen(addr, "Process Pilot's control protocol").await?;
            addresses.process_pilot = listener.local_addr().ok();
            Some(listener)
        }
    };
    addresses.process_pilot_any_user = settings.process_pilot_any_user;
    announce(&addresses);
    Ok(Bound {
        unix,
        tcp,
        process_pilot,
        process_pilot_any_user: settings.process_pilot_any_user,
        max: settings.max_connections.max(1),
        owned,
        addresses,
    })
}

/// Makes the HTTP listener on `addr`, with its token, TLS and hosts.
async fn http(
    settings: &Settings,
    addr: SocketAddr,
    owned: &mut Owned,
    addresses: &mut Addresses,
) -> Result<Http, StartError> {
    let tls = match &settings.tls {
        None => None,
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(
            &files.cert,
            &files.key,
        )?)),
    };
    let token = token(settings, owned, addresses)?;
    let listener = listen(addr, "the HTTP control API").await?;
    addresses.http = listener.local_addr().ok();
    addresses.https = tls.is_some();
    Ok(Http {
        hosts: hosts::Hosts::new(addr, settings.allowed_hosts.clone()),
        listener,
        token,
        tls,
    })
}

async fn listen(addr: SocketAddr, what: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| StartError::Bind {
        what,
        addr: addr.to_string(),
        source: e,
    })
}

/// The bearer token: from `token_file`, else PILOT_HOST_TOKEN, else generated beside the socket.
fn token(
    settings: &Settings,
    owned: &mut Owned,
    addresses: &mut Addresses,
) -> Result<Arc<str>, StartError> {
    if let Some(path) = &settings.token_file {
        addresses.token_file = Some(path.clone());
        return paths::read_token(path)
            .map(Arc::from)
            .map_err(|e| StartError::Token {
                path: path.clone(),
                source: e,
            });
    }
    if let Some(token) = std::env::var(TOKEN_VAR)
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        let bits = token_bits(token.trim());
        if bits < MIN_TOKEN_BITS {
            tracing::warn!("{TOKEN_VAR} holds a token of about {bits:.0} bits, which can be guessed; use one of at least {MIN_TOKEN_BITS:.0} bits (e.g. `openssl rand -hex 32`)");
        }
        return Ok(Arc::from(token.trim()));
    }
    let beside = settings
        .socket
        .clone()
        .unwrap_or_else(|| paths::runtime_dir().join(format!("{}.sock", std::process::id())));
    let path = paths::token_beside(&beside);
    let token = paths::write_token(&path)?;
    owned.0.push(path.clone());
    addresses.token_file = Some(path);
    Ok(Arc::from(token))
}

fn announce(a: &Addresses) {
    if let Some(socket) = &a.socket {
        tracing::info!(
            "control socket: {} (`pilot-host ctl status`)",
            socket.display()
        );
    }
    if let Some(http) = a.http {
        let scheme = if a.https { "https" } else { "http" };
        match &a.token_file {
            Some(file) => tracing::info!(
                "dashboard: {scheme}://{http}/ (bearer token in {})",
                file.display()
            ),
            None => {
                tracing::info!("dashboard: {scheme}://{http}/ (bearer token from {TOKEN_VAR})")
            }
        }
        if !http.ip().is_loopback() && !a.https {
            tracing::warn!("the control API on {http} is plain HTTP (`insecure_plaintext`): the token and the API cross the network unencrypted");
        }
    }
    if let Some(pp) = a.process_pilot {
        let who = if a.process_pilot_any_user {
            "every local user may use it"
        } else {
            "only pilot-host's own user and root may use it"
        };
        tracing::warn!("Process Pilot control protocol on {pp}: unauthenticated, as in Process Pilot (loopback only; {who})");
    }
}

impl Bound {
    /// Returns where the listeners are.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// Serves the API, the dashboard and the metrics over `backend` until the returned server drops.
    pub fn serve(self, backend: Backend) -> ControlPlane {
        let mut tasks = JoinSet::new();
        if let Some(unix) = self.unix {
            let router = api::router(backend.clone(), None);
            tasks.spawn(serve::unix_loop(unix, router, self.max));
        }
        if let Some(http) = self.tcp {
            let router = api::router(backend.clone(), Some(http.token.clone()));
            let router = guard::protect(router, guard::Guard::new(http.token, http.hosts));
            tasks.spawn(serve::tcp_loop(http.listener, http.tls, router, self.max));
        }
        if let Some(pp) = self.process_pilot {
            tasks.spawn(compat::accept_loop(
                pp,
                backend.clone(),
                self.max,
                self.process_pilot_any_user,
            ));
        }
        tasks.spawn(backend.feed_stats());
        ControlPlane {
            tasks,
            addresses: self.addresses,
            _owned: self.owned,
        }
    }
}

/// A serving control plane; dropping it closes every listener and connection and removes its files.
pub struct ControlPlane {
    tasks: JoinSet<()>,
    addresses: Addresses,
    _owned: Owned,
}

impl ControlPlane {
    /// Returns where it listens.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}
