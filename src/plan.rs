//! Desired state against what a host has: which files change, what must be installed and
//! loaded, which services must be recreated. Pure: facts and rendered files in, a plan out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::facts::{Compose, DeployedState, Facts};
use crate::generations::index::Indexed;
use crate::hash::sha256_hex;
use crate::host_data::ManagedPath;
use crate::render::{DeploymentFiles, HostFiles};
use crate::topology::{LISTENER_PURPOSES, socket_file};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone)]
pub struct FileChange {
    pub path: String,
    pub change: Change,
}

/// What changes in one deployment directory.
#[derive(Debug, Clone)]
pub struct DeploymentPlan {
    pub deployment: String,
    pub dir: String,
    pub changes: Vec<FileChange>,
    pub unchanged: usize,
    /// Services to recreate because a file they read changed.
    pub restart: BTreeSet<String>,
    /// Services to reload (SIGHUP) because a file they reload changed (Nginx's certificate
    /// and key); none of `restart`, which a recreation covers.
    pub reload: BTreeSet<String>,
    /// The last apply wrote files but stopped before the stack was up on them: it must be
    /// brought up (and `restart` recreated) even if no file changes now.
    pub interrupted: bool,
    /// Synapse's image changes on a running deployment: the apply goes in the order Synapse
    /// requires (config check, dump, workers stopped, main first). Also set on a host of a
    /// spread deployment with workers only, whose workers wait for main.
    pub upgrade: Option<Upgrade>,
    /// Synapse processes whose service leaves `docker-compose.yml`: once Compose has
    /// removed their containers, their log directory and sockets go too.
    pub removed_workers: Vec<RemovedWorker>,
}

/// A Synapse process whose service an apply removes, named as the Compose file it leaves
/// mounted its logs (`./logs/NAME`): what is left of it on the host is found from that name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedWorker {
    pub service: String,
    /// The process name (`rooms6`), a plain word: letters, digits, `_` and `-`.
    pub name: String,
}

impl RemovedWorker {
    /// Its log directory and its sockets, each with the `.lock` Twisted keeps beside it,
    /// relative to the deploy directory.
    pub fn leftovers(&self) -> Vec<String> {
        let mut paths = vec![format!("logs/{}", self.name)];
        for purpose in LISTENER_PURPOSES {
            let socket = format!("sockets/{}", socket_file(purpose, &self.name));
            paths.push(format!("{socket}.lock"));
            paths.push(socket);
        }
        paths
    }
}

/// An image change of Synapse's main process: another image reference in
/// `docker-compose.yml`, or the same reference naming another image (rebuilt under the
/// same tag, and sent from this machine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upgrade {
    pub from: String,
    pub to: String,
    /// When the reference stays: the ID of the image main runs, and of the one sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuilt: Option<(String, String)>,
}

impl std::fmt::Display for Upgrade {
    /// `Synapse A -> B`, or `Synapse A (same tag, new image ID sha256:0123.. -> sha256:4567..)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |id: &str| id.get(..19).map_or(id.to_string(), |s| format!("{s}.."));
        match &self.rebuilt {
            Some((from, to)) => write!(
                f,
                "Synapse {} (same tag, new image ID {} -> {})",
                self.to,
                short(from),
                short(to)
            ),
            None => write!(f, "Synapse {} -> {}", self.from, self.to),
        }
    }
}

/// The Compose service of Synapse's main process.
pub const MAIN_SERVICE: &str = "synapse";

impl DeploymentPlan {
    /// Whether the apply creates `path` (relative to the deploy directory): nothing was
    /// there.
    pub fn creates(&self, path: &str) -> bool {
        (self.changes.iter()).any(|c| c.path == path && c.change == Change::Create)
    }

    /// A plan of `changes` in `dir` restarting `restart`, for tests of what reads plans.
    #[cfg(test)]
    pub(crate) fn for_test(dir: &str, changes: &[(&str, Change)], restart: &[&str]) -> Self {
        DeploymentPlan {
            deployment: "d".into(),
            dir: dir.into(),
            changes: changes
                .iter()
                .map(|(path, change)| FileChange {
                    path: path.to_string(),
                    change: *change,
                })
                .collect(),
            unchanged: 0,
            restart: restart.iter().map(|s| s.to_string()).collect(),
            reload: BTreeSet::new(),
            interrupted: false,
            upgrade: None,
            removed_workers: Vec::new(),
        }
    }

    /// Reads the change of `docker-compose.yml`, whose current contents are `old_compose`:
    /// leaves out of `restart` the services Compose recreates by itself (those added or
    /// changed), and notes an [`Upgrade`] when Synapse's image reference changes (one found
    /// by image ID stays otherwise). When the file does not change, Compose recreates
    /// nothing and `restart` stays whole.
    pub fn read_compose_change(&mut self, old_compose: &str, new_compose: &str) {
        let Some(change) = self.changes.iter().find(|c| c.path == "docker-compose.yml") else {
            return;
        };
        let old = if change.change == Change::Create {
            ""
        } else {
            old_compose
        };
        let (old_services, new_services) = (compose_services(old), compose_services(new_compose));
        let (added, changed, _) = service_changes(&old_services, &new_services);
        for service in added.iter().chain(&changed) {
            self.restart.remove(service);
            self.reload.remove(service);
        }
        if let (Some(from), Some(to)) = (synapse_image(&old_services), synapse_image(&new_services))
            && from != to
        {
            self.upgrade = Some(Upgrade {
                from,
                to,
                rebuilt: None,
            });
        }
        self.removed_workers = removed_workers(&old_services, &new_services);
    }

    pub fn compose_changed(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.path == "docker-compose.yml" || c.path.ends_with(".env"))
    }
}

/// How much of an image goes to a host: `bytes` of its `of` (its config and layer files),
/// the files of the layers the host holds left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sending {
    pub bytes: u64,
    pub of: u64,
}

/// Everything one host needs.
#[derive(Debug, Clone)]
pub struct HostPlan {
    pub host: String,
    pub install_docker: bool,
    pub start_docker: bool,
    pub install_compose: bool,
    /// Images to stream from this machine because the host lacks them (or has another ID).
    pub load_images: Vec<String>,
    /// How much of each image of `load_images` is sent, once its archive is read (the
    /// layers the host holds are not): empty until then.
    pub sending: BTreeMap<String, Sending>,
    pub deployments: Vec<DeploymentPlan>,
    /// Deployments the host's index names in directories the inventory has no deployment
    /// in: left as they are, shown so that the operator decides.
    pub orphans: Vec<Indexed>,
}

impl HostPlan {
    /// The number of changes: each file, each install, each image, and main to move to
    /// the image rebuilt under its tag.
    pub fn change_count(&self) -> usize {
        self.deployments
            .iter()
            .map(|d| {
                d.changes.len()
                    + usize::from(d.interrupted)
                    + usize::from(d.upgrade.as_ref().is_some_and(|u| u.rebuilt.is_some()))
            })
            .sum::<usize>()
            + usize::from(self.install_docker)
            + usize::from(self.start_docker)
            + usize::from(self.install_compose)
            + self.load_images.len()
    }
}

/// The plan of one host. `local_images` maps each image to preload to its ID on this
/// machine.
pub fn plan_host(
    files: &HostFiles,
    facts: &Facts,
    local_images: &BTreeMap<String, String>,
) -> HostPlan {
    let install_docker = facts.docker.is_none();
    HostPlan {
        host: files.host.clone(),
        install_docker,
        start_docker: !install_docker && !facts.docker_running,
        install_compose: facts.compose == Compose::Missing,
        load_images: local_images
            .iter()
            .filter(|(image, id)| facts.images.get(*image) != Some(id))
            .map(|(image, _)| image.clone())
            .collect(),
        sending: BTreeMap::new(),
        deployments: files
            .deployments
            .iter()
            .map(|d| plan_deployment(d, facts, local_images))
            .collect(),
        orphans: facts
            .indexed
            .iter()
            .filter(|i| !files.deployments.iter().any(|d| d.deploy_dir == i.dir))
            .cloned()
            .collect(),
    }
}

fn plan_deployment(
    files: &DeploymentFiles,
    facts: &Facts,
    local_images: &BTreeMap<String, String>,
) -> DeploymentPlan {
    let state = facts
        .deployments
        .get(&files.deployment)
        .cloned()
        .unwrap_or_default();
    let mut changes = Vec::new();
    let mut restart: BTreeSet<String> = (state.pending.iter().flatten())
        .map(ToString::to_string)
        .collect();
    let mut reload = BTreeSet::new();
    let mut unchanged = 0;
    for file in &files.files {
        let change = match state.hashes.get(&file.path) {
            None => Some(Change::Create),
            Some(_) if file.keep_existing => None,
            Some(hash) if *hash == sha256_hex(&file.contents) => None,
            Some(_) => Some(Change::Update),
        };
        match change {
            Some(change) => {
                // A created file belongs to a service that starts anyway (new worker, first
                // deploy); an updated one needs its readers recreated.
                if change == Change::Update && file.reloads {
                    reload.extend(file.used_by.iter().cloned());
                } else if change == Change::Update {
                    restart.extend(file.used_by.iter().cloned());
                }
                changes.push(FileChange {
                    path: file.path.clone(),
                    change,
                });
            }
            None => unchanged += 1,
        }
    }
    let desired: BTreeSet<&str> = files.files.iter().map(|f| f.path.as_str()).collect();
    for path in state.manifest.iter().map(ManagedPath::as_str) {
        if !desired.contains(path) && state.hashes.contains_key(path) {
            changes.push(FileChange {
                path: path.to_string(),
                change: Change::Delete,
            });
        }
    }
    reload.retain(|service| !restart.contains(service));
    DeploymentPlan {
        deployment: files.deployment.clone(),
        dir: files.deploy_dir.clone(),
        changes,
        unchanged,
        restart,
        reload,
        interrupted: state.pending.is_some(),
        upgrade: rebuilt(files, &state, local_images),
        removed_workers: Vec::new(),
    }
}

/// The upgrade of main to the image sent under the same reference, when main's container
/// runs another image (its image was rebuilt and tagged again here). Only a sent image is
/// known here: one the host pulls is seen by the host alone.
fn rebuilt(
    files: &DeploymentFiles,
    state: &DeployedState,
    local_images: &BTreeMap<String, String>,
) -> Option<Upgrade> {
    let running = state.main_image.as_ref()?;
    let compose = files
        .files
        .iter()
        .find(|f| f.path == "docker-compose.yml")?;
    let reference = synapse_image(&compose_services(&compose.contents))?;
    let sent = local_images.get(&reference)?;
    (sent != running).then(|| Upgrade {
        from: reference.clone(),
        to: reference,
        rebuilt: Some((running.clone(), sent.clone())),
    })
}

/// The image reference of Synapse here: main's service's, or on a host of a spread
/// deployment that has only workers, a worker's (they all run main's image).
fn synapse_image(services: &BTreeMap<String, serde_norway::Value>) -> Option<String> {
    let image =
        |definition: &serde_norway::Value| definition.get("image")?.as_str().map(str::to_string);
    services.get(MAIN_SERVICE).and_then(image).or_else(|| {
        services
            .values()
            .filter(|definition| synapse_process(definition).is_some())
            .find_map(image)
    })
}

/// The services of a compose file by name, with YAML merge keys applied; none when it
/// does not parse.
fn compose_services(text: &str) -> BTreeMap<String, serde_norway::Value> {
    let Ok(mut value) = serde_norway::from_str::<serde_norway::Value>(text) else {
        return BTreeMap::new();
    };
    let _ = value.apply_merge();
    let Some(map) = value.get("services").and_then(|s| s.as_mapping()) else {
        return BTreeMap::new();
    };
    map.iter()
        .filter_map(|(k, v)| {
            let mut v = v.clone();
            let _ = v.apply_merge();
            Some((k.as_str()?.to_string(), v))
        })
        .collect()
}

/// The Synapse processes of `old` that `new` no longer has: the removed services that
/// mount a log directory `./logs/NAME` on `/data/logs`, as every Synapse service does.
/// A name that is not a plain word (the host's file is not trusted) is passed over.
pub fn removed_workers(
    old: &BTreeMap<String, serde_norway::Value>,
    new: &BTreeMap<String, serde_norway::Value>,
) -> Vec<RemovedWorker> {
    old.iter()
        .filter(|(service, _)| !new.contains_key(*service))
        .filter_map(|(service, definition)| {
            Some(RemovedWorker {
                service: service.clone(),
                name: synapse_process(definition)?,
            })
        })
        .collect()
}

/// The Synapse process a service runs, named as its log directory `./logs/NAME` mounted on
/// `/data/logs` (every Synapse service has one); none for other services, and for a name
/// that is not a plain word (the host's file is not trusted).
fn synapse_process(definition: &serde_norway::Value) -> Option<String> {
    let name = definition
        .get("volumes")?
        .as_sequence()?
        .iter()
        .filter_map(|v| {
            v.as_str()?
                .strip_prefix("./logs/")?
                .strip_suffix(":/data/logs")
        })
        .next()?;
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    plain.then(|| name.to_string())
}

/// Services added, changed and removed between two compose files (after YAML merge keys
/// are applied), for the plan's "recreated" list.
pub fn compose_service_changes(old: &str, new: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    service_changes(&compose_services(old), &compose_services(new))
}

fn service_changes(
    old: &BTreeMap<String, serde_norway::Value>,
    new: &BTreeMap<String, serde_norway::Value>,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let added = new
        .keys()
        .filter(|k| !old.contains_key(*k))
        .cloned()
        .collect();
    let changed = new
        .iter()
        .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
        .map(|(k, _)| k.clone())
        .collect();
    let removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    (added, changed, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_creates_a_file_only_where_there_was_none() {
        let plan = DeploymentPlan::for_test(
            "/opt/s",
            &[
                ("docker-compose.yml", Change::Create),
                (".env", Change::Update),
                ("nginx/old.conf", Change::Delete),
            ],
            &[],
        );
        assert!(plan.creates("docker-compose.yml"));
        assert!(!plan.creates(".env"));
        assert!(!plan.creates("nginx/old.conf"));
        assert!(!plan.creates("synapse/homeserver.yaml"));
    }

    #[test]
    fn compose_changes_see_through_anchors() {
        let old = "x: &t\n  image: a\nservices:\n  one:\n    <<: *t\n  two:\n    image: b\n  gone:\n    image: c\n";
        let new = "x: &t\n  image: a2\nservices:\n  one:\n    <<: *t\n  two:\n    image: b\n  three:\n    image: d\n";
        let (added, changed, removed) = compose_service_changes(old, new);
        assert_eq!(
            (added, changed, removed),
            (
                vec!["three".to_string()],
                vec!["one".to_string()],
                vec!["gone".to_string()]
            )
        );
    }

    fn plan(changes: &[(&str, Change)]) -> DeploymentPlan {
        DeploymentPlan::for_test("/opt/d", changes, &["synapse", "rooms1"])
    }

    #[test]
    fn a_shared_config_change_alone_restarts_every_process_that_reads_it() {
        let compose = "services:\n  synapse:\n    image: s\n  rooms1:\n    image: s\n";
        let mut config_only = plan(&[("synapse/homeserver.yaml", Change::Update)]);
        config_only.read_compose_change("", compose);
        assert_eq!(config_only.restart.len(), 2, "{:?}", config_only.restart);

        let mut both = plan(&[
            ("synapse/homeserver.yaml", Change::Update),
            ("docker-compose.yml", Change::Update),
        ]);
        let old = "services:\n  synapse:\n    image: s\n  rooms1:\n    image: r\n";
        both.read_compose_change(old, compose);
        assert_eq!(
            both.restart,
            ["synapse".to_string()].into(),
            "Compose recreates rooms1 itself"
        );
    }

    /// The plan of Nginx's files `files` (path, contents, reloaded) on a host that has
    /// each of them with the contents `old`.
    fn nginx_plan(files: &[(&str, &str, bool)]) -> DeploymentPlan {
        let rendered: Vec<_> = (files.iter())
            .map(|(path, contents, reloads)| {
                let mut file = crate::render::RenderedFile::for_test(path, contents, 0o644);
                file.used_by = vec!["nginx".into()];
                file.reloads = *reloads;
                file
            })
            .collect();
        let mut facts = crate::gather::parse("").unwrap();
        facts.deployments.insert(
            "d".into(),
            crate::facts::DeployedState {
                manifest: (files.iter())
                    .map(|f| crate::host_data::ManagedPath::parse(f.0).unwrap())
                    .collect(),
                hashes: (files.iter())
                    .map(|f| (f.0.to_string(), sha256_hex("old")))
                    .collect(),
                pending: None,
                main_image: None,
            },
        );
        plan_deployment(
            &DeploymentFiles::for_test("/opt/d", rendered, Vec::new()),
            &facts,
            &BTreeMap::new(),
        )
    }

    #[test]
    fn a_changed_certificate_reloads_nginx_and_a_changed_config_recreates_it_instead() {
        let renewed = nginx_plan(&[
            ("nginx/tls-certificate.pem", "new", true),
            ("nginx/tls-key.pem", "new", true),
            ("nginx/nginx.conf", "old", false),
        ]);
        assert_eq!(renewed.reload, ["nginx".to_string()].into());
        assert!(renewed.restart.is_empty(), "{:?}", renewed.restart);

        let both = nginx_plan(&[
            ("nginx/tls-certificate.pem", "new", true),
            ("nginx/nginx.conf", "new", false),
        ]);
        assert_eq!(both.restart, ["nginx".to_string()].into());
        assert!(
            both.reload.is_empty(),
            "the recreation reads the new certificate"
        );
    }

    #[test]
    fn a_new_image_of_main_on_a_running_deployment_is_an_upgrade() {
        let template = |image: &str| {
            format!(
                "x: &s\n  image: {image}\nservices:\n  synapse:\n    <<: *s\n  rooms1:\n    <<: *s\n  db:\n    image: pg\n"
            )
        };
        let mut upgrade = plan(&[("docker-compose.yml", Change::Update)]);
        upgrade.read_compose_change(&template("synapse:1.163"), &template("synapse:1.164"));
        assert_eq!(
            upgrade.upgrade,
            Some(Upgrade {
                from: "synapse:1.163".into(),
                to: "synapse:1.164".into(),
                rebuilt: None
            })
        );

        let mut first = plan(&[("docker-compose.yml", Change::Create)]);
        first.read_compose_change("", &template("synapse:1.164"));
        assert_eq!(first.upgrade, None, "a first deployment upgrades nothing");

        let mut same = plan(&[("docker-compose.yml", Change::Update)]);
        let other_db = template("synapse:1.163").replace("image: pg", "image: pg2");
        same.read_compose_change(&template("synapse:1.163"), &other_db);
        assert_eq!(same.upgrade, None, "another image than main's");
    }

    #[test]
    fn an_image_rebuilt_under_the_same_tag_is_an_upgrade_when_it_is_sent() {
        let id = |digit: &str| format!("sha256:{}", digit.repeat(64));
        let compose = "services:\n  synapse:\n    image: synapse:1.163\n  rooms1:\n    image: synapse:1.163\n";
        let files = crate::render::HostFiles {
            host: "h".into(),
            docker_source: crate::inventory::DockerSource::Distribution,
            deployments: vec![DeploymentFiles::for_test(
                "/opt/d",
                vec![crate::render::RenderedFile::for_test(
                    "docker-compose.yml",
                    compose,
                    0o644,
                )],
                Vec::new(),
            )],
        };
        let upgrade = |running: Option<String>, sent: Option<String>| {
            let mut facts =
                crate::gather::parse("docker=27\ndocker_running=yes\ncompose_v2=/p\n").unwrap();
            // The tag on the host already names the new image (an earlier apply loaded it
            // and stopped at the config check): main's container still runs the old one.
            facts
                .images
                .extend(sent.clone().map(|id| ("synapse:1.163".to_string(), id)));
            facts.deployments.insert(
                "d".into(),
                DeployedState {
                    hashes: [("docker-compose.yml".into(), sha256_hex(compose))].into(),
                    main_image: running,
                    ..Default::default()
                },
            );
            let local: BTreeMap<String, String> = sent
                .map(|id| ("synapse:1.163".to_string(), id))
                .into_iter()
                .collect();
            let plan = plan_host(&files, &facts, &local);
            (plan.deployments[0].upgrade.clone(), plan.change_count())
        };
        let (rebuilt, count) = upgrade(Some(id("a")), Some(id("b")));
        assert_eq!(
            rebuilt,
            Some(Upgrade {
                from: "synapse:1.163".into(),
                to: "synapse:1.163".into(),
                rebuilt: Some((id("a"), id("b")))
            })
        );
        assert_eq!(
            count, 1,
            "main moves to the new image: a change, though none is sent"
        );
        assert_eq!(
            rebuilt.unwrap().to_string(),
            "Synapse synapse:1.163 (same tag, new image ID sha256:aaaaaaaaaaaa.. -> sha256:bbbbbbbbbbbb..)"
        );
        assert_eq!(
            upgrade(Some(id("b")), Some(id("b"))),
            (None, 0),
            "same image"
        );
        assert_eq!(
            upgrade(None, Some(id("b"))).0,
            None,
            "no main container yet"
        );
        assert_eq!(
            upgrade(Some(id("a")), None).0,
            None,
            "pulled by the host: unknown here"
        );

        // A reference that stays in a changed compose file keeps the upgrade by ID; a new
        // reference is the upgrade.
        let mut plan = plan(&[("docker-compose.yml", Change::Update)]);
        plan.upgrade = upgrade(Some(id("a")), Some(id("b"))).0;
        plan.read_compose_change(compose, &format!("{compose}  db:\n    image: pg\n"));
        assert!(plan.upgrade.as_ref().is_some_and(|u| u.rebuilt.is_some()));
        plan.read_compose_change(compose, &compose.replace("1.163", "1.164"));
        assert_eq!(
            plan.upgrade.map(|u| u.to_string()).as_deref(),
            Some("Synapse synapse:1.163 -> synapse:1.164")
        );
    }

    #[test]
    fn on_a_host_of_workers_only_their_image_is_synapse_s() {
        let workers = |image: &str| {
            format!(
                "services:\n  rooms1:\n    image: {image}\n    volumes:\n      - ./logs/rooms1:/data/logs\n  \
                 other:\n    image: x\n"
            )
        };
        let mut plan = plan(&[("docker-compose.yml", Change::Update)]);
        plan.read_compose_change(&workers("synapse:1.163"), &workers("synapse:1.164"));
        assert_eq!(
            plan.upgrade.map(|u| u.to_string()).as_deref(),
            Some("Synapse synapse:1.163 -> synapse:1.164")
        );
        let mut plan =
            DeploymentPlan::for_test("/opt/d", &[("docker-compose.yml", Change::Update)], &[]);
        plan.read_compose_change(
            &workers("synapse:1.163"),
            &workers("synapse:1.163").replace("image: x", "image: y"),
        );
        assert_eq!(plan.upgrade, None, "another service's image");
    }

    #[test]
    fn a_worker_whose_service_leaves_the_compose_file_is_named_with_its_leftovers() {
        let old = "x: &synapse\n  image: s\nservices:\n  synapse:\n    <<: *synapse\n    volumes:\n      - ./logs/main:/data/logs\n  \
                   client-sync2:\n    <<: *synapse\n    volumes:\n      - ./sockets:/sockets\n      - ./logs/client_sync2:/data/logs\n  \
                   redis:\n    image: r\n  evil:\n    volumes:\n      - ./logs/../../etc:/data/logs\n";
        let new = "services:\n  synapse:\n    image: s\n";
        let removed = removed_workers(&compose_services(old), &compose_services(new));
        assert_eq!(
            removed,
            [RemovedWorker {
                service: "client-sync2".into(),
                name: "client_sync2".into()
            }],
            "Redis is no Synapse process, and a path is no name"
        );
        assert_eq!(
            removed[0].leftovers(),
            [
                "logs/client_sync2",
                "sockets/synapse_inbound_client_sync2.sock.lock",
                "sockets/synapse_inbound_client_sync2.sock",
                "sockets/synapse_replication_client_sync2.sock.lock",
                "sockets/synapse_replication_client_sync2.sock",
            ]
        );

        let mut compose_changes = plan(&[("docker-compose.yml", Change::Update)]);
        compose_changes.read_compose_change(old, new);
        assert_eq!(compose_changes.removed_workers, removed);
        let mut first = plan(&[("docker-compose.yml", Change::Create)]);
        first.read_compose_change(old, new);
        assert!(first.removed_workers.is_empty(), "nothing was there before");
    }

    #[test]
    fn a_deployment_the_host_indexed_in_a_directory_the_inventory_has_not_is_an_orphan() {
        use base64::Engine;
        let indexed = |name: &str, dir: &str| {
            let entry = format!("{name}\0{dir}\0");
            format!(
                "indexed={}\n",
                base64::engine::general_purpose::STANDARD.encode(entry)
            )
        };
        let facts = crate::gather::parse(&format!(
            "{}{}",
            indexed("d", "/opt/d"),
            indexed("old", "/opt/old")
        ))
        .unwrap();
        let files = HostFiles {
            host: "h".into(),
            docker_source: crate::inventory::DockerSource::Distribution,
            deployments: vec![DeploymentFiles::for_test("/opt/d", Vec::new(), Vec::new())],
        };
        let plan = plan_host(&files, &facts, &BTreeMap::new());
        assert_eq!(
            plan.orphans,
            [Indexed {
                name: "old".into(),
                dir: "/opt/old".into()
            }]
        );
        assert_eq!(
            plan.change_count(),
            2,
            "Docker and Compose to install; an orphan is no change: {plan:?}"
        );
    }
}
