//! OpenSSH's known_hosts, read by synprov itself.
//!
//! libssh2's own check reports a host whose known key is of another type as "changed"
//! (PITFALLS.md), so synprov parses the file: plain and hashed (`|1|salt|hash`) names,
//! `[host]:port` entries. Markers (`@cert-authority`, `@revoked`) and wildcard patterns are
//! not supported and those lines are skipped.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// One key a known_hosts file holds for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownKey {
    pub key_type: String,
    pub blob: Vec<u8>,
}

/// The name OpenSSH records for a host: `host`, or `[host]:port` off port 22.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

fn name_matches(entry: &str, pattern: &str) -> bool {
    if let Some(hashed) = entry.strip_prefix("|1|") {
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
            return false;
        };
        let mut mac = Hmac::<Sha1>::new_from_slice(&salt).expect("any key length");
        mac.update(pattern.as_bytes());
        return mac.verify_slice(&hash).is_ok();
    }
    entry.split(',').any(|name| name == pattern)
}

/// The keys `text` (a known_hosts file) holds for `host` on `port`.
pub fn keys_for(text: &str, host: &str, port: u16) -> Vec<KnownKey> {
    let pattern = host_pattern(host, port);
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('@'))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (names, key_type, key) = (fields.next()?, fields.next()?, fields.next()?);
            let matches = if names.starts_with("|1|") {
                name_matches(names, &pattern)
            } else {
                names.split(',').any(|n| name_matches(n, &pattern))
            };
            matches
                .then(|| {
                    Some(KnownKey {
                        key_type: key_type.to_string(),
                        blob: STANDARD.decode(key).ok()?,
                    })
                })
                .flatten()
        })
        .collect()
}

/// The host-key algorithms to offer for the known key types, so that the server presents a
/// key of a type we can compare.
pub fn algorithms(keys: &[KnownKey]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for key in keys {
        let names: &[&str] = match key.key_type.as_str() {
            "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256"],
            other => std::slice::from_ref(match other {
                "ssh-ed25519" => &"ssh-ed25519",
                "ecdsa-sha2-nistp256" => &"ecdsa-sha2-nistp256",
                "ecdsa-sha2-nistp384" => &"ecdsa-sha2-nistp384",
                "ecdsa-sha2-nistp521" => &"ecdsa-sha2-nistp521",
                _ => continue,
            }),
        };
        for name in names {
            if !out.contains(name) {
                out.push(name);
            }
        }
    }
    out.join(",")
}

/// OpenSSH's fingerprint of a key blob: `SHA256:<base64>`.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// Appends one line for a newly accepted key; never rewrites the file.
pub fn append(
    path: &Path,
    host: &str,
    port: u16,
    key_type: &str,
    blob: &[u8],
) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut line = String::new();
    let _ = writeln!(
        line,
        "{} {key_type} {}",
        host_pattern(host, port),
        STANDARD.encode(blob)
    );
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn plain_and_port_entries_match_their_host_only() {
        let text = format!(
            "web1,10.0.0.1 ssh-ed25519 {KEY}\n[web2]:2222 ssh-ed25519 {KEY} comment\n# web3 ssh-ed25519 {KEY}\n"
        );
        assert_eq!(keys_for(&text, "web1", 22).len(), 1);
        assert_eq!(keys_for(&text, "10.0.0.1", 22).len(), 1);
        assert_eq!(keys_for(&text, "web2", 2222).len(), 1);
        assert!(keys_for(&text, "web2", 22).is_empty());
        assert!(keys_for(&text, "web3", 22).is_empty());
    }

    #[test]
    fn hashed_entries_match() {
        // `ssh-keygen -H` form of "web1": HMAC-SHA1(salt, name).
        let salt = [7u8; 20];
        let mut mac = Hmac::<Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"web1");
        let hash = mac.finalize().into_bytes();
        let text = format!(
            "|1|{}|{} ssh-ed25519 {KEY}\n",
            STANDARD.encode(salt),
            STANDARD.encode(hash)
        );
        assert_eq!(keys_for(&text, "web1", 22).len(), 1);
        assert!(keys_for(&text, "web2", 22).is_empty());
    }

    #[test]
    fn rsa_offers_the_sha2_signature_algorithms() {
        let keys = [
            KnownKey {
                key_type: "ssh-rsa".into(),
                blob: vec![],
            },
            KnownKey {
                key_type: "ssh-ed25519".into(),
                blob: vec![],
            },
        ];
        assert_eq!(algorithms(&keys), "rsa-sha2-512,rsa-sha2-256,ssh-ed25519");
    }

    #[test]
    fn fingerprints_look_like_openssh() {
        let blob = STANDARD.decode(KEY).unwrap();
        assert!(fingerprint(&blob).starts_with("SHA256:"));
        assert_eq!(fingerprint(&blob).len(), 7 + 43);
    }
}
