//! What a host sends back about a deployment (its manifest, pending mark, generation
//! records, images lists, audit log), made typed values by parsers that refuse what
//! synprov could not have written, naming where it was found. A host is not trusted: a
//! container's user can write into the deploy directory, and a compromised host can say
//! anything. So a path it names is a [`ManagedPath`] (never absolute, never `..`: never a
//! deletion or a write outside the deploy directory), a service it names is a
//! [`ServiceName`], and every list is bounded. The transport bounds the bytes
//! ([`crate::transport::OutputLimit`]) and the time (the step's deadline); what is shown
//! of it is escaped by [`crate::text`].

use std::fmt;

use miette::Diagnostic;
use thiserror::Error;

/// The longest path synprov writes in a deployment, in bytes.
pub const PATH_BYTES: usize = 1024;

/// The most entries a manifest may list: a deployment's files are a few dozen, a few
/// hundred with many workers and plugins.
pub const MANIFEST_ENTRIES: usize = 10_000;

/// The directories of a deployment that hold its data (Postgres', the media store) and
/// synprov's own state (`.synprov`: manifest, lock, generations, audit log).
pub const DATA_DIRS: [&str; 3] = ["pgsql", "media", ".synprov"];

/// The most generations a listing may name (`keep_generations` bounds what synprov keeps).
pub const GENERATIONS: usize = 1_000;

/// The most lines of an images list of a generation: one per image the deployment runs.
pub const IMAGE_LINES: usize = 1_000;

/// The most lines of the audit log read back (its end).
pub const AUDIT_LINES: usize = 1_000;

/// A path of a file synprov manages, relative to the deploy directory: normalised (no
/// `.`, `..` or empty component, no trailing `/`), never absolute, printable (no NUL, no
/// control character), at most [`PATH_BYTES`] long. Whatever names it, it stays inside
/// the deploy directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ManagedPath(String);

impl ManagedPath {
    /// `path` when it is one, or why not.
    pub fn parse(path: &str) -> Result<ManagedPath, &'static str> {
        if path.is_empty() {
            return Err("is empty");
        }
        if path.len() > PATH_BYTES {
            return Err("is longer than 1024 bytes");
        }
        if path.chars().any(char::is_control) {
            return Err("holds a control character");
        }
        if path.starts_with('/') {
            return Err("is absolute: it must lie inside the deploy directory");
        }
        if path.split('/').any(|part| matches!(part, "" | "." | "..")) {
            return Err("is not a plain relative path (a `..`, `.` or empty component)");
        }
        Ok(ManagedPath(path.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it lies in the deployment's data or synprov's own state ([`DATA_DIRS`]):
    /// no file synprov renders does, so a manifest naming one would turn an apply or a
    /// destroy into a deletion of the database, the media or the generations.
    pub fn in_data(&self) -> bool {
        DATA_DIRS
            .iter()
            .any(|d| self.0 == *d || self.0.strip_prefix(d).is_some_and(|r| r.starts_with('/')))
    }
}

impl fmt::Display for ManagedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a Compose service as synprov names them (`synapse`, `worker-media-1`, a
/// plugin's service): lowercase letters, digits, `-`, `_` and `.`, starting with a letter
/// or digit, at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ServiceName(String);

impl ServiceName {
    /// `name` when it is one, or why not.
    pub fn parse(name: &str) -> Result<ServiceName, &'static str> {
        let mut chars = name.chars();
        let plain = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
            && name.len() <= 63;
        if plain {
            Ok(ServiceName(name.to_string()))
        } else {
            Err("is not a service name (lowercase letters, digits, `-`, `_`, `.`)")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An entry of a file of a deployment that synprov could not have written, before the
/// host and directory are known (see [`Refused::at`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The deployment, as the script's output named it.
    pub deployment: String,
    /// The file, relative to the deploy directory.
    pub file: &'static str,
    pub entry: String,
    pub why: String,
}

impl Refused {
    pub fn new(deployment: &str, file: &'static str, entry: &str, why: &str) -> Refused {
        Refused {
            deployment: deployment.to_string(),
            file,
            entry: entry.to_string(),
            why: why.to_string(),
        }
    }

    /// The refusal located: on `host`, in the deploy directory `dir`.
    pub fn at(self, host: &str, dir: &str) -> HostDataError {
        HostDataError::Refused {
            host: host.to_string(),
            dir: crate::text::one_line(dir).into_owned(),
            file: self.file,
            entry: crate::text::one_line(&self.entry).into_owned(),
            why: self.why,
        }
    }
}

/// What a host sent back that synprov refuses to act on.
#[derive(Debug, Error, Diagnostic)]
pub enum HostDataError {
    #[error("{host}: {dir}/{file} holds `{entry}`, which {why}")]
    #[diagnostic(help(
        "synprov never writes such an entry: the file was changed on the host (by hand, or by a process that can write there). Look at it, and move it away to make synprov treat the deployment as new"
    ))]
    Refused {
        host: String,
        dir: String,
        file: &'static str,
        entry: String,
        why: String,
    },
}

/// A `KEY=VALUE` state file a host's script writes for synprov to read (the last backup, the
/// last certificate renewal): only its first `max` bytes are read, a key's first line is its
/// value, and nothing else is believed.
pub struct StateFile<'a>(&'a str);

impl<'a> StateFile<'a> {
    pub fn new(text: &'a str, max: usize) -> StateFile<'a> {
        let mut end = max.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        StateFile(&text[..end])
    }

    /// The value of `key`; empty when the file has none.
    pub fn field(&self, key: &str) -> &'a str {
        self.0
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
    }

    /// The value of `key` as an RFC 3339 time.
    pub fn time(&self, key: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::parse_from_rfc3339(self.field(key))
            .ok()
            .map(|t| t.to_utc())
    }

    /// The value of `key` as plain text: control characters dropped, at most `chars`.
    pub fn text(&self, key: &str, chars: usize) -> String {
        (self.field(key).chars())
            .filter(|c| !c.is_control())
            .take(chars)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_managed_path_stays_inside_the_deploy_directory() {
        for good in [
            "docker-compose.yml",
            "synapse/homeserver.yaml",
            "a b/c$(x)",
            "-x",
        ] {
            assert_eq!(ManagedPath::parse(good).unwrap().as_str(), good);
        }
        let data = |p: &str| ManagedPath::parse(p).unwrap().in_data();
        assert!(data("pgsql/PG_VERSION") && data("media") && data(".synprov/audit.log"));
        assert!(!data("pgsqlx/a") && !data("synapse/media") && !data("docker-compose.yml"));
        for bad in [
            "",
            "/etc/passwd",
            "../canary/x",
            "a/../../b",
            "a/./b",
            "a//b",
            "a/",
            ".",
            "..",
            "a\0b",
            "a\nb",
            "a\x1b[2J",
            &"x".repeat(PATH_BYTES + 1),
        ] {
            assert!(ManagedPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_service_name_is_one_plain_word() {
        for good in ["synapse", "worker-media-1", "my_bridge.2"] {
            assert!(ServiceName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Synapse",
            "-x",
            "a b",
            "a\nb",
            "s\n  ~ forged",
            &"a".repeat(64),
        ] {
            assert!(ServiceName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_refusal_names_host_directory_file_and_the_entry_escaped() {
        let error =
            Refused::new("d", ".synprov/manifest", "../x\x1b[31m", "is bad").at("hs1", "/opt/d");
        assert_eq!(
            error.to_string(),
            "hs1: /opt/d/.synprov/manifest holds `../x\\x1b[31m`, which is bad"
        );
    }

    #[test]
    fn a_state_file_is_read_within_its_bound_whatever_its_bytes() {
        let file = StateFile::new(
            "at=2026-12-07T06:00:00Z\nnote=a\u{1b}[31mb\u{7}\nat=x\n",
            4096,
        );
        assert_eq!(
            file.time("at").unwrap().to_rfc3339(),
            "2026-12-07T06:00:00+00:00"
        );
        assert_eq!(file.text("note", 10), "a[31mb");
        assert_eq!(file.field("missing"), "");
        let cut = format!("k=v\n{}", "é".repeat(10));
        let file = StateFile::new(&cut, 6);
        assert_eq!(
            file.0, "k=v\n\u{e9}",
            "cut at a character's boundary, never past the bound"
        );
    }
}
