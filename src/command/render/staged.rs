//! The files of one deployment under `render --out`, written while other hosts still render
//! and put in place only once every host has rendered: an error anywhere leaves no file of
//! this render behind, and a file is never seen partial or wider than its mode.
//!
//! A deployment rendered for the first time is written whole into a hidden directory
//! beside its own, renamed into place on [`StagedDeployment::commit`]: one rename for its
//! 33 files. Over an earlier render, each file is written beside its target under a hidden
//! name and renamed over it; a file already there with the same bytes and mode is left
//! alone, so a render over the last one writes only what changed and frees no inode for
//! the rest (on ext4 without a journal, allocating an inode scans past every inode freed
//! in the last minutes: 33,000 files replaced cost seconds of the kernel's time). Dropped
//! uncommitted, whatever was staged is removed. Every call goes through a directory's
//! descriptor, so the kernel walks a file's few components, not the whole `--out` path.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use synprov::render::RenderedFile;

/// The files of one deployment, staged and not yet in place.
pub struct StagedDeployment {
    dir: PathBuf,
    /// The directory the files are written in: `dir`, or the hidden one staged for it.
    fd: OwnedFd,
    pending: Pending,
}

/// What [`StagedDeployment::commit`] renames.
enum Pending {
    /// The hidden directory holding every file, for a deployment not rendered before.
    Directory(PathBuf),
    /// Staged name and target of each changed file, relative to the deployment's directory.
    Files(Vec<(String, String)>),
}

impl StagedDeployment {
    /// Writes `files` staged for `dir`, but none that `dir` already holds as it is.
    pub fn write(dir: &Path, files: &[RenderedFile]) -> std::io::Result<StagedDeployment> {
        let mut staged = if dir.exists() {
            StagedDeployment {
                dir: dir.to_path_buf(),
                fd: open_dir(dir)?,
                pending: Pending::Files(Vec::with_capacity(files.len())),
            }
        } else {
            let hidden = staged_path(dir);
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)?;
            }
            // A directory left by an interrupted render is replaced.
            match std::fs::remove_dir_all(&hidden) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            std::fs::create_dir(&hidden)?;
            StagedDeployment {
                dir: dir.to_path_buf(),
                fd: open_dir(&hidden)?,
                pending: Pending::Directory(hidden),
            }
        };
        for parent in parents(files) {
            match rustix::fs::mkdirat(&staged.fd, parent, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(staged.error(parent, e)),
            }
        }
        let fresh = matches!(staged.pending, Pending::Directory(_));
        for file in files {
            let bytes = file.contents.as_bytes();
            if fresh {
                staged
                    .create(&file.path, bytes, file.mode)
                    .map_err(|e| staged.error(&file.path, e))?;
            } else if !staged.holds(&file.path, bytes, file.mode)? {
                let name = staged_name(&file.path);
                staged
                    .create(&name, bytes, file.mode)
                    .map_err(|e| staged.error(&file.path, e))?;
                if let Pending::Files(renames) = &mut staged.pending {
                    renames.push((name, file.path.clone()));
                }
            }
        }
        Ok(staged)
    }

    /// Puts every staged file in place.
    pub fn commit(mut self) -> std::io::Result<()> {
        match std::mem::replace(&mut self.pending, Pending::Files(Vec::new())) {
            Pending::Directory(hidden) => std::fs::rename(&hidden, &self.dir).map_err(|e| {
                // Back where `Drop` removes it.
                self.pending = Pending::Directory(hidden);
                self.error(".", e)
            }),
            Pending::Files(renames) => {
                for (index, (name, target)) in renames.iter().enumerate() {
                    if let Err(e) = rustix::fs::renameat(&self.fd, name, &self.fd, target) {
                        self.pending = Pending::Files(renames[index..].to_vec());
                        return Err(self.error(target, e));
                    }
                }
                Ok(())
            }
        }
    }

    /// Whether `path` is already a regular file of exactly `mode` and `bytes`.
    fn holds(&self, path: &str, bytes: &[u8], mode: u32) -> std::io::Result<bool> {
        let fd = match rustix::fs::openat(
            &self.fd,
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Missing, a symlink or a directory where the file goes: staged, and the rename
            // replaces it (or names it in its error).
            Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => return Ok(false),
            Err(e) => return Err(self.error(path, e)),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| self.error(path, e))?;
        let same_shape = FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
            && stat.st_mode & 0o7777 == mode
            && u64::try_from(stat.st_size).ok() == Some(bytes.len() as u64);
        if !same_shape {
            return Ok(false);
        }
        let mut held = Vec::with_capacity(bytes.len() + 1);
        // One byte more than expected tells a file that grew since the `fstat`.
        File::from(fd)
            .take(bytes.len() as u64 + 1)
            .read_to_end(&mut held)
            .map_err(|e| self.error(path, e))?;
        Ok(held == bytes)
    }

    /// Writes `bytes` to the new file `name`, created with `mode` (which the umask can only
    /// narrow) and set to it exactly through its descriptor where the umask narrowed it: a
    /// secret is never readable by others, not even for a moment. A staged file left by an
    /// interrupted render is replaced.
    fn create(&self, name: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
        let create = || {
            rustix::fs::openat(
                &self.fd,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(mode),
            )
        };
        let fd = match create() {
            Err(Errno::EXIST) => {
                rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?;
                create()?
            }
            created => created?,
        };
        if UMASK.is_none_or(|umask| umask & mode != 0) {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        }
        File::from(fd).write_all(bytes)
    }

    /// `error` with the path it concerns: the directory's and the file's within it.
    fn error(&self, path: &str, error: impl Into<std::io::Error>) -> std::io::Error {
        let error = error.into();
        std::io::Error::new(
            error.kind(),
            format!("{}: {error}", self.dir.join(path).display()),
        )
    }
}

impl Drop for StagedDeployment {
    /// What was staged and never put in place (another host failed) is removed.
    fn drop(&mut self) {
        match &self.pending {
            Pending::Directory(hidden) => {
                let _ = std::fs::remove_dir_all(hidden);
            }
            Pending::Files(renames) => {
                for (name, _) in renames {
                    let _ = rustix::fs::unlinkat(&self.fd, name, AtFlags::empty());
                }
            }
        }
    }
}

/// The process's umask, as Linux shows it (`Umask:` in `/proc/self/status`; synprov never
/// changes it): a file created with a mode it does not narrow needs no `chmod`, one call
/// and one inode update less for each of 33,000 files. Unknown, every file is set.
static UMASK: LazyLock<Option<u32>> = LazyLock::new(|| {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
});

fn open_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `out/HOST/DEPLOYMENT` is staged as `out/HOST/.DEPLOYMENT.synprov-new`.
fn staged_path(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "deployment".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!(".{name}.synprov-new"))
}

/// Every directory the files sit in, relative to the deployment's, parents first.
fn parents(files: &[RenderedFile]) -> BTreeSet<&str> {
    let mut parents = BTreeSet::new();
    for file in files {
        let mut path = file.path.as_str();
        while let Some((parent, _)) = path.rsplit_once('/') {
            parents.insert(parent);
            path = parent;
        }
    }
    parents
}

/// `a/b/name` is staged as `a/b/.name.synprov-new`.
fn staged_name(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((parent, name)) => format!("{parent}/.{name}.synprov-new"),
        None => format!(".{path}.synprov-new"),
    }
}
