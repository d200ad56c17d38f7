//! Saved plans (`plan --out FILE`, `apply FILE`): the plan an operator reviewed, kept in a
//! file so that the apply does exactly that, or refuses.
//!
//! The file is JSON. It holds what each host was found to have (a digest of its facts and
//! a summary) and what would change there, by path and SHA-256; never a file's contents,
//! so that it holds no secret and may be reviewed or attached to a change request. The
//! contents are derived again at apply time from the inventory it names (whose SHA-256 it
//! records), the master key beside it and the templates `apply` is given (the SHA-256 of
//! those of `--roles` is recorded; a plan file never chooses them); each host's plan is
//! made again and compared.

mod compare;
mod host;
mod read;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use miette::Diagnostic;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use compare::{differences, hash, short};
pub use host::{
    FactsRecord, FactsSummary, FileRecord, ImageLoad, PluginGrants, SavedDeployment, SavedHost,
    ServiceChanges,
};
pub use read::read_text;

/// The first field of every plan file: what tells one from an inventory.
pub const FORMAT: &str = "synprov-plan";

/// The layout of the file; another number is refused rather than half understood. 2: the
/// templates directory is recorded with the hash of its templates.
pub const VERSION: u32 = 2;

/// This synprov's version, recorded in the plans it makes: another version may render the
/// same inventory otherwise.
pub const SYNPROV_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A plan of every selected host, and what it was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    pub version: u32,
    pub synprov_version: String,
    pub created: DateTime<Utc>,
    /// The inventory, as an absolute path: the plan is applied from any directory.
    pub inventory: PathBuf,
    pub inventory_sha256: String,
    /// The hosts or groups `--limit` named (none: every host).
    pub limit: Vec<String>,
    /// The directory whose templates replaced the built-in ones (`--roles`), if any, and the
    /// hash of the templates in effect with it.
    pub roles: Option<Roles>,
    /// Made for `apply --files-only`: Docker, Compose and images are no part of it.
    pub files_only: bool,
    pub hosts: Vec<SavedHost>,
}

/// The templates a plan was made with, when not the built-in ones alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    /// The `--roles` directory, absolute.
    pub dir: PathBuf,
    /// SHA-256 of the templates in effect: built-in and overridden
    /// ([`crate::render::Templates::sha256`]).
    pub sha256: String,
}

#[derive(Debug, Error, Diagnostic)]
pub enum SavedPlanError {
    #[error("cannot read {path}: {why}")]
    #[diagnostic(help(
        "give the path of a plan file written by `synprov plan INVENTORY --out FILE`, or of an inventory"
    ))]
    Unreadable { path: String, why: String },

    #[error("{path} is not a synprov plan: {reason}")]
    #[diagnostic(help(
        "a plan file is written by `synprov plan INVENTORY --out FILE`; an inventory is TOML"
    ))]
    NotAPlan { path: String, reason: String },

    #[error(
        "{path} is a plan of format {found}; this synprov ({SYNPROV_VERSION}) reads format {VERSION}"
    )]
    #[diagnostic(help(
        "make the plan again with this synprov: `synprov plan INVENTORY --out {path}`"
    ))]
    Version { path: String, found: u32 },

    #[error("{path} was made by synprov {made_by}; this is synprov {SYNPROV_VERSION}")]
    #[diagnostic(help(
        "another version may render the inventory otherwise: make the plan again with this one (`synprov plan {inventory} --out {path}`)"
    ))]
    OtherSynprov {
        path: String,
        made_by: String,
        inventory: String,
    },

    #[error("{path} was made at {created}, {age} ago: older than --max-age {max_age}")]
    #[diagnostic(help(
        "review a fresh plan (`synprov plan {inventory} --out {path}`), or accept an older one with --max-age"
    ))]
    TooOld {
        path: String,
        created: String,
        age: String,
        max_age: String,
        inventory: String,
    },

    #[error(
        "inventory {inventory} changed since {path} was made (sha256 {planned}… then, {now}… now)"
    )]
    #[diagnostic(help(
        "nothing was applied; review the change and make a new plan: `synprov plan {inventory} --out {path}`"
    ))]
    InventoryChanged {
        path: String,
        inventory: String,
        planned: String,
        now: String,
    },

    #[error("{path} was made with the built-in templates, and --roles {given} replaces some")]
    #[diagnostic(help(
        "apply it without --roles, or save a plan with those templates: `{remake}`"
    ))]
    TemplatesAdded {
        path: String,
        given: String,
        remake: String,
    },

    #[error(
        "{path} was made with the templates of {dir} (sha256 {planned}…), and no --roles gives them"
    )]
    #[diagnostic(help("give them as the plan was made: `synprov apply {path} --roles {dir}`"))]
    TemplatesMissing {
        path: String,
        dir: String,
        planned: String,
    },

    #[error(
        "the templates of --roles {given} (sha256 {now}…) are not those {path} was made with (sha256 {planned}…)"
    )]
    #[diagnostic(help(
        "nothing was applied; review the change of the templates and save a new plan: `{remake}`"
    ))]
    TemplatesChanged {
        path: String,
        given: String,
        planned: String,
        now: String,
        remake: String,
    },
}

/// Just what tells a plan file and its format: read before the rest, so that a plan of
/// another format is named as such, not as a missing field.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<u32>,
}

impl SavedPlan {
    /// A plan of `hosts`, made now by this synprov from the inventory at `inventory`
    /// (absolute) whose SHA-256 is `inventory_sha256`.
    pub fn new(
        inventory: PathBuf,
        inventory_sha256: String,
        limit: Vec<String>,
        roles: Option<Roles>,
        files_only: bool,
        hosts: Vec<SavedHost>,
    ) -> Self {
        SavedPlan {
            format: FORMAT.into(),
            version: VERSION,
            synprov_version: SYNPROV_VERSION.into(),
            created: Utc::now(),
            inventory,
            inventory_sha256,
            limit,
            roles,
            files_only,
            hosts,
        }
    }

    /// Whether `text` is to be read as a plan rather than an inventory: a JSON object. A
    /// TOML inventory cannot start with `{`.
    pub fn is_plan(text: &str) -> bool {
        text.trim_start().starts_with('{')
    }

    /// Reads a plan file's text (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<SavedPlan, SavedPlanError> {
        let path = path.display().to_string();
        let not_a_plan = |reason: String| SavedPlanError::NotAPlan {
            path: path.clone(),
            reason,
        };
        let located =
            |e: serde_json::Error| format!("line {} column {}: {e}", e.line(), e.column());
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| not_a_plan(located(e)))?;
        let header = Header::deserialize(&value).map_err(|e| not_a_plan(e.to_string()))?;
        if header.format.as_deref() != Some(FORMAT) {
            return Err(not_a_plan(format!("its `format` is not \"{FORMAT}\"")));
        }
        match header.version {
            Some(VERSION) => {}
            found => {
                return Err(SavedPlanError::Version {
                    path,
                    found: found.unwrap_or(0),
                });
            }
        }
        if let Some((at, c)) = read::control_character(&value, "") {
            return Err(not_a_plan(format!(
                "{} holds the control character U+{:04X}, which synprov never writes",
                at.escape_debug(),
                c as u32
            )));
        }
        drop(value);
        let plan: SavedPlan = serde_json::from_str(text).map_err(|e| not_a_plan(located(e)))?;
        match read::malformed(&plan) {
            Some(reason) => Err(not_a_plan(reason)),
            None => Ok(plan),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan serializes") + "\n"
    }

    /// The number of changes on all hosts: none means applying the plan is a no-op.
    pub fn change_count(&self) -> usize {
        self.hosts.iter().map(|h| h.changes).sum()
    }

    pub fn host(&self, name: &str) -> Option<&SavedHost> {
        self.hosts.iter().find(|h| h.host == name)
    }

    /// Refuses a plan made by another synprov, or more than `max_age` before `now`
    /// (`path` names the plan file).
    pub fn check_fresh(
        &self,
        path: &Path,
        now: DateTime<Utc>,
        max_age: Duration,
    ) -> Result<(), SavedPlanError> {
        if self.synprov_version != SYNPROV_VERSION {
            return Err(SavedPlanError::OtherSynprov {
                path: path.display().to_string(),
                made_by: self.synprov_version.clone(),
                inventory: self.inventory.display().to_string(),
            });
        }
        let age = (now - self.created).to_std().unwrap_or_default();
        if age > max_age {
            return Err(SavedPlanError::TooOld {
                path: path.display().to_string(),
                created: self.created.to_rfc3339(),
                age: humantime::format_duration(Duration::from_secs(age.as_secs())).to_string(),
                max_age: humantime::format_duration(max_age).to_string(),
                inventory: self.inventory.display().to_string(),
            });
        }
        Ok(())
    }

    /// Refuses the plan when the templates in effect (whose SHA-256 is `sha256`, with the
    /// `--roles` directory `given`, if any) are not those it was made with; `remake` is the
    /// command that saves a plan with them.
    pub fn check_templates(
        &self,
        path: &Path,
        given: Option<&Path>,
        sha256: &str,
        remake: &str,
    ) -> Result<(), SavedPlanError> {
        let path = path.display().to_string();
        match (&self.roles, given) {
            (None, None) => Ok(()),
            (None, Some(given)) => Err(SavedPlanError::TemplatesAdded {
                path,
                given: given.display().to_string(),
                remake: remake.to_string(),
            }),
            (Some(roles), None) => Err(SavedPlanError::TemplatesMissing {
                path,
                dir: roles.dir.display().to_string(),
                planned: short(&roles.sha256).to_string(),
            }),
            (Some(roles), Some(_)) if roles.sha256 == sha256 => Ok(()),
            (Some(roles), Some(given)) => Err(SavedPlanError::TemplatesChanged {
                path,
                given: given.display().to_string(),
                planned: short(&roles.sha256).to_string(),
                now: short(sha256).to_string(),
                remake: remake.to_string(),
            }),
        }
    }

    /// Refuses the plan when its inventory's SHA-256 is now `sha256`.
    pub fn check_inventory(&self, path: &Path, sha256: &str) -> Result<(), SavedPlanError> {
        if sha256 == self.inventory_sha256 {
            return Ok(());
        }
        Err(SavedPlanError::InventoryChanged {
            path: path.display().to_string(),
            inventory: self.inventory.display().to_string(),
            planned: short(&self.inventory_sha256).to_string(),
            now: short(sha256).to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Change;

    fn host(name: &str, homeserver_before: &str) -> SavedHost {
        SavedHost {
            host: name.into(),
            facts: FactsRecord {
                digest: "f".repeat(64),
                summary: FactsSummary {
                    os: "debian 12".into(),
                    arch: "x86_64".into(),
                    init: "systemd".into(),
                    docker: "Docker 27.3.1 running".into(),
                    compose: "Compose v2".into(),
                },
            },
            changes: 1,
            install_docker: false,
            start_docker: false,
            install_compose: false,
            load_images: Vec::new(),
            sending: std::collections::BTreeMap::new(),
            deployments: vec![SavedDeployment {
                deployment: "d".into(),
                dir: "/opt/x".into(),
                files: vec![FileRecord {
                    path: "synapse/homeserver.yaml".into(),
                    change: Change::Update,
                    before: Some(homeserver_before.into()),
                    after: Some("c".repeat(64)),
                }],
                unchanged: 31,
                restart: vec!["synapse".into()],
                reload: Vec::new(),
                interrupted: false,
                upgrade: None,
                removed_workers: Vec::new(),
                services: ServiceChanges::default(),
                plugin_grants: Vec::new(),
                postgres: Vec::new(),
            }],
            orphans: Vec::new(),
        }
    }

    fn plan() -> SavedPlan {
        SavedPlan::new(
            "/srv/fleet.toml".into(),
            "e".repeat(64),
            vec!["eu".into()],
            None,
            false,
            vec![host("hs1", &"a".repeat(64)), host("hs2", &"a".repeat(64))],
        )
    }

    #[test]
    fn a_plan_reads_back_as_it_was_written_with_its_format_first() {
        let plan = plan();
        let json = plan.to_json();
        assert!(
            json.starts_with("{\n  \"format\": \"synprov-plan\",\n  \"version\": 2,"),
            "{json}"
        );
        assert!(SavedPlan::is_plan(&json));
        assert!(!SavedPlan::is_plan("[hosts.a]\naddress = \"x\"\n"));
        assert_eq!(SavedPlan::parse(Path::new("p"), &json).unwrap(), plan);
        assert_eq!(plan.change_count(), 2);
    }

    #[test]
    fn a_plan_of_another_format_version_is_named_as_such() {
        let json = plan()
            .to_json()
            .replace("\"version\": 2,", "\"version\": 7,");
        let error = SavedPlan::parse(Path::new("fleet.plan"), &json).unwrap_err();
        assert!(matches!(error, SavedPlanError::Version { found: 7, .. }));
        assert_eq!(
            error.to_string(),
            format!(
                "fleet.plan is a plan of format 7; this synprov ({SYNPROV_VERSION}) reads format 2"
            )
        );
        let other = SavedPlan::parse(Path::new("x.json"), "{\"format\": \"other\"}").unwrap_err();
        assert_eq!(
            other.to_string(),
            "x.json is not a synprov plan: its `format` is not \"synprov-plan\""
        );
        let broken = SavedPlan::parse(Path::new("x"), "{\n\"format\": ").unwrap_err();
        assert!(broken.to_string().contains("line 2 column"), "{broken}");
    }

    #[test]
    fn a_control_character_anywhere_in_a_plan_is_refused_naming_where() {
        let json = plan().to_json().replace(
            "\"host\": \"hs2\"",
            "\"host\": \"hs2\\nhost hs3: no changes\"",
        );
        let error = SavedPlan::parse(Path::new("p"), &json).unwrap_err();
        assert_eq!(
            error.to_string(),
            "p is not a synprov plan: hosts[1].host holds the control character U+000A, which synprov never writes"
        );
        let json = plan().to_json().replace("\"eu\"", "\"\\u001b[2J\"");
        let error = SavedPlan::parse(Path::new("p"), &json).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("limit[0] holds the control character U+001B")
        );
    }

    #[test]
    fn a_plan_whose_hashes_are_not_hashes_or_paths_not_absolute_is_refused() {
        for (from, to, reason) in [
            (
                "e".repeat(64),
                "E".repeat(64),
                "its inventory_sha256 is not a SHA-256",
            ),
            (
                "a".repeat(64),
                "a".repeat(63),
                "a hash of synapse/homeserver.yaml in /opt/x is not a SHA-256",
            ),
            (
                "f".repeat(64),
                "f".repeat(65),
                "the facts digest of host hs1 is not a SHA-256",
            ),
            (
                "/srv/fleet.toml".into(),
                "fleet.toml".into(),
                "its inventory path is not absolute",
            ),
        ] {
            let json = plan().to_json().replacen(&from, &to, 1);
            let error = SavedPlan::parse(Path::new("p"), &json).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("p is not a synprov plan: {reason}")
            );
        }
    }

    #[test]
    fn templates_other_than_those_of_the_plan_are_refused_saying_what_to_give() {
        let path = Path::new("fleet.plan");
        let builtin = plan();
        let roles = Path::new("/srv/roles");
        assert!(builtin.check_templates(path, None, "x", "R").is_ok());
        assert_eq!(
            builtin
                .check_templates(path, Some(roles), "x", "R")
                .unwrap_err()
                .to_string(),
            "fleet.plan was made with the built-in templates, and --roles /srv/roles replaces some"
        );
        let mut custom = plan();
        custom.roles = Some(Roles {
            dir: roles.into(),
            sha256: "1".repeat(64),
        });
        assert!(
            custom
                .check_templates(path, Some(roles), &"1".repeat(64), "R")
                .is_ok()
        );
        assert_eq!(
            custom
                .check_templates(path, None, "x", "R")
                .unwrap_err()
                .to_string(),
            "fleet.plan was made with the templates of /srv/roles (sha256 111111111111…), and no --roles gives them"
        );
        assert_eq!(
            custom
                .check_templates(path, Some(Path::new("other")), &"2".repeat(64), "R")
                .unwrap_err()
                .to_string(),
            "the templates of --roles other (sha256 222222222222…) are not those fleet.plan was made with (sha256 111111111111…)"
        );
    }

    #[test]
    fn a_plan_older_than_max_age_or_of_another_inventory_is_refused() {
        let plan = plan();
        let day = Duration::from_secs(24 * 3600);
        let path = Path::new("fleet.plan");
        assert!(plan.check_fresh(path, plan.created, day).is_ok());
        let later = plan.created + chrono::Duration::hours(25);
        let error = plan.check_fresh(path, later, day).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("1day 1h ago: older than --max-age 1day"),
            "{error}"
        );
        assert!(plan.check_inventory(path, &"e".repeat(64)).is_ok());
        let changed = plan.check_inventory(path, &"9".repeat(64)).unwrap_err();
        assert_eq!(
            changed.to_string(),
            "inventory /srv/fleet.toml changed since fleet.plan was made (sha256 eeeeeeeeeeee… then, 999999999999… now)"
        );
    }

    #[test]
    fn a_host_that_changed_since_the_plan_is_named_with_the_file_and_hashes() {
        let saved = host("hs2", &"a".repeat(64));
        assert!(differences(&saved, &saved.clone()).is_empty());

        let edited = host("hs2", &"b".repeat(64));
        assert_eq!(
            differences(&saved, &edited),
            [
                "/opt/x/synapse/homeserver.yaml changed on the host since the plan (sha256 aaaaaaaaaaaa… now bbbbbbbbbbbb…)"
            ]
        );

        let mut other = saved.clone();
        other.facts.summary.docker = "Docker 28.0.0 running".into();
        other.facts.digest = "0".repeat(64);
        other.deployments[0].restart.push("rooms1".into());
        other.deployments[0].files.push(FileRecord {
            path: "nginx/nginx.conf".into(),
            change: Change::Create,
            before: None,
            after: Some("d".repeat(64)),
        });
        assert_eq!(
            differences(&saved, &other),
            [
                "/opt/x/nginx/nginx.conf was removed from the host since the plan",
                "d: restart was [\"synapse\"], now [\"synapse\",\"rooms1\"]",
                "the host's docker was `Docker 27.3.1 running`, now `Docker 28.0.0 running`",
            ]
        );

        let mut digest_only = saved.clone();
        digest_only.facts.digest = "0".repeat(64);
        assert_eq!(
            differences(&saved, &digest_only),
            ["the host's facts changed since the plan (digest ffffffffffff now 000000000000)"]
        );
    }

    #[test]
    fn how_much_of_an_image_is_sent_is_shown_not_compared() {
        let saved = host("hs2", &"a".repeat(64));
        let mut now = saved.clone();
        let sending = crate::plan::Sending { bytes: 5, of: 9 };
        now.sending.insert("synprov/synapse:1".into(), sending);
        assert!(differences(&saved, &now).is_empty());
        let json = serde_json::to_string(&now).unwrap();
        assert!(json.contains(r#""sending":{"synprov/synapse:1":{"bytes":5,"of":9}}"#));
        let read: SavedHost = serde_json::from_str(&json).unwrap();
        assert_eq!(read, now);
        let older = serde_json::to_string(&saved).unwrap();
        assert!(
            !older.contains("sending"),
            "a plan without it reads as before"
        );
    }
}
