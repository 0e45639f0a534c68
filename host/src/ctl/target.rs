//! Where `ctl` connects: `--url` (HTTP or HTTPS, with the token), `--socket`, or a socket it finds by
//! itself (from `--manifest`, or the only live one of this user's) in a folder it checks as `run`
//! does.

use std::path::PathBuf;

use super::{CtlArgs, Stop, Target};
use crate::control::paths;

/// Returns the control server `args` name.
pub(super) fn target(args: &CtlArgs) -> Result<Target, Stop> {
    if let Some(url) = &args.url {
        return url_target(url, args);
    }
    if let Some(socket) = &args.socket {
        return Ok(Target::Unix(socket.clone()));
    }
    check_runtime_dir()?;
    if let Some(manifest) = &args.manifest {
        if !manifest.exists() {
            return Err(Stop::Usage(format!(
                "manifest `{}` does not exist",
                manifest.display()
            )));
        }
        return Ok(Target::Unix(paths::default_socket(manifest)));
    }
    only_live_socket().map(Target::Unix)
}

/// Refuses this user's socket folder when `run` would refuse it: someone else's, or open to others'
/// writes (a server there could be anyone's).
fn check_runtime_dir() -> Result<(), Stop> {
    let dir = paths::runtime_dir();
    if std::fs::symlink_metadata(&dir).is_err() {
        return Ok(());
    }
    paths::check_private_dir(&dir).map_err(|problem| {
        Stop::Usage(format!(
            "control socket folder `{}` {problem}, so a socket in it may not be pilot-host's; fix it, or name a socket with `--socket PATH`",
            dir.display()
        ))
    })
}

fn url_target(url: &str, args: &CtlArgs) -> Result<Target, Stop> {
    let example = "write e.g. `http://127.0.0.1:7070` or `https://pilot.example.com:7070`";
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| Stop::Usage(format!("`--url {url}` is not a URL ({e}); {example}")))?;
    let (tls, port) = match uri.scheme_str() {
        None | Some("http") => (false, 80),
        Some("https") => (true, 443),
        Some(other) => {
            return Err(Stop::Usage(format!(
                "`--url {url}`: `{other}://` is not served; use `http://` or `https://`"
            )))
        }
    };
    if args.ca_file.is_some() && !tls {
        return Err(Stop::Usage(format!(
            "`--ca-file` verifies TLS, but `--url {url}` is plain HTTP; use `https://`"
        )));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| Stop::Usage(format!("`--url {url}` has no host; {example}")))?;
    let token = match &args.token_file {
        Some(f) => paths::read_token(f).map_err(|e| {
            Stop::Usage(format!("cannot read the token file `{}`: {e}", f.display()))
        })?,
        None => std::env::var(crate::control::TOKEN_VAR)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                Stop::Usage(
                    "`--url` needs a token: pass `--token-file FILE` or set PILOT_HOST_TOKEN"
                        .into(),
                )
            })?,
    };
    let authority = if authority.port().is_some() {
        authority.to_string()
    } else {
        format!("{authority}:{port}")
    };
    let tls = tls
        .then(|| crate::control::tls::client_config(args.ca_file.as_deref()))
        .transpose()
        .map_err(|e| Stop::Usage(e.to_string()))?;
    Ok(Target::Tcp {
        authority,
        token: token.trim().to_string(),
        tls,
    })
}

/// Finds the only socket in this user's folder that a live pilot-host serves.
fn only_live_socket() -> Result<PathBuf, Stop> {
    let dir = paths::runtime_dir();
    let mut live = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "sock")
            && std::os::unix::net::UnixStream::connect(&path).is_ok()
        {
            live.push(path);
        }
    }
    match live.len() {
        1 => Ok(live.remove(0)),
        0 => Err(Stop::Usage(format!(
            "no pilot-host of yours is running (no live control socket in `{}`); start one with `pilot-host run MANIFEST`, or pass `--socket`, `--manifest` or `--url`",
            dir.display()
        ))),
        _ => Err(Stop::Usage(format!(
            "{} pilot-hosts of yours are running; choose one with `--manifest FILE` or `--socket PATH`: {}",
            live.len(),
            live.iter().map(|p| format!("`{}`", p.display())).collect::<Vec<_>>().join(", ")
        ))),
    }
}
