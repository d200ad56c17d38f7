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
                fd: open_dir(dir).map_err(|e| located(dir, e))?,
                pending: Pending::Files(Vec::with_capacity(files.len())),
            }
        } else {
            let hidden = staged_path(dir);
            let made = || {
                if let Some(parent) = dir.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                // A directory left by an interrupted render is replaced.
                match std::fs::remove_dir_all(&hidden) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
                std::fs::create_dir(&hidden)?;
                open_dir(&hidden)
            };
            StagedDeployment {
                dir: dir.to_path_buf(),
                fd: made().map_err(|e| located(&hidden, e))?,
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

    /// `error` about `path` within the deployment's directory.
    fn error(&self, path: &str, error: impl Into<std::io::Error>) -> std::io::Error {
        located(&self.dir.join(path), error)
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

/// `error` naming the `path` it concerns.
fn located(path: &Path, error: impl Into<std::io::Error>) -> std::io::Error {
    let error = error.into();
    std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn file(path: &str, contents: &str, mode: u32) -> RenderedFile {
        RenderedFile {
            path: path.into(),
            contents: contents.into(),
            mode,
            secret: mode == 0o600,
            keep_existing: false,
            owner: None,
            used_by: Vec::new(),
            reloads: false,
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Every name under `dir`, relative to it, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names = Vec::new();
        let mut dirs = vec![dir.to_path_buf()];
        while let Some(at) = dirs.pop() {
            for entry in std::fs::read_dir(&at).unwrap() {
                let path = entry.unwrap().path();
                names.push(path.strip_prefix(dir).unwrap().display().to_string());
                if path.is_dir() {
                    dirs.push(path);
                }
            }
        }
        names.sort();
        names
    }

    #[test]
    fn a_new_deployment_appears_whole_on_commit_and_not_at_all_when_dropped() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("hs1/d");
        let files = [
            file("a/b/secret", "s3cr3t\n", 0o600),
            file("top.yaml", "a: 1\n", 0o644),
        ];
        let dropped = StagedDeployment::write(&dir, &files).unwrap();
        assert!(!dir.exists(), "nothing in place before the commit");
        drop(dropped);
        assert_eq!(names(out.path()), ["hs1"], "what was staged is removed");

        StagedDeployment::write(&dir, &files)
            .unwrap()
            .commit()
            .unwrap();
        assert_eq!(names(&dir), ["a", "a/b", "a/b/secret", "top.yaml"]);
        assert_eq!(mode(&dir.join("a/b/secret")), 0o600);
        assert_eq!(mode(&dir.join("top.yaml")), 0o644);
        assert_eq!(
            names(out.path().join("hs1").as_path()).len(),
            5,
            "no hidden directory left"
        );
    }

    #[test]
    fn over_an_earlier_render_only_what_differs_is_staged_and_a_drop_changes_nothing() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("d");
        let first = [
            file("same", "same\n", 0o644),
            file("edited", "old\n", 0o644),
            file("widened", "w\n", 0o600),
        ];
        StagedDeployment::write(&dir, &first)
            .unwrap()
            .commit()
            .unwrap();
        std::fs::set_permissions(dir.join("widened"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let second = [
            file("same", "same\n", 0o644),
            file("edited", "new\n", 0o644),
            file("widened", "w\n", 0o600),
        ];
        let staged = StagedDeployment::write(&dir, &second).unwrap();
        match &staged.pending {
            Pending::Files(renames) => assert_eq!(
                renames
                    .iter()
                    .map(|(_, target)| target.as_str())
                    .collect::<Vec<_>>(),
                ["edited", "widened"]
            ),
            Pending::Directory(_) => panic!("the deployment was rendered before"),
        }
        drop(staged);
        assert_eq!(
            names(&dir),
            ["edited", "same", "widened"],
            "no staged file left"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("edited")).unwrap(),
            "old\n"
        );

        StagedDeployment::write(&dir, &second)
            .unwrap()
            .commit()
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("edited")).unwrap(),
            "new\n"
        );
        assert_eq!(mode(&dir.join("widened")), 0o600);
        assert_eq!(names(&dir), ["edited", "same", "widened"]);
    }

    /// A link where a file goes is neither followed nor taken for the file, even when what
    /// it points at holds the same bytes: the link is replaced, its target left as it was.
    #[test]
    fn a_link_planted_where_a_file_goes_is_replaced_and_never_followed() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("d");
        let files = [file("a", "x\n", 0o644)];
        StagedDeployment::write(&dir, &files)
            .unwrap()
            .commit()
            .unwrap();
        let outside = out.path().join("outside");
        std::fs::write(&outside, "x\n").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::remove_file(dir.join("a")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("a")).unwrap();

        StagedDeployment::write(&dir, &[file("a", "y\n", 0o644)])
            .unwrap()
            .commit()
            .unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "x\n");
        assert!(std::fs::symlink_metadata(dir.join("a")).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "y\n");

        std::fs::remove_file(dir.join("a")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("a")).unwrap();
        StagedDeployment::write(&dir, &files)
            .unwrap()
            .commit()
            .unwrap();
        assert!(std::fs::symlink_metadata(dir.join("a")).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "x\n");
    }

    #[test]
    fn a_staged_name_sits_beside_its_target() {
        assert_eq!(staged_name("a/b/c.yaml"), "a/b/.c.yaml.synprov-new");
        assert_eq!(staged_name(".env"), "..env.synprov-new");
        assert_eq!(
            staged_path(Path::new("/out/hs1/d")),
            Path::new("/out/hs1/.d.synprov-new")
        );
        let files = [
            file("x/y/z", "", 0o644),
            file("x/w", "", 0o644),
            file("v", "", 0o644),
        ];
        assert_eq!(
            parents(&files).into_iter().collect::<Vec<_>>(),
            ["x", "x/y"]
        );
    }
}
