//! Writing a project into place without trusting the folder it goes into: the files are staged in a
//! folder made exclusively under a random name (0700 while it fills), each folder and file in it is
//! made new relative to its parent's descriptor and never through a link, and the staged folder is
//! renamed into place only if nothing took that name meanwhile. A name planted in a shared folder
//! (`/tmp`, say) can neither redirect nor clobber anything.

use std::fs::File as StdFile;
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, renameat2, OFlag, RenameFlags, AT_FDCWD};
use nix::sys::stat::{fchmod, mkdirat, Mode};

use super::files::File;

/// Writes `files` as the new folder `dir` (replacing it when `existed`, an empty folder).
pub fn write_project(dir: &Path, parent: &Path, existed: bool, files: &[File]) -> io::Result<()> {
    let staging = tempfile::Builder::new()
        .prefix(".pilot-plugin-new-")
        .tempdir_in(parent)?;
    let root = open_dir(AT_FDCWD, staging.path())?;
    for f in files {
        write_file(&root, &f.path, &f.contents, f.executable)?;
    }
    fchmod(&root, Mode::from_bits_truncate(0o777 & !umask()))?;
    if existed {
        // An empty folder: `remove_dir` never follows a link put there meanwhile.
        std::fs::remove_dir(dir)?;
    }
    renameat2(
        AT_FDCWD,
        staging.path(),
        AT_FDCWD,
        dir,
        RenameFlags::RENAME_NOREPLACE,
    )?;
    let _kept = staging.keep();
    Ok(())
}

/// Opens the folder `path` under `at`, refusing a link.
fn open_dir<Fd: std::os::fd::AsFd>(at: Fd, path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(openat(at, path, flags, Mode::empty())?)
}

/// Writes the new file `relative` (with its new folders) under `root`.
fn write_file(root: &OwnedFd, relative: &str, contents: &[u8], executable: bool) -> io::Result<()> {
    let parts: Vec<&str> = relative.split('/').collect();
    let (name, folders) = parts.split_last().expect("split yields one part at least");
    let mut dir = root.try_clone()?;
    for folder in folders {
        match mkdirat(&dir, *folder, Mode::from_bits_truncate(0o777)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        dir = open_dir(&dir, Path::new(folder))?;
    }
    let mode = if executable { 0o777 } else { 0o666 };
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(&dir, *name, flags, Mode::from_bits_truncate(mode))?;
    StdFile::from(fd).write_all(contents)
}

/// Returns the process's umask, read from `/proc/self/status` (setting it to read it would change it
/// for every thread meanwhile); 022 when it cannot be read.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}
