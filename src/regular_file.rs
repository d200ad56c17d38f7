//! Files on this machine that synprov reads but someone else may have put there (an
//! inventory, a plan file, the inventory a plan file names): only a regular file is read,
//! and at most a limit of it, so that none can block the read (a FIFO), never end
//! (`/dev/zero`) or fill the memory. A regular file of bounded size is read to its end
//! without waiting on anyone: this is what gives such a read its deadline.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a file was not read; each caller names the file in its own error.
#[derive(Debug)]
pub enum Refusal {
    Io(std::io::Error),
    /// A FIFO, a device, a socket or a directory.
    NotAFile,
    /// Over `limit`, by its size before reading or by what it grew to meanwhile.
    TooLarge {
        bytes: u64,
        limit: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Io(error) => error.fmt(f),
            Refusal::NotAFile => {
                f.write_str("it is not a regular file (a FIFO, a device or a directory)")
            }
            Refusal::TooLarge { bytes, limit } => {
                write!(f, "it is {bytes} bytes, more than the limit of {limit}")
            }
        }
    }
}

/// The bytes of the regular file at `path`, at most `limit` of them.
///
/// Opened with `O_NONBLOCK`, so that opening a FIFO returns at once rather than wait for a
/// writer; then the type and the size are asked of what was opened (`fstat`), not of the
/// path, so that nothing can be put in its place between the check and the read.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, Refusal> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(Refusal::Io)?;
    let metadata = file.metadata().map_err(Refusal::Io)?;
    if !metadata.is_file() {
        return Err(Refusal::NotAFile);
    }
    if metadata.len() > limit {
        return Err(Refusal::TooLarge {
            bytes: metadata.len(),
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(Refusal::Io)?;
    if bytes.len() as u64 > limit {
        return Err(Refusal::TooLarge {
            bytes: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_up_to_the_limit_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "12345").unwrap();
        assert_eq!(read(&path, 5).unwrap(), b"12345");
        assert!(matches!(
            read(&path, 4),
            Err(Refusal::TooLarge { bytes: 5, limit: 4 })
        ));
    }

    #[test]
    fn a_fifo_a_device_and_a_directory_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        for path in [fifo.as_path(), Path::new("/dev/zero"), dir.path()] {
            assert!(
                matches!(read(path, 1 << 20), Err(Refusal::NotAFile)),
                "{}",
                path.display()
            );
        }
    }
}
