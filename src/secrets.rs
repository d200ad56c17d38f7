//! Every secret of a deployment, derived from one master key.
//!
//! Each secret is HMAC-SHA256(master key, "<server_name>/<secret name>"), so the same
//! inventory always renders the same files and nothing must be read back from a host. The
//! master key lives beside the inventory in a file only its owner can read, or in the
//! `SYNPROV_MASTER_KEY` environment variable.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use miette::Diagnostic;
use sha2::Sha256;
use thiserror::Error;

/// The environment variable that, when set, holds the master key instead of the file.
pub const MASTER_KEY_ENV: &str = "SYNPROV_MASTER_KEY";

/// A secret value. It never shows in `Debug` or `Display`; only [`Secret::expose`] gives the
/// text, for the file that must hold it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

#[derive(Debug, Error, Diagnostic)]
pub enum SecretError {
    #[error("the master key file {path} can be read by others (mode {mode:o})")]
    #[diagnostic(help(
        "run `chmod 600 {path}`: the key derives every secret of every homeserver in the inventory"
    ))]
    LooseMode { path: String, mode: u32 },

    #[error("cannot read the master key file {path}: {source}")]
    #[diagnostic(help("check that the file exists and belongs to you, or set {MASTER_KEY_ENV}"))]
    Read {
        path: String,
        source: std::io::Error,
    },

    #[error("cannot create the master key file {path}: {source}")]
    #[diagnostic(help(
        "synprov creates it beside the inventory on first use; make that directory writable, or set {MASTER_KEY_ENV}"
    ))]
    Create {
        path: String,
        source: std::io::Error,
    },

    #[error("the master key is too short ({len} bytes)")]
    #[diagnostic(help(
        "use at least 32 bytes; delete the file to have synprov create a new one (this changes every secret)"
    ))]
    TooShort { len: usize },
}

/// The key every secret is derived from.
#[derive(Clone)]
pub struct MasterKey(Vec<u8>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(********)")
    }
}

impl MasterKey {
    /// The path of the key file that belongs to an inventory: `NAME.master-key` beside it.
    pub fn path_for(inventory: &Path) -> PathBuf {
        let stem = inventory
            .file_stem()
            .map_or_else(|| "inventory".into(), |s| s.to_string_lossy().into_owned());
        inventory.with_file_name(format!("{stem}.master-key"))
    }

    /// The inventory's master key: from the environment, else from its key file, which is
    /// created (mode 0600, 32 random bytes) when missing. A file others can read is refused.
    pub fn for_inventory(inventory: &Path) -> Result<Self, SecretError> {
        if let Ok(value) = std::env::var(MASTER_KEY_ENV) {
            return Self::from_bytes(value.into_bytes());
        }
        let path = MasterKey::path_for(inventory);
        let shown = path.display().to_string();
        match fs::metadata(&path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SecretError::LooseMode { path: shown, mode });
                }
                let text = fs::read_to_string(&path).map_err(|source| SecretError::Read {
                    path: shown,
                    source,
                })?;
                Self::from_bytes(text.trim().as_bytes().to_vec())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(&path),
            Err(source) => Err(SecretError::Read {
                path: shown,
                source,
            }),
        }
    }

    fn create(path: &Path) -> Result<Self, SecretError> {
        let error = |source| SecretError::Create {
            path: path.display().to_string(),
            source,
        };
        let mut random = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut random))
            .map_err(error)?;
        let text = hex::encode(random);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(error)?;
        file.write_all(format!("{text}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(error)?;
        Ok(MasterKey(text.into_bytes()))
    }

    fn from_bytes(bytes: Vec<u8>) -> Result<Self, SecretError> {
        if bytes.len() < 32 {
            return Err(SecretError::TooShort { len: bytes.len() });
        }
        Ok(MasterKey(bytes))
    }

    /// A key given directly, e.g. by tests and benchmarks.
    pub fn from_text(text: &str) -> Result<Self, SecretError> {
        Self::from_bytes(text.as_bytes().to_vec())
    }

    fn mac(&self, server_name: &str, name: &str) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(server_name.as_bytes());
        mac.update(b"/");
        mac.update(name.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The secret called `name` of the homeserver called `server_name`, as URL-safe text.
    pub fn derive(&self, server_name: &str, name: &str) -> Secret {
        Secret(URL_SAFE_NO_PAD.encode(self.mac(server_name, name)))
    }

    /// All secrets of the homeserver called `server_name`.
    pub fn secrets_for(&self, server_name: &str) -> DeploymentSecrets {
        let text = |name: &str| self.derive(server_name, name);
        let key_id = hex::encode(&self.mac(server_name, "signing_key_id")[..2]);
        let seed = STANDARD_NO_PAD.encode(self.mac(server_name, "signing_key"));
        DeploymentSecrets {
            registration_shared_secret: text("registration_shared_secret"),
            macaroon_secret_key: text("macaroon_secret_key"),
            form_secret: text("form_secret"),
            worker_replication_secret: text("worker_replication_secret"),
            postgres_password: text("postgres_password"),
            redis_password: text("redis_password"),
            signing_key: Secret(format!("ed25519 a_{key_id} {seed}")),
            plugins: Vec::new(),
        }
    }
}

/// The secrets of one homeserver.
#[derive(Debug, Clone)]
pub struct DeploymentSecrets {
    pub registration_shared_secret: Secret,
    pub macaroon_secret_key: Secret,
    pub form_secret: Secret,
    pub worker_replication_secret: Secret,
    pub postgres_password: Secret,
    pub redis_password: Secret,
    /// Synapse's signing key file contents: `ed25519 <key id> <base64 seed>`.
    pub signing_key: Secret,
    /// Secrets the deployment's plugins derived (`derive-secret`).
    pub plugins: Vec<Secret>,
}

impl DeploymentSecrets {
    /// Every secret value, for masking output.
    pub fn all(&self) -> Vec<&Secret> {
        let mut all = vec![
            &self.registration_shared_secret,
            &self.macaroon_secret_key,
            &self.form_secret,
            &self.worker_replication_secret,
            &self.postgres_password,
            &self.redis_password,
            &self.signing_key,
        ];
        all.extend(&self.plugins);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn secrets_are_stable_and_differ_per_server_and_name() {
        let key = MasterKey::from_text(KEY).unwrap();
        let a = key.secrets_for("a.example");
        assert_eq!(a.form_secret, key.secrets_for("a.example").form_secret);
        assert_ne!(a.form_secret, key.secrets_for("b.example").form_secret);
        assert_ne!(a.form_secret, a.macaroon_secret_key);
    }

    #[test]
    fn a_secret_prints_as_stars() {
        let key = MasterKey::from_text(KEY).unwrap();
        let secrets = key.secrets_for("a.example");
        assert_eq!(
            format!("{} {:?}", secrets.form_secret, secrets.form_secret),
            "******** ********"
        );
        assert!(!format!("{secrets:?}").contains(secrets.form_secret.expose()));
    }

    #[test]
    fn the_signing_key_has_synapses_format() {
        let key = MasterKey::from_text(KEY).unwrap();
        let signing = key.secrets_for("a.example").signing_key;
        let parts: Vec<&str> = signing.expose().split(' ').collect();
        assert_eq!(parts[0], "ed25519");
        assert!(parts[1].starts_with("a_") && parts[1].len() == 6);
        assert_eq!(STANDARD_NO_PAD.decode(parts[2]).unwrap().len(), 32);
    }

    #[test]
    fn a_short_key_is_refused() {
        assert!(matches!(
            MasterKey::from_text("short"),
            Err(SecretError::TooShort { len: 5 })
        ));
    }
}
