//! The cache of compiled plugins, so that a run does not recompile what the last one did.
//!
//! Loading a compiled component runs its machine code as is, so whoever can write the cache
//! can run code as synprov's user: the directory must be ours and 0700, or it is not used.
//! Entries are keyed by the component's SHA-256, synprov's wasmtime and the engine's
//! settings, and written to a temporary file then renamed, so a reader never sees half a file.

use std::fs;
use std::hash::Hasher;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Overrides the cache directory (`~/.cache/synprov/plugins` by default).
pub const CACHE_DIR_ENV: &str = "SYNPROV_CACHE_DIR";

/// The component of `bytes`, from the cache when a safe entry exists; returns whether it did.
pub fn load_or_compile(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<(Component, bool)> {
    let Some(dir) = safe_dir() else {
        return Ok((Component::new(engine, bytes)?, false));
    };
    let entry = dir.join(format!("{}.cwasm", key(engine, bytes)));
    if entry.exists() {
        // SAFETY: the entry is in a directory only this user can write (checked by
        // `safe_dir`), and was written by synprov from this same component and engine.
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &entry) } {
            return Ok((component, true));
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Ok(compiled) = component.serialize() {
        // A cache that cannot be written costs a recompile next time, nothing more.
        let _ = store(&dir, &entry, &compiled);
    }
    Ok((component, false))
}

/// The cache directory, created 0700 when missing; None (with a warning) when it exists
/// but another user owns it or others may write it.
fn safe_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os(CACHE_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?
            .join("synprov/plugins"),
    };
    if !dir.exists() {
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).ok()?;
        }
        fs::DirBuilder::new().mode(0o700).create(&dir).ok()?;
    }
    let meta = fs::symlink_metadata(&dir).ok()?;
    let uid = euid();
    let mode = meta.permissions().mode() & 0o777;
    if !meta.is_dir() || meta.uid() != uid || mode & 0o077 != 0 {
        eprintln!(
            "warning: not using the plugin cache {}: it must be a directory of yours with mode 0700 (it is {mode:o}); run `chmod 700 {}`",
            dir.display(),
            dir.display()
        );
        return None;
    }
    Some(dir)
}

/// The effective uid, read from /proc so that no libc call is needed.
fn euid() -> u32 {
    fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

/// The entry's name: what changes the compiled code changes the name.
fn key(engine: &Engine, bytes: &[u8]) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut sha = Sha(Sha256::new());
    sha.write(bytes);
    // The engine's hash covers its settings and wasmtime's version; synprov's own version
    // is added in case the way synprov sets up the engine changes without a new hash.
    sha.write(concat!("\0synprov ", env!("CARGO_PKG_VERSION")).as_bytes());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut sha);
    hex::encode(sha.0.finalize())
}

fn store(dir: &Path, entry: &Path, compiled: &[u8]) -> std::io::Result<()> {
    let temp = dir.join(format!(".{}.tmp", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    file.write_all(compiled)?;
    file.sync_all()?;
    fs::rename(&temp, entry)
}
