//! One host's plan in the form a plan file keeps it: names and hashes, never contents, so
//! that no secret is written to the file. `plan` shows a host from this form (with diffs
//! added from what it has in memory), and `apply PLAN` compares a fresh one against it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::apply::Prepared;
use crate::apply::files::Fetched;
use crate::facts::{Compose, Facts, Init};
use crate::generations::index::Indexed;
use crate::plan::{Change, RemovedWorker, Sending, Upgrade, compose_service_changes, sha256_hex};
use crate::render::HostFiles;

/// What one host will be asked to do, and what it was found to have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedHost {
    pub host: String,
    pub facts: FactsRecord,
    /// The number of changes, as `plan` counts them (files, installs, images).
    pub changes: usize,
    pub install_docker: bool,
    pub start_docker: bool,
    pub install_compose: bool,
    /// Images to stream from this machine, with the ID each has here: a rebuilt image is
    /// another plan.
    pub load_images: Vec<ImageLoad>,
    /// How much of each image is sent (the layers the host holds are not), by image:
    /// shown, not compared (it changes with the host's other images, never what it gets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sending: BTreeMap<String, Sending>,
    pub deployments: Vec<SavedDeployment>,
    /// Deployments the host's index names in directories the inventory has none in.
    pub orphans: Vec<Indexed>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLoad {
    pub image: String,
    pub id: String,
}

/// The facts a plan was made against: a digest of them all (but free space), and what a
/// reader wants to see of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactsRecord {
    pub digest: String,
    pub summary: FactsSummary,
}

/// The system facts that decide the installs, named so that a change reads as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactsSummary {
    pub os: String,
    pub arch: String,
    pub init: String,
    pub docker: String,
    pub compose: String,
}

impl FactsSummary {
    fn of(facts: &Facts) -> Self {
        FactsSummary {
            os: facts.os.clone(),
            arch: facts.arch.clone(),
            init: match facts.init {
                Init::Systemd => "systemd",
                Init::SysV => "sysv",
                Init::None => "no init",
            }
            .into(),
            docker: match (&facts.docker, facts.docker_running) {
                (None, _) => "no Docker".into(),
                (Some(version), true) => format!("Docker {version} running"),
                (Some(version), false) => format!("Docker {version} stopped"),
            },
            compose: match &facts.compose {
                Compose::V2(_) => "Compose v2",
                Compose::V1(_) => "Compose v1",
                Compose::Missing => "no Compose",
            }
            .into(),
        }
    }

    /// Each fact with its name, in the order they are shown.
    pub fn fields(&self) -> [(&'static str, &str); 5] {
        [
            ("os", &self.os),
            ("arch", &self.arch),
            ("init", &self.init),
            ("docker", &self.docker),
            ("compose", &self.compose),
        ]
    }
}

impl fmt::Display for FactsSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values: Vec<&str> = self.fields().iter().map(|(_, value)| *value).collect();
        f.write_str(&values.join(", "))
    }
}

/// What changes in one deployment directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDeployment {
    pub deployment: String,
    pub dir: String,
    pub files: Vec<FileRecord>,
    pub unchanged: usize,
    pub restart: Vec<String>,
    /// Services reloaded (SIGHUP) for changed files (absent in plans of older synprovs).
    #[serde(default)]
    pub reload: Vec<String>,
    pub interrupted: bool,
    pub upgrade: Option<Upgrade>,
    pub removed_workers: Vec<RemovedWorker>,
    /// Services of `docker-compose.yml` added, changed and removed when it is updated.
    pub services: ServiceChanges,
    /// Each plugin applying to the deployment, with what it is granted.
    pub plugin_grants: Vec<PluginGrants>,
    /// How its Postgres is sized, a setting and why a line; empty where it does not run
    /// (and in plans saved before synprov sized it).
    #[serde(default)]
    pub postgres: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChanges {
    pub added: Vec<String>,
    pub recreated: Vec<String>,
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginGrants {
    pub plugin: String,
    pub grants: Vec<String>,
}

/// A file created, changed or removed: the SHA-256 of what the host has (`before`, none
/// for a new file) and of what is written (`after`, none for a removal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub change: Change,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl SavedHost {
    /// The number of files left as they are, in all deployments.
    pub fn unchanged(&self) -> usize {
        self.deployments.iter().map(|d| d.unchanged).sum()
    }

    /// The record of a prepared host. `files_only`: the apply will leave Docker, Compose
    /// and the images alone, so they are no part of the plan.
    pub fn of(files: &HostFiles, prepared: &Prepared, files_only: bool) -> Self {
        let mut plan = prepared.plan.clone();
        if files_only {
            plan.install_docker = false;
            plan.start_docker = false;
            plan.install_compose = false;
            plan.load_images.clear();
            plan.sending.clear();
        }
        let deployments = plan
            .deployments
            .iter()
            .zip(&files.deployments)
            .map(|(deployment, rendered)| {
                let hashes = prepared
                    .facts
                    .deployments
                    .get(&deployment.deployment)
                    .map(|state| &state.hashes);
                let old = |path: &str| {
                    (prepared.old)
                        .get(&(deployment.deployment.clone(), path.to_string()))
                        .and_then(Fetched::text)
                        .unwrap_or_default()
                };
                let new = |path: &str| rendered.files.iter().find(|f| f.path == path);
                let mut services = ServiceChanges::default();
                let files = deployment
                    .changes
                    .iter()
                    .map(|change| {
                        let after = new(&change.path).filter(|_| change.change != Change::Delete);
                        if change.path == "docker-compose.yml"
                            && change.change == Change::Update
                            && let Some(after) = after
                        {
                            let (added, recreated, removed) =
                                compose_service_changes(old(&change.path), &after.contents);
                            services = ServiceChanges {
                                added,
                                recreated,
                                removed,
                            };
                        }
                        FileRecord {
                            path: change.path.clone(),
                            change: change.change,
                            before: hashes.and_then(|h| h.get(&change.path)).cloned(),
                            after: after.map(|f| sha256_hex(&f.contents)),
                        }
                    })
                    .collect();
                SavedDeployment {
                    deployment: deployment.deployment.clone(),
                    dir: deployment.dir.clone(),
                    files,
                    unchanged: deployment.unchanged,
                    restart: deployment.restart.iter().cloned().collect(),
                    reload: deployment.reload.iter().cloned().collect(),
                    interrupted: deployment.interrupted,
                    upgrade: deployment.upgrade.clone(),
                    removed_workers: deployment.removed_workers.clone(),
                    services,
                    plugin_grants: (rendered.plugin_grants.iter())
                        .map(|(plugin, grants)| PluginGrants {
                            plugin: plugin.clone(),
                            grants: grants.iter().map(ToString::to_string).collect(),
                        })
                        .collect(),
                    postgres: rendered.postgres.clone(),
                }
            })
            .collect();
        SavedHost {
            host: plan.host.clone(),
            facts: FactsRecord {
                digest: facts_digest(&prepared.facts),
                summary: FactsSummary::of(&prepared.facts),
            },
            changes: plan.change_count(),
            install_docker: plan.install_docker,
            start_docker: plan.start_docker,
            install_compose: plan.install_compose,
            load_images: (plan.load_images.iter())
                .map(|image| ImageLoad {
                    image: image.clone(),
                    id: prepared
                        .local_images
                        .get(image)
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect(),
            sending: plan.sending,
            deployments,
            orphans: plan.orphans,
        }
    }
}

/// SHA-256 of every fact but free space, in a fixed order (maps are sorted).
fn facts_digest(facts: &Facts) -> String {
    let json = serde_json::to_vec(facts).expect("facts serialize");
    hex::encode(Sha256::digest(json))
}
