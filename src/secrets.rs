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

    /// A secret the operator gives rather than one synprov derives (a TLS private key):
    /// from here on it is masked like the others.
    pub fn given(text: String) -> Secret {
        Secret(text)
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

    #[error("the master key file {path} is unusable: {reason}")]
    #[diagnostic(help(
        "restore it from your backup; only if none exists, delete it to have synprov create a new one (this changes every secret)"
    ))]
    BadFile { path: String, reason: String },

    #[error("{MASTER_KEY_ENV} is set but unusable: {reason}")]
    #[diagnostic(help(
        "set it to the contents of the inventory's key file (NAME.master-key), or unset it to use that file; synprov never makes a new key while one is given"
    ))]
    BadEnv { reason: String },

    #[error("the master key is unusable: {reason}")]
    BadKey { reason: String },
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
        // `var_os`, not `var`: a value that is not UTF-8 is refused, not taken for unset.
        if let Some(value) = std::env::var_os(MASTER_KEY_ENV) {
            let text = value.into_string().map_err(|_| SecretError::BadEnv {
                reason: "it is not UTF-8 text".into(),
            })?;
            return Self::from_key_text(text).map_err(|reason| SecretError::BadEnv { reason });
        }
        let path = MasterKey::path_for(inventory);
        let shown = path.display().to_string();
        match fs::metadata(&path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SecretError::LooseMode { path: shown, mode });
                }
                let bytes = fs::read(&path).map_err(|source| SecretError::Read {
                    path: shown.clone(),
                    source,
                })?;
                let bad = |reason| SecretError::BadFile {
                    path: shown.clone(),
                    reason,
                };
                let text =
                    String::from_utf8(bytes).map_err(|_| bad("it is not UTF-8 text".into()))?;
                // Trimmed, as synprov has always read it: the file ends with a newline.
                Self::from_key_text(text.trim().to_string()).map_err(bad)
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

    /// Shortest key accepted, in bytes: 256 bits of hex would be 64; anything under 32
    /// characters is a typo or a placeholder, not a key.
    const MIN_LEN: usize = 32;

    /// A key from its text, or why that text cannot be one. Whitespace at either end and
    /// control characters are refused rather than trimmed: a key copied with a stray space
    /// would silently derive other secrets than the same key in its file. A key that is
    /// long enough but [`guessable`] is refused too.
    fn from_key_text(text: String) -> Result<Self, String> {
        if text.is_empty() {
            return Err("it is empty".into());
        }
        if text.trim() != text {
            return Err("it starts or ends with whitespace".into());
        }
        if text.chars().any(char::is_control) {
            return Err("it holds a control character".into());
        }
        if text.len() < Self::MIN_LEN {
            return Err(format!(
                "it is {} bytes long; at least {} are needed",
                text.len(),
                Self::MIN_LEN
            ));
        }
        if let Some(why) = guessable(&text) {
            return Err(format!("it is guessable: {why}; {MAKE_A_KEY}"));
        }
        Ok(MasterKey(text.into_bytes()))
    }

    /// A key given directly, e.g. by tests and benchmarks.
    pub fn from_text(text: &str) -> Result<Self, SecretError> {
        Self::from_key_text(text.to_string()).map_err(|reason| SecretError::BadKey { reason })
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
            backup_password: text("backup_password"),
            signing_key: Secret(format!("ed25519 a_{key_id} {seed}")),
            plugins: Vec::new(),
            given: Vec::new(),
        }
    }
}

/// How to make a good master key, for the errors that refuse one.
const MAKE_A_KEY: &str = "make a key with `openssl rand -base64 32` (or delete the key file to have synprov make one); a new key changes every secret it derives, Postgres' password among them";

/// Fewest different characters a master key may hold.
const MIN_DISTINCT: usize = 8;

/// Least entropy a master key's text must carry by [`guessable`]'s estimate, in bits: 32
/// random hexadecimal digits (`openssl rand -hex 16`, 128 bits) are estimated at 94 bits
/// or more; 16 distinct characters written twice, at 64.
const MIN_BITS: f64 = 80.0;

/// Why `key` is guessable, when it is. The text is taken as what it repeats (`abcabc` is
/// no stronger than `abc`), and its entropy estimated as its length times the Shannon
/// entropy of its characters' frequencies: one repeated character, a short word written
/// over and over, or a few characters mostly of one are refused. So is a run through the
/// alphabet or the digits (most neighbours one apart: `abcdef...`). An estimate from the
/// text alone, which a random key always passes; it cannot see a phrase from a book.
fn guessable(key: &str) -> Option<String> {
    let chars: Vec<char> = key.chars().collect();
    // A unit repeated at least twice: a longer "period" would only say that the key's end
    // matches its start, which a random key does by chance (1 in 16 for hex at 63).
    let period = (1..=chars.len() / 2)
        .find(|&p| (p..chars.len()).all(|i| chars[i] == chars[i - p]))
        .unwrap_or(chars.len());
    let unit = &chars[..period];
    if period < chars.len() {
        // The unit is not shown: it is most of the key.
        return Some(format!(
            "it repeats the same {period} character{} over and over",
            if period == 1 { "" } else { "s" }
        ));
    }
    let mut counts = std::collections::HashMap::new();
    for c in unit {
        *counts.entry(*c).or_insert(0u32) += 1;
    }
    if counts.len() < MIN_DISTINCT {
        return Some(format!(
            "it holds only {} different characters; at least {MIN_DISTINCT} are needed",
            counts.len()
        ));
    }
    let length = unit.len() as f64;
    let bits = counts
        .values()
        .map(|&n| {
            let p = f64::from(n) / length;
            -p * p.log2() * length
        })
        .sum::<f64>();
    if bits < MIN_BITS {
        return Some(format!(
            "its characters carry about {bits:.0} bits of entropy; at least {MIN_BITS:.0} are needed"
        ));
    }
    let steps = chars
        .windows(2)
        .filter(|w| (w[0] as i64 - w[1] as i64).abs() == 1)
        .count();
    if steps * 4 > (chars.len() - 1) * 3 {
        return Some("it runs through the alphabet or the digits".into());
    }
    None
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
    /// The password of the deployment's restic repository: its backups are encrypted with
    /// it, and only the master key (kept off the host) makes it again for a restore.
    pub backup_password: Secret,
    /// Synapse's signing key file contents: `ed25519 <key id> <base64 seed>`.
    pub signing_key: Secret,
    /// Secrets the deployment's plugins derived (`derive-secret`).
    pub plugins: Vec<Secret>,
    /// Secrets the inventory gives in the deployment's `homeserver` table ([`given_in`]):
    /// they land in `homeserver.yaml`, which is then secret even when no derived secret is
    /// left in it.
    pub given: Vec<Secret>,
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
            &self.backup_password,
            &self.signing_key,
        ];
        all.extend(&self.plugins);
        all.extend(&self.given);
        all
    }

    /// Whether `contents` holds one of these secrets.
    pub fn found_in(&self, contents: &str) -> bool {
        self.finder().found_in(contents)
    }

    /// A search for these secrets made once for many texts: a deployment's files.
    pub fn finder(&self) -> SecretFinder {
        SecretFinder(
            self.all()
                .into_iter()
                .map(|secret| memchr::memmem::Finder::new(secret.expose()).into_owned())
                .collect(),
        )
    }
}

/// The secrets of a deployment, each searched for on the vector unit (memchr) by a finder
/// built once: a fleet's render searches every file for each secret of its deployment.
pub struct SecretFinder(Vec<memchr::memmem::Finder<'static>>);

impl SecretFinder {
    /// Whether `contents` holds one of the secrets.
    pub fn found_in(&self, contents: &str) -> bool {
        self.0
            .iter()
            .any(|finder| finder.find(contents.as_bytes()).is_some())
    }
}

/// Whether a setting, flag or variable called `name` holds a secret: its name speaks of a
/// secret, password, token, pass, auth or key(s) (`macaroon_secret_key`, `smtp_pass`,
/// `REDISCLI_AUTH`, `--requirepass`, `client_secret`), unless it names where a secret is
/// kept (`*_path`, `*_file`). Errs towards secret: a false positive only hides a value
/// from a diff and makes a file 0600.
pub fn is_secret_name(name: &str) -> bool {
    let name = name
        .trim_matches(|c: char| c == '-' || c == '"' || c == '\'' || c.is_whitespace())
        .to_ascii_lowercase()
        .replace('-', "_");
    if name.ends_with("_path") || name.ends_with("_file") {
        return false;
    }
    ["secret", "password", "passwd", "passphrase", "token"]
        .iter()
        .any(|word| name.contains(word))
        || ["pass", "auth", "key", "keys"]
            .iter()
            .any(|end| name.ends_with(end))
}

/// The secrets of a homeserver deployed before synprov took it over (`synprov import`
/// writes them into a file beside the inventory, which the deployment's `imported` names):
/// they replace the derived ones, so that the server keeps its identity (the signing key),
/// its users' sessions and links (macaroon key, form secret), what its bridges and admins
/// register with (the registration shared secret), and the password its database was
/// made with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImportedSecrets {
    /// Synapse's signing key file: `ed25519 <key id> <base64 seed>`.
    pub signing_key: String,
    pub registration_shared_secret: String,
    pub macaroon_secret_key: String,
    pub form_secret: String,
    pub postgres_password: String,
}

/// The longest imported secret: Synapse's own are 50 characters.
const MAX_IMPORTED: usize = 1024;

impl ImportedSecrets {
    /// Checks every value: one line of printable text, not empty, bounded; the signing key
    /// in Synapse's format.
    pub fn checked(self) -> Result<ImportedSecrets, String> {
        for (name, value) in self.fields() {
            if value.is_empty() || value.len() > MAX_IMPORTED {
                return Err(format!(
                    "`{name}` is empty or longer than {MAX_IMPORTED} bytes"
                ));
            }
            if value.chars().any(|c| c.is_control()) {
                return Err(format!("`{name}` holds a control character"));
            }
        }
        let words: Vec<&str> = self.signing_key.split(' ').collect();
        let seed = match words[..] {
            ["ed25519", id, seed]
                if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                seed
            }
            _ => {
                return Err(
                    "`signing_key` is not `ed25519 KEY_ID SEED`, as Synapse writes it".into(),
                );
            }
        };
        let decoded = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            seed.trim_end_matches('='),
        );
        if decoded.map(|d| d.len()) != Ok(32) {
            return Err("`signing_key`'s seed is not 32 bytes of base64".into());
        }
        Ok(self)
    }

    fn fields(&self) -> [(&'static str, &str); 5] {
        [
            ("signing_key", &self.signing_key),
            (
                "registration_shared_secret",
                &self.registration_shared_secret,
            ),
            ("macaroon_secret_key", &self.macaroon_secret_key),
            ("form_secret", &self.form_secret),
            ("postgres_password", &self.postgres_password),
        ]
    }

    /// Reads the file `synprov import` wrote.
    pub fn parse(text: &str) -> Result<ImportedSecrets, String> {
        toml::from_str::<ImportedSecrets>(text)
            .map_err(|e| e.message().to_string())?
            .checked()
    }

    /// The file's text: a comment saying what it is, then the values.
    pub fn to_toml(&self, origin: &str) -> String {
        format!(
            "# The secrets of a homeserver synprov took over, read by `synprov import` from {origin}.\n\
             # Keep this file as secret as the master key: it holds the server's signing key.\n{}",
            toml::to_string(self).expect("strings serialize")
        )
    }

    /// These secrets in place of the derived ones.
    pub fn replace(&self, secrets: &mut DeploymentSecrets) {
        secrets.signing_key = Secret(self.signing_key.clone());
        secrets.registration_shared_secret = Secret(self.registration_shared_secret.clone());
        secrets.macaroon_secret_key = Secret(self.macaroon_secret_key.clone());
        secrets.form_secret = Secret(self.form_secret.clone());
        secrets.postgres_password = Secret(self.postgres_password.clone());
    }
}

/// The secrets an inventory gives in a deployment's `homeserver` table: every non-empty
/// string under a key [`is_secret_name`] accepts, at any depth (a `password` under
/// `database.args`, a `client_secret` in a list of OIDC providers).
pub fn given_in(table: &serde_json::Map<String, serde_json::Value>) -> Vec<Secret> {
    use serde_json::Value;
    /// A table's own keys decide for its values; a list's items are as secret as its key.
    fn walk(value: &Value, secret_key: bool, out: &mut Vec<Secret>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    walk(value, is_secret_name(key), out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, secret_key, out)),
            Value::String(s) if secret_key && !s.is_empty() => out.push(Secret(s.clone())),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&serde_json::Value::Object(table.clone()), false, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "Gx7q2LmP9vR4tY8wZ1aB6cD3eF5hJ0kN";

    #[test]
    fn imported_secrets_replace_the_derived_ones_and_are_checked() {
        let imported = ImportedSecrets {
            signing_key: "ed25519 a_AbCd 5Gq7cZrGbaA5ApNJ2dG2kRMnNE1Q6rDk1b8Q+V5G0kA".into(),
            registration_shared_secret: "r~e:g".into(),
            macaroon_secret_key: "m".into(),
            form_secret: "f".into(),
            postgres_password: "p'q".into(),
        };
        let text = imported.to_toml("old:/opt/synapse/hs");
        assert!(text.starts_with("# The secrets of a homeserver synprov took over"));
        assert_eq!(ImportedSecrets::parse(&text).unwrap(), imported);
        let mut secrets = MasterKey::from_text(KEY).unwrap().secrets_for("a.example");
        imported.replace(&mut secrets);
        assert_eq!(secrets.signing_key.expose(), imported.signing_key);
        assert_eq!(secrets.postgres_password.expose(), "p'q");
        for (bad, why) in [
            (text.replace("ed25519 a_AbCd", "ed25519 a/b"), "signing_key"),
            (text.replace("5Gq7", "5G"), "32 bytes"),
            (text.replace("\"m\"", "\"m\\n\""), "control character"),
            (text.replace("\"f\"", "\"\""), "empty"),
            (format!("{text}extra = \"x\"\n"), "unknown field"),
        ] {
            let err = ImportedSecrets::parse(&bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn secrets_are_stable_and_differ_per_server_and_name() {
        let key = MasterKey::from_text(KEY).unwrap();
        let a = key.secrets_for("a.example");
        assert_eq!(a.form_secret, key.secrets_for("a.example").form_secret);
        assert_ne!(a.form_secret, key.secrets_for("b.example").form_secret);
        assert_ne!(a.form_secret, a.macaroon_secret_key);
    }

    #[test]
    fn two_master_keys_give_two_backup_passwords() {
        let one = MasterKey::from_text(KEY).unwrap().secrets_for("a.example");
        let other = MasterKey::from_text("q9Tz4WcR7yUe2IoP5aSd8FgH1jKl3ZxV")
            .unwrap()
            .secrets_for("a.example");
        assert_ne!(one.backup_password, other.backup_password);
        assert_ne!(one.backup_password, one.postgres_password);
        assert_eq!(
            one.backup_password.expose().len(),
            43,
            "256 bits, base64url"
        );
        assert!(
            one.all().contains(&&one.backup_password),
            "masked in output"
        );
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
    fn a_short_padded_or_control_key_is_refused() {
        for (text, why) in [
            ("short", "it is 5 bytes long; at least 32 are needed"),
            ("", "it is empty"),
            (&format!(" {KEY}"), "it starts or ends with whitespace"),
            (&format!("{KEY}\n"), "it starts or ends with whitespace"),
            (&format!("{KEY}\x1b[2J"), "it holds a control character"),
        ] {
            match MasterKey::from_text(text) {
                Err(SecretError::BadKey { reason }) => assert_eq!(reason, why, "{text:?}"),
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_random_key_whose_end_matches_its_start_is_not_called_repetitive() {
        let key = "0c9fc723cd8db65de6bf984d158545c57430e623ec206af00c9bb2a470fff580";
        assert!(guessable(key).is_none(), "{:?}", guessable(key));
    }

    #[test]
    fn a_guessable_key_is_refused_saying_how_to_make_a_good_one() {
        for (text, why) in [
            (&"x".repeat(32), "it repeats the same 1 character over"),
            (
                &"password".repeat(4),
                "it repeats the same 8 characters over",
            ),
            (&"0123456789abcdef".repeat(2), "the same 16 characters"),
            (
                &format!("{}b", "a".repeat(31)),
                "only 2 different characters",
            ),
            (
                &format!("{}abcdefgh", "a".repeat(40)),
                "bits of entropy; at least 80 are needed",
            ),
            (
                &"abcdefghijklmnopqrstuvwxyz012345".to_string(),
                "runs through the alphabet",
            ),
        ] {
            match MasterKey::from_text(text) {
                Err(SecretError::BadKey { reason }) => {
                    assert!(reason.contains(why), "{text:?}: {reason}");
                    assert!(reason.contains("openssl rand -base64 32"), "{reason}");
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
        // What synprov and openssl make, and the keys of the tests and benchmarks.
        for good in [
            "0cd1f1d2a3b48c5e6f7081929a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d",
            "q3Vd8N1x+Zp0aL7mR2tY9wB4cE6fH5jK0nP3sU8vX1o=",
            "5be2c76d0b8a4f3e91d6a7c2e0f4b813",
            "test-master-key-0123456789abcdef0123456789",
            "benchmark-master-key-0123456789abcdef",
            KEY,
        ] {
            assert!(MasterKey::from_text(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn secret_names_are_told_from_paths_and_plain_settings() {
        for name in [
            "registration_shared_secret",
            "macaroon_secret_key",
            "form_secret",
            "password",
            "turn_shared_secret",
            "smtp_pass",
            "access_token",
            "REDISCLI_AUTH",
            "POSTGRES_PASSWORD",
            "--requirepass",
            "api-key",
            "\"client_secret\"",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "signing_key_path",
            "macaroon_secret_key_path",
            "password_file",
            "server_name",
            "key_refresh_interval",
            "trusted_key_servers",
            "--no-auth-warning",
            "-s",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn given_secrets_are_found_at_any_depth_and_only_under_secret_keys() {
        let table = serde_json::json!({
            "macaroon_secret_key": "m-given",
            "form_secret": "",
            "database": { "args": { "password": "db-given", "user": "synapse" } },
            "oidc_providers": [{ "idp_id": "x", "client_secret": "oidc-given" }],
            "api_keys": ["k1-given", "k2-given"],
            "max_upload_size": "100M",
            "registration_requires_token": true,
            "signing_key_path": "/data/k",
        });
        let serde_json::Value::Object(table) = table else {
            unreachable!("a json object")
        };
        let secrets = given_in(&table);
        let mut given: Vec<&str> = secrets.iter().map(Secret::expose).collect();
        given.sort_unstable();
        assert_eq!(
            given,
            ["db-given", "k1-given", "k2-given", "m-given", "oidc-given"]
        );
    }
}
