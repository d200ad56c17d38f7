//! The record of a generation (`record.json`): enough to put the deployment back as it was
//! and to verify it, without the inventory of that time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Origin;
use crate::hash::sha256_hex;
use crate::health::HealthTarget;
use crate::host_data::{ManagedPath, ServiceName};
use crate::inventory::Grant;
use crate::render::{DeploymentFiles, RenderedDir, RenderedFile};

/// The record format this synprov writes. A later synprov adds fields with defaults (an
/// older record still reads) and raises the number only when a reader must refuse.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    pub deployment: String,
    pub server_name: String,
    pub origin: Origin,
    pub files: Vec<RecordedFile>,
    #[serde(default)]
    pub dirs: Vec<RenderedDir>,
    /// The images the services run, as referenced in the Compose file.
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub health: Vec<HealthTarget>,
    /// The grants of the plugins that added to the deployment, as the inventory spells them.
    #[serde(default)]
    pub plugin_grants: Vec<(String, Vec<String>)>,
}

/// A file as it was written: its copy is `files/PATH` in the generation's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedFile {
    pub path: String,
    pub sha256: String,
    pub mode: u32,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub keep_existing: bool,
    #[serde(default)]
    pub owner: Option<(u32, u32)>,
    #[serde(default)]
    pub used_by: Vec<String>,
    /// Its readers reload it rather than being recreated (absent in older records).
    #[serde(default)]
    pub reloads: bool,
}

impl Record {
    /// The record of `files` as written on the host. A file kept as it was (the signing
    /// key) is recorded with the hash the host has (`host_hashes`), not the rendered one.
    pub fn of(
        files: &DeploymentFiles,
        host_hashes: &BTreeMap<String, String>,
        origin: Origin,
    ) -> Record {
        Record {
            format: FORMAT,
            deployment: files.deployment.clone(),
            server_name: files.server_name.clone(),
            origin,
            files: files
                .files
                .iter()
                .map(|f| RecordedFile {
                    sha256: host_hashes
                        .get(&f.path)
                        .filter(|_| f.keep_existing)
                        .cloned()
                        .unwrap_or_else(|| sha256_hex(&f.contents)),
                    path: f.path.clone(),
                    mode: f.mode,
                    secret: f.secret,
                    keep_existing: f.keep_existing,
                    owner: f.owner,
                    used_by: f.used_by.clone(),
                    reloads: f.reloads,
                })
                .collect(),
            dirs: files.dirs.clone(),
            images: files.images.clone(),
            health: files.health.clone(),
            plugin_grants: files
                .plugin_grants
                .iter()
                .map(|(plugin, grants)| {
                    (
                        plugin.clone(),
                        grants.iter().map(ToString::to_string).collect(),
                    )
                })
                .collect(),
        }
    }

    /// Reads a record the host kept for the deployment in `deploy_dir`. The host is not
    /// trusted with the paths: each must be a [`ManagedPath`], as synprov writes them, since
    /// they are written to again on a rollback; each service a [`ServiceName`]; each health
    /// target inside `deploy_dir` (a socket elsewhere is never connected to).
    pub fn parse(json: &str, deploy_dir: &str) -> Result<Record, String> {
        let record: Record = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if record.format > FORMAT {
            return Err(format!(
                "it has format {}, this synprov reads up to {FORMAT}: use a newer synprov",
                record.format
            ));
        }
        for path in record
            .files
            .iter()
            .map(|f| &f.path)
            .chain(record.dirs.iter().map(|d| &d.path))
        {
            ManagedPath::parse(path).map_err(|why| format!("the path {path:?} {why}"))?;
        }
        for service in record.files.iter().flat_map(|f| &f.used_by) {
            ServiceName::parse(service).map_err(|why| format!("the service {service:?} {why}"))?;
        }
        for target in &record.health {
            target.inside(deploy_dir)?;
        }
        for image in &record.images {
            crate::inventory::ImageRef::parse(image)?;
        }
        Ok(record)
    }

    /// The deployment's files as this record has them, with `contents` by path read back
    /// from the generation's copies; each must have the recorded hash. The secret values are
    /// not known (`secrets: None`).
    pub fn files(
        &self,
        deploy_dir: &str,
        mut contents: BTreeMap<String, String>,
    ) -> Result<DeploymentFiles, String> {
        let mut files = Vec::new();
        for file in &self.files {
            let text = contents
                .remove(&file.path)
                .ok_or_else(|| format!("the copy of {} is missing", file.path))?;
            if sha256_hex(&text) != file.sha256 {
                return Err(format!(
                    "the copy of {} does not have the recorded hash",
                    file.path
                ));
            }
            files.push(RenderedFile {
                path: file.path.clone(),
                contents: text,
                mode: file.mode,
                secret: file.secret,
                keep_existing: file.keep_existing,
                owner: file.owner,
                used_by: file.used_by.clone(),
                reloads: file.reloads,
            });
        }
        Ok(DeploymentFiles {
            deployment: self.deployment.clone(),
            server_name: self.server_name.clone(),
            deploy_dir: deploy_dir.to_string(),
            files,
            dirs: self.dirs.clone(),
            secrets: None,
            health: self.health.clone(),
            images: self.images.clone(),
            preload: false,
            plugin_grants: self
                .plugin_grants
                .iter()
                .map(|(plugin, grants)| {
                    (
                        plugin.clone(),
                        grants.iter().filter_map(|g| Grant::parse(g).ok()).collect(),
                    )
                })
                .collect(),
            postgres: Vec::new(),
            backup_remote: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the first synprov to write them did: only the fields it had.
    const OLDEST: &str = r#"{"format":1,"deployment":"d","server_name":"example.org",
        "origin":{"at":"2026-11-30T10:00:00Z","user":"ops","controller":"laptop",
                  "command":"apply","synprov":"0.1.0"},
        "files":[{"path":"synapse/homeserver.yaml","sha256":"SHA","mode":420}]}"#;

    #[test]
    fn a_record_of_an_older_synprov_reads_with_defaults() {
        let record = Record::parse(OLDEST, "/opt/d").unwrap();
        assert_eq!(record.origin.inventory_sha256, None);
        assert!(record.images.is_empty() && record.health.is_empty() && record.dirs.is_empty());
        let file = &record.files[0];
        assert!(!file.secret && !file.keep_existing && file.owner.is_none());
    }

    #[test]
    fn a_record_of_a_newer_format_or_with_a_path_out_of_the_deployment_is_refused() {
        let newer = OLDEST.replace("\"format\":1", "\"format\":2");
        assert!(
            Record::parse(&newer, "/opt/d")
                .unwrap_err()
                .contains("use a newer synprov")
        );
        for path in ["../../etc/passwd", "/etc/passwd", "a/../../b"] {
            let hostile = OLDEST.replace("synapse/homeserver.yaml", path);
            assert!(Record::parse(&hostile, "/opt/d").is_err(), "{path}");
        }
    }

    #[test]
    fn a_record_whose_health_check_or_service_lies_outside_the_deployment_is_refused() {
        let with = |health: &str, used_by: &str| {
            OLDEST.replace(
                r#""mode":420}]"#,
                &format!(r#""mode":420,"used_by":[{used_by}]}}],"health":[{health}]"#),
            )
        };
        let target = |dir: &str, process: &str, path: &str| {
            format!(
                r#"{{"deployment":"d","deploy_dir":"{dir}","process":"{process}","service":"synapse",
                    "probe":{{"synapse":{{"unix":{{"path":"{path}"}}}}}}}}"#
            )
        };
        let main = target("/opt/d", "main", "/sockets/main.sock");
        assert!(Record::parse(&with(&main, r#""synapse""#), "/opt/d").is_ok());
        for (health, used_by) in [
            (
                target("/var/run", "main", "/sockets/main.sock"),
                r#""synapse""#,
            ),
            (
                target("/opt/d", "main", "/sockets/../../run/docker.sock"),
                r#""synapse""#,
            ),
            (target("/opt/d", "main", "/elsewhere.sock"), r#""synapse""#),
            (
                target("/opt/d", "main\\u001b[2J", "/sockets/main.sock"),
                r#""synapse""#,
            ),
            (main.clone(), r#""synapse\n  7 forged""#),
        ] {
            let hostile = with(&health, used_by);
            assert!(Record::parse(&hostile, "/opt/d").is_err(), "{hostile}");
        }
    }

    #[test]
    fn a_record_reads_back_as_written_and_gives_back_its_files_only_with_their_hashes() {
        let files = DeploymentFiles::for_test(
            "/opt/d",
            vec![RenderedFile::for_test(
                "synapse/homeserver.yaml",
                "a: 1\n",
                0o644,
            )],
            Vec::new(),
        );
        let record = Record::of(&files, &BTreeMap::new(), Origin::here("apply", None));
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(Record::parse(&json, "/opt/d").unwrap(), record);
        let copies = |text: &str| {
            BTreeMap::from([("synapse/homeserver.yaml".to_string(), text.to_string())])
        };
        let back = record.files("/opt/d", copies("a: 1\n")).unwrap();
        assert_eq!(back.files, files.files);
        assert!(
            record
                .files("/opt/d", copies("a: 2\n"))
                .unwrap_err()
                .contains("does not have the recorded hash")
        );
        assert!(record.files("/opt/d", BTreeMap::new()).is_err());
    }
}
