//! Rendering: every file a deployment needs, per host, from the validated inventory.
//!
//! Pure: values in, files (paths and contents) out. Rust computes every value (the
//! topology, routes, secrets); the Handlebars templates in `roles/` only lay them out. The
//! same inventory and master key always give byte-identical files.

pub mod acme;
pub mod backup;
mod compose;
mod merge;
mod metrics;
mod nginx;
mod plugins;
pub mod postgres;
mod pyyaml;
mod synapse;
mod templates;
mod tls;
mod yaml;

use std::collections::BTreeSet;

use miette::Diagnostic;
use serde_json::json;
use thiserror::Error;

pub use compose::{GID, UID, health_command};
pub use nginx::{Route, room_patterns, routes};
pub use templates::Templates;
use templates::Values;
pub use tls::{CERTIFICATE as TLS_CERTIFICATE, KEY as TLS_KEY};

use crate::facts::Facts;
use crate::health::{self, HealthTarget};
use crate::inventory::{Deployment, DockerSource, Inventory};
use crate::plugins::{Contribution, PluginError, Plugins, Scope};
use crate::secrets::{DeploymentSecrets, MasterKey};
use crate::sizing::{self, Machine, PostgresSizing};
use crate::topology::Topology;

#[derive(Debug, Error, Diagnostic)]
pub enum RenderError {
    #[error("template {name} failed: {message}")]
    #[diagnostic(help(
        "if it is one of your own templates (--roles), fix it; otherwise please report a bug"
    ))]
    Template { name: String, message: String },

    #[error("cannot read template {path}: {source}")]
    TemplateRead {
        path: String,
        source: std::io::Error,
    },

    #[error("rendered {path} is not valid YAML: {message}")]
    #[diagnostic(help(
        "a template produced broken YAML: check your own templates (--roles) or the `homeserver` table of the deployment"
    ))]
    InvalidYaml { path: String, message: String },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Plugin(#[from] PluginError),

    #[error("host `{host}` is not in the inventory")]
    #[diagnostic(help("known hosts: {known}"))]
    UnknownHost { host: String, known: String },

    /// The host cannot hold what the inventory places on it (found from its facts).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Inventory(#[from] crate::inventory::InventoryError),
}

/// One file of a deployment, relative to its deploy directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub path: String,
    pub contents: String,
    /// Permission bits to write it with: 0600 when it holds a secret.
    pub mode: u32,
    /// Holds a secret: never shown unmasked.
    pub secret: bool,
    /// Written only when missing (the signing key: federation trusts it, never replace it).
    pub keep_existing: bool,
    /// uid and gid to own it, when not root: Synapse reads its files as the guide's 1000:1000.
    pub owner: Option<(u32, u32)>,
    /// Compose services that read it from a mounted directory, and so must be restarted
    /// when it changes (Compose itself only tracks the compose file and env files).
    pub used_by: Vec<String>,
    /// Its readers take a change with a reload (SIGHUP), not a recreation: Nginx's
    /// certificate and key.
    pub reloads: bool,
}

#[cfg(test)]
impl RenderedFile {
    /// A file no service reads, secret when its mode is 0600.
    pub(crate) fn for_test(path: &str, contents: &str, mode: u32) -> RenderedFile {
        RenderedFile {
            path: path.into(),
            contents: contents.into(),
            mode,
            secret: mode == 0o600,
            keep_existing: false,
            owner: None,
            used_by: Vec::new(),
            reloads: false,
        }
    }
}

#[cfg(test)]
impl DeploymentFiles {
    /// Deployment `d` of example.org in `dir`, with secrets derived from a fixed key.
    pub(crate) fn for_test(
        dir: &str,
        files: Vec<RenderedFile>,
        dirs: Vec<RenderedDir>,
    ) -> DeploymentFiles {
        let key = crate::secrets::MasterKey::from_text("Gx7q2LmP9vR4tY8wZ1aB6cD3eF5hJ0kN").unwrap();
        DeploymentFiles {
            deployment: "d".into(),
            server_name: "example.org".into(),
            deploy_dir: dir.into(),
            files,
            dirs,
            secrets: Some(key.secrets_for("example.org")),
            health: Vec::new(),
            images: Vec::new(),
            preload: false,
            plugin_grants: Vec::new(),
            postgres: Vec::new(),
            backup_remote: None,
        }
    }
}

/// A directory the containers need before they start.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RenderedDir {
    pub path: String,
    pub mode: u32,
    pub owner: Option<(u32, u32)>,
}

/// The files of one deployment on one host, and everything the later stages need to put
/// them in place and verify them: apply, status and rollback read this (or the generation
/// record made of it), never the inventory.
#[derive(Debug, Clone)]
pub struct DeploymentFiles {
    pub deployment: String,
    pub server_name: String,
    pub deploy_dir: String,
    pub files: Vec<RenderedFile>,
    pub dirs: Vec<RenderedDir>,
    /// The secret values, to mask them in diffs; `None` for files read back from a
    /// generation record, whose secret files are then not shown at all.
    pub secrets: Option<DeploymentSecrets>,
    /// Every health check: each Synapse listener's `/health`, then the plugins' checks.
    pub health: Vec<HealthTarget>,
    /// The images the part of the deployment here runs, its own and its plugins'.
    pub images: Vec<String>,
    /// Stream `images` from this machine (`docker save | docker load`) rather than let
    /// the host pull them.
    pub preload: bool,
    /// What the operator granted the plugins adding to it, by plugin (shown with the plan).
    pub plugin_grants: Vec<(String, Vec<crate::inventory::Grant>)>,
    /// How its Postgres is sized, a setting and its reason a line (shown with the plan
    /// when `postgresql.conf` changes); empty where its Postgres does not run.
    pub postgres: Vec<String>,
    /// The SFTP repository of its backups, on its main host: the key apply sees to.
    pub backup_remote: Option<backup::Remote>,
}

impl DeploymentFiles {
    /// Whether its certificate comes from an ACME CA: its renewal's script is among its
    /// files (so also for files read back from a generation).
    pub fn acme(&self) -> bool {
        self.files.iter().any(|f| f.path == acme::RENEW_SCRIPT)
    }
}

/// What a host's facts are gathered for, kept of its files by the fleet check: each
/// deployment's directory and paths, and the images it runs. A few KiB a host, where its
/// files would be most of a rollout's memory. The paths do not depend on the facts (but
/// with plugins, which are told them): a host gathers its facts with these, and is then
/// rendered once, with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSurvey {
    pub host: String,
    pub deployments: Vec<DeploymentSurvey>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSurvey {
    pub deployment: String,
    pub deploy_dir: String,
    pub paths: Vec<String>,
    /// Its images are streamed from this machine (`images.preload`).
    pub preload: bool,
    pub images: Vec<String>,
}

impl HostSurvey {
    /// The images streamed to the host, each once.
    pub fn preload_images(&self) -> Vec<String> {
        let mut images: Vec<String> = (self.deployments.iter())
            .filter(|d| d.preload)
            .flat_map(|d| d.images.iter().cloned())
            .collect();
        images.sort();
        images.dedup();
        images
    }
}

impl HostFiles {
    pub fn survey(&self) -> HostSurvey {
        HostSurvey {
            host: self.host.clone(),
            deployments: (self.deployments.iter())
                .map(|d| DeploymentSurvey {
                    deployment: d.deployment.clone(),
                    deploy_dir: d.deploy_dir.clone(),
                    paths: d.files.iter().map(|f| f.path.clone()).collect(),
                    preload: d.preload,
                    images: d.images.clone(),
                })
                .collect(),
        }
    }
}

/// Everything one host gets.
#[derive(Debug, Clone)]
pub struct HostFiles {
    pub host: String,
    /// Where Docker comes from when the host lacks it.
    pub docker_source: DockerSource,
    pub deployments: Vec<DeploymentFiles>,
}

/// Renders the files of every host, or of `only_host`, without the hosts' facts (plugins
/// are told none). Hosts are rendered on every core, a host per thread at a time: the whole
/// fleet is rendered before the first host is reached, and a thousand deployments are
/// about a second of one core's work.
pub fn render(
    inventory: &Inventory,
    key: &MasterKey,
    templates: &Templates,
    plugins: &Plugins,
    only_host: Option<&str>,
) -> Result<Vec<HostFiles>, RenderError> {
    render_each(inventory, key, templates, plugins, only_host, |files| files)
}

/// Renders as [`render`] does and keeps of each host only what `keep` takes from its files:
/// a fleet is checked whole without holding every host's files at once (a rollout renders
/// each host again, with its facts, when it reaches it).
pub fn render_each<R: Send>(
    inventory: &Inventory,
    key: &MasterKey,
    templates: &Templates,
    plugins: &Plugins,
    only_host: Option<&str>,
    keep: impl Fn(HostFiles) -> R + Sync,
) -> Result<Vec<R>, RenderError> {
    if let Some(host) = only_host.filter(|h| !inventory.hosts.contains_key(*h)) {
        return Err(RenderError::UnknownHost {
            host: host.to_string(),
            known: inventory
                .hosts
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let hosts: Vec<&String> = inventory
        .hosts
        .keys()
        .filter(|h| only_host.is_none_or(|only| only == *h))
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    crate::parallel::each_at_once(&hosts, cores, |host| {
        render_host(inventory, key, templates, plugins, host, None).map(&keep)
    })
    .into_iter()
    .collect()
}

/// Renders what `host` gets. With its `facts`, plugins are told them and Postgres is sized
/// from its memory and cores (a host too small for what it runs is refused); without,
/// Postgres is sized for the machine of the deployment's profile.
pub fn render_host(
    inventory: &Inventory,
    key: &MasterKey,
    templates: &Templates,
    plugins: &Plugins,
    host: &str,
    facts: Option<&Facts>,
) -> Result<HostFiles, RenderError> {
    if let Some(facts) = facts {
        sizing::check_memory(inventory, host, facts)?;
    }
    let sharing = sizing::postgres_on(inventory, host);
    let mut deployments = Vec::new();
    for deployment in inventory.deployments_on(host) {
        let topology = Topology::resolve(deployment, &inventory.hosts);
        let mut secrets = key.secrets_for(&deployment.server_name);
        secrets.given = crate::secrets::given_in(&deployment.homeserver_extra);
        if let Some(imported) = &deployment.imported {
            imported.replace(&mut secrets);
        }
        let scope = Scope {
            inventory,
            deployment,
            topology: &topology,
            host,
            facts,
        };
        let contributions = plugins.contribute(&scope, key, &mut secrets.plugins)?;
        let postgres = (host == deployment.host).then(|| {
            let machine = Machine::of(facts, deployment.postgres.profile);
            PostgresSizing::new(deployment, machine, sharing)
        });
        let files = render_deployment(
            deployment,
            &topology,
            &secrets,
            templates,
            host,
            &contributions,
            postgres.as_ref(),
        )?;
        let deploy_dir = deployment.deploy_dir.to_string();
        let images = deployment
            .images_on(host)
            .into_iter()
            .map(ToString::to_string)
            .chain(plugins::images(&contributions))
            .collect();
        deployments.push(DeploymentFiles {
            deployment: deployment.name.clone(),
            server_name: deployment.server_name.clone(),
            health: health::targets(
                &deployment.name,
                &deploy_dir,
                &topology,
                host,
                &plugins::checks(&contributions),
            ),
            deploy_dir,
            files,
            dirs: dirs(deployment, &topology, host),
            secrets: Some(secrets),
            images,
            preload: deployment.images.preload,
            plugin_grants: plugins::grants(&contributions),
            postgres: postgres
                .as_ref()
                .map(PostgresSizing::lines)
                .unwrap_or_default(),
            backup_remote: (deployment.backup.as_ref())
                .filter(|_| host == deployment.host)
                .and_then(|settings| backup::remote(&inventory.hosts, settings)),
        });
    }
    Ok(HostFiles {
        host: host.to_string(),
        docker_source: inventory.hosts[host].docker_source,
        deployments,
    })
}

/// The files of `deployment` that belong on `host`; `postgres` is how its Postgres is
/// sized when it runs on `host` (the deployment's main host).
pub fn render_deployment(
    deployment: &Deployment,
    topology: &Topology,
    secrets: &DeploymentSecrets,
    templates: &Templates,
    host: &str,
    contributions: &[Contribution],
    postgres: Option<&PostgresSizing>,
) -> Result<Vec<RenderedFile>, RenderError> {
    let main_host = host == deployment.host;
    plugins::check_names(topology, contributions)?;
    let mut files: Vec<(String, String)> = Vec::new();
    let mut add = |path: String, template: &str, values: &Values| -> Result<(), RenderError> {
        files.push((path, templates.render(template, values)?));
        Ok(())
    };

    let homeserver = Values::from(synapse::homeserver(deployment, topology, secrets));
    add(
        "synapse/homeserver.yaml".into(),
        "synapse/homeserver.yaml",
        &homeserver,
    )?;
    let mut log_types = BTreeSet::new();
    for process in topology.on_host(host) {
        if process.kind().is_some() {
            add(
                format!("synapse/workers/{}.yaml", process.name),
                "synapse/worker.yaml",
                &synapse::worker(deployment, process).into(),
            )?;
        }
        if log_types.insert(process.log_type()) {
            add(
                format!("synapse/log.config/{}.log.config", process.log_type()),
                "synapse/log.config",
                &synapse::log_config(process).into(),
            )?;
        }
    }
    add(
        "docker-compose.yml".into(),
        "compose/docker-compose.yml",
        &compose::compose(deployment, topology, host, contributions, postgres).into(),
    )?;
    if let Some(conf) = compose::redis_conf(topology, secrets).filter(|_| main_host) {
        add(compose::REDIS_CONF.into(), "redis/redis.conf", &conf.into())?;
    }
    let env = Values::from(
        json!({ "server_name": deployment.server_name, "uid": compose::UID, "gid": compose::GID, "timezone": deployment.timezone, "postgres_password_file": postgres::PASSWORD_FILE_MOUNTED }),
    );
    add(
        ".env".into(),
        "compose/env",
        &json!({ "project": deployment.name }).into(),
    )?;
    add(".synapse.env".into(), "synapse/synapse.env", &env)?;
    if let Some(sizing) = postgres {
        add(".postgres.env".into(), "postgres/postgres.env", &env)?;
        add(
            "postgres/postgresql.conf".into(),
            "postgres/postgresql.conf",
            &postgres::postgresql_conf(deployment, topology, sizing).into(),
        )?;
        let nginx = Values::from(json!({
            "server_name": deployment.server_name,
            "upstreams": nginx::upstreams(topology),
            "routes": nginx::routes(),
            "room_patterns": nginx::room_patterns(),
            "trusted_proxies": deployment.nginx.trusted_proxies,
            "admin_allow": deployment.nginx.admin_allow,
            "plugin_locations": plugins::locations(contributions),
            "tls": tls::context(deployment),
        }));
        for file in [
            "nginx.conf",
            "upstreams.conf",
            "maps.conf",
            "locations.conf",
            "proxy.conf",
            "private.conf",
        ] {
            add(format!("nginx/{file}"), &format!("nginx/{file}"), &nginx)?;
        }
    }

    if let Some(targets) = metrics::targets(deployment, topology).filter(|_| main_host) {
        files.push((metrics::TARGETS.into(), targets));
    }

    if let Some(settings) = deployment.backup.as_ref().filter(|_| main_host) {
        files.extend(backup::files(
            deployment,
            settings,
            secrets.backup_password.expose(),
        ));
    }

    if postgres.is_some() {
        files.push((
            postgres::PASSWORD_FILE.into(),
            format!("{}\n", secrets.postgres_password.expose()),
        ));
    }
    let signing_key = format!("synapse/{}.signing.key", deployment.server_name);
    files.push((
        signing_key.clone(),
        format!("{}\n", secrets.signing_key.expose()),
    ));
    merge::homeserver(&mut files[0].1, contributions, &deployment.homeserver_extra)?;

    let finder = secrets.finder();
    let mut rendered = files
        .into_iter()
        .map(|(path, contents)| {
            yaml::check(&path, &contents)?;
            // The inventory's own secrets are merged into homeserver.yaml, maybe re-quoted.
            let secret = finder.found_in(&contents)
                || (path == "synapse/homeserver.yaml" && !secrets.given.is_empty());
            let owner = (path.starts_with("synapse/") || path == compose::REDIS_CONF)
                .then_some((compose::UID, compose::GID));
            Ok(RenderedFile {
                keep_existing: path == signing_key,
                owner,
                used_by: used_by(&path, topology, host),
                reloads: false,
                mode: if secret { 0o600 } else { 0o644 },
                secret,
                path,
                contents,
            })
        })
        .collect::<Result<Vec<_>, RenderError>>()?;
    if let Some(tls) = deployment.tls.as_ref().filter(|_| main_host) {
        rendered.extend(tls::files(tls));
    }
    if let Some(settings) = deployment.acme().filter(|_| main_host) {
        rendered.extend(acme::files(deployment, settings, templates)?);
    }
    plugins::add_files(
        &mut rendered,
        contributions,
        topology,
        host,
        main_host,
        secrets,
    )?;
    Ok(rendered)
}

/// The services that read `path` through a mounted directory.
fn used_by(path: &str, topology: &Topology, host: &str) -> Vec<String> {
    let synapse = topology.on_host(host);
    let services: Vec<String> =
        if path == "synapse/homeserver.yaml" || path.ends_with(".signing.key") {
            synapse.map(|p| p.service.clone()).collect()
        } else if let Some(worker) = path
            .strip_prefix("synapse/workers/")
            .and_then(|p| p.strip_suffix(".yaml"))
        {
            synapse
                .filter(|p| p.name == worker)
                .map(|p| p.service.clone())
                .collect()
        } else if let Some(kind) = path
            .strip_prefix("synapse/log.config/")
            .and_then(|p| p.strip_suffix(".log.config"))
        {
            synapse
                .filter(|p| p.log_type() == kind)
                .map(|p| p.service.clone())
                .collect()
        } else if path.starts_with("nginx/") {
            vec!["nginx".into()]
        } else if path.starts_with("postgres/") {
            vec!["db".into()]
        } else if path == compose::REDIS_CONF {
            vec!["redis".into()]
        } else {
            Vec::new()
        };
    services
}

/// The directories of the deployment on `host`: the sockets directory (every process, and
/// synprov's health checks, reach it), one logs directory per process, the data directories.
/// The sockets directory is sticky (1777, as `/tmp`): each process removes only its own
/// sockets, and with the kernel's `fs.protected_symlinks` no one follows a link another
/// user planted there, root's health checks included.
fn dirs(deployment: &Deployment, topology: &Topology, host: &str) -> Vec<RenderedDir> {
    let synapse = Some((compose::UID, compose::GID));
    let dir = |path: &str, mode, owner| RenderedDir {
        path: path.to_string(),
        mode,
        owner,
    };
    let mut out = vec![dir("sockets", 0o1777, None), dir("media", 0o750, synapse)];
    out.extend(
        topology
            .on_host(host)
            .map(|p| dir(&format!("logs/{}", p.name), 0o750, synapse)),
    );
    if host == deployment.host {
        out.push(dir("redis", 0o750, synapse));
        out.extend(compose::redis_conf_dir(topology));
        out.push(dir("logs/nginx", 0o755, None));
        if deployment.acme().is_some() {
            out.extend(acme::dirs());
        }
    }
    out
}
