//! The SHA-256 of a file's contents as lowercase hex: how plans, saved plans and generation
//! records name a file's contents (and what the host's `sha256sum` prints).

use sha2::{Digest, Sha256};

/// The SHA-256 of `contents`, in lowercase hex.
pub fn sha256_hex(contents: &str) -> String {
    hex::encode(Sha256::digest(contents.as_bytes()))
}
