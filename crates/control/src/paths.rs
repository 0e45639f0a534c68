//! Where the control socket and the token live, and the checks that keep them private: the folder is
//! ours and closed to others, the socket and the token are 0600, a stale socket is replaced and a live
//! one refused.

use std::io::Write as _;
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _,
    PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::StartError;
pub use pilot_core::secrets::{read_token, token_bits, MIN_TOKEN_BITS};

/// Returns the folder of this user's control sockets: `$XDG_RUNTIME_DIR/pilot-host`, or
/// `/tmp/pilot-host-$UID` without it.
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("pilot-host"),
        None => std::env::temp_dir().join(format!("pilot-host-{}", nix::unistd::geteuid())),
    }
}

/// Returns the default control socket of the manifest at `manifest`: `NAME-HASH.sock` in
/// [`runtime_dir`], where HASH is taken from the manifest's canonical path.
pub fn default_socket(manifest: &Path) -> PathBuf {
    let canonical = std::fs::canonicalize(manifest).unwrap_or_else(|_| {
        std::path::absolute(manifest).unwrap_or_else(|_| manifest.to_path_buf())
    });
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let stem: String = canonical
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    runtime_dir().join(format!("{stem}-{hash}.sock"))
}

/// Returns the file a generated token is written to, beside `socket`.
pub fn token_beside(socket: &Path) -> PathBuf {
    socket.with_extension("token")
}

/// Creates [`runtime_dir`] (0700) if missing, and refuses it if it is someone else's or others can
/// write to it.
pub fn ensure_private_dir(dir: &Path) -> Result<(), StartError> {
    let folder = |problem| StartError::Folder {
        dir: dir.to_path_buf(),
        problem,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| folder(e.to_string()))?;
    check_private_dir(dir).map_err(folder)
}

/// Returns what is wrong with `dir` as a folder of control sockets: it must be a folder (not a
/// link), belong to this user, and be closed to others' writes.
pub fn check_private_dir(dir: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() {
        Err("is not a folder".to_string())
    } else if meta.uid() != nix::unistd::geteuid().as_raw() {
        Err(format!("belongs to user {}, not to you", meta.uid()))
    } else if meta.permissions().mode() & 0o022 != 0 {
        Err(format!(
            "can be written by others (mode {:o}); run `chmod 700 {}`",
            meta.permissions().mode() & 0o777,
            dir.display()
        ))
    } else {
        Ok(())
    }
}

/// Makes room for a socket at `path`: removes a stale socket of a run that is gone, refuses a live one
/// (naming the pid that serves it) and anything that is not a socket.
pub async fn clear_stale(path: &Path) -> Result<(), StartError> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(_) => return Ok(()),
        Ok(m) => m,
    };
    if !meta.file_type().is_socket() {
        return Err(StartError::NotASocket(path.to_path_buf()));
    }
    match tokio::net::UnixStream::connect(path).await {
        Ok(stream) => {
            let pid = stream
                .peer_cred()
                .ok()
                .and_then(|c| c.pid())
                .map_or_else(|| "unknown".to_string(), |p| p.to_string());
            Err(StartError::AlreadyRunning {
                socket: path.to_path_buf(),
                pid,
            })
        }
        Err(_) => {
            tracing::info!(
                "removing the stale control socket `{}` of a run that is gone",
                path.display()
            );
            std::fs::remove_file(path).map_err(|e| StartError::Io {
                what: format!("remove the stale socket `{}`", path.display()),
                source: e,
            })
        }
    }
}

/// Binds the control socket at `path` under the umask 0177, so that it is born 0600 (no moment
/// exists where others may connect), then sets 0600 explicitly. The umask is the process's: a file
/// another thread makes meanwhile is born more private, never less.
pub fn bind_private(path: &Path) -> Result<tokio::net::UnixListener, StartError> {
    use nix::sys::stat::{umask, Mode};
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = tokio::net::UnixListener::bind(path);
    umask(old);
    let listener = bound.map_err(|e| StartError::Bind {
        what: "the control socket",
        addr: format!("`{}`", path.display()),
        source: e,
    })?;
    make_private(path)?;
    Ok(listener)
}

/// Restricts the socket at `path` to its owner (0600).
pub fn make_private(path: &Path) -> Result<(), StartError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        StartError::Io {
            what: format!("restrict `{}` to its owner", path.display()),
            source: e,
        }
    })
}

/// Generates a token (32 random bytes as hex) into a new 0600 file at `path`. A token file that a
/// run of this user left behind is replaced; anything else there is refused, never removed.
pub fn write_token(path: &Path) -> Result<String, StartError> {
    let io = |e: std::io::Error| StartError::Io {
        what: format!("write the token file `{}`", path.display()),
        source: e,
    };
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if left_behind(path) {
        tracing::info!(
            "replacing the token file `{}` of a run that is gone",
            path.display()
        );
        std::fs::remove_file(path).map_err(io)?;
    }
    // `create_new` also refuses a link, even one to nowhere.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => StartError::TokenInTheWay(path.to_path_buf()),
            _ => io(e),
        })?;
    file.write_all(format!("{token}\n").as_bytes())
        .map_err(io)?;
    Ok(token)
}

/// Returns whether `path` holds exactly what [`write_token`] writes, in a file of this user's that
/// only they can read (a run that was killed leaves it behind).
fn left_behind(path: &Path) -> bool {
    use std::io::Read as _;
    let Ok(mut file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    else {
        return false;
    };
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let mut text = String::new();
    meta.is_file()
        && meta.uid() == nix::unistd::geteuid().as_raw()
        && meta.permissions().mode() & 0o777 == 0o600
        && meta.len() == 65
        && file.read_to_string(&mut text).is_ok()
        && text.len() == 65
        && text.ends_with('\n')
        && text[..64]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_manifest_path_has_its_own_socket_named_after_it() {
        let a = default_socket(Path::new("/srv/a/stack.yaml"));
        let b = default_socket(Path::new("/srv/b/stack.yaml"));
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(runtime_dir().as_path()));
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("stack-") && name.ends_with(".sock"),
            "{name}"
        );
        assert_eq!(token_beside(&a).extension().unwrap(), "token");
    }
}
