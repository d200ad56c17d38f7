//! The inventory exactly as the user wrote it: serde types mirroring the TOML.
//!
//! Every table denies unknown keys so that a typo is an error with a position, never a
//! silently ignored setting. Values that later checks may reject keep their span
//! (`Spanned`) so the error can point at them.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    #[serde(default)]
    pub defaults: RawHostSettings,
    #[serde(default)]
    pub groups: BTreeMap<String, Spanned<RawHostSettings>>,
    #[serde(default)]
    pub hosts: BTreeMap<Spanned<String>, RawHostSettings>,
    #[serde(default)]
    pub deployments: BTreeMap<Spanned<String>, RawDeployment>,
    #[serde(default)]
    pub rollout: RawRollout,
    #[serde(default)]
    pub plugins: Vec<RawPlugin>,
}

/// One `[[plugins]]` entry: a WebAssembly component and where it applies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlugin {
    pub path: Spanned<String>,
    pub name: Option<Spanned<String>>,
    pub hosts: Option<Vec<Spanned<String>>>,
    pub deployments: Option<Vec<Spanned<String>>>,
    pub config: Option<toml::Table>,
    /// Capabilities granted to the plugin's services beyond the confined default.
    pub allow: Option<Vec<Spanned<String>>>,
    /// The component's expected SHA-256, hex: a pin by content.
    pub sha256: Option<Spanned<String>>,
}

/// Connection settings. The same table shape serves `[defaults]`, `[groups.NAME]` and
/// `[hosts.NAME]` so that precedence (defaults < group < host) is a plain field-by-field
/// overlay; `address`, `private_address` and `groups` only make sense on hosts.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHostSettings {
    pub address: Option<Spanned<String>>,
    pub private_address: Option<Spanned<String>>,
    pub groups: Option<Vec<Spanned<String>>>,
    pub port: Option<Spanned<u16>>,
    pub user: Option<Spanned<String>>,
    pub identity_file: Option<Spanned<String>>,
    #[serde(rename = "become")]
    pub become_root: Option<bool>,
    pub transport: Option<Spanned<String>>,
    pub host_key_checking: Option<Spanned<String>>,
    pub docker_source: Option<Spanned<String>>,
}

/// One homeserver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    pub server_name: Spanned<String>,
    pub public_baseurl: Option<Spanned<String>>,
    pub admin_contact: Option<Spanned<String>>,
    pub host: Spanned<String>,
    pub deploy_dir: Option<Spanned<String>>,
    pub timezone: Option<Spanned<String>>,
    pub port_base: Option<Spanned<u16>>,
    #[serde(default)]
    pub workers: RawWorkerCounts,
    #[serde(default)]
    pub placement: RawPlacement,
    #[serde(default)]
    pub images: RawImages,
    #[serde(default)]
    pub postgres: RawPostgres,
    #[serde(default)]
    pub nginx: RawNginx,
    /// HTTPS served by Nginx itself; absent, Nginx speaks plain HTTP behind a TLS proxy.
    pub tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    pub metrics: RawMetrics,
    /// Extra `homeserver.yaml` settings, merged over the guide's base settings.
    pub homeserver: Option<Spanned<toml::Table>>,
    /// Scheduled backups; absent, none are taken.
    pub backup: Option<Spanned<RawBackup>>,
    /// The file of secrets `synprov import` took from a homeserver deployed before.
    pub imported: Option<Spanned<String>>,
}

/// `[deployments.NAME.backup]`: exactly one of `directory` and `sftp` names the repository;
/// `host_key` and `port` go with an `sftp = "user@host:/path"` outside the inventory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    pub schedule: Option<Spanned<String>>,
    pub verify_schedule: Option<Spanned<String>>,
    pub randomized_delay: Option<Spanned<String>>,
    #[serde(default)]
    pub retention: RawRetention,
    pub directory: Option<Spanned<String>>,
    pub sftp: Option<Spanned<String>>,
    pub host_key: Option<Spanned<String>>,
    pub port: Option<Spanned<u16>>,
    pub image: Option<Spanned<String>>,
}

/// `[deployments.NAME.backup.retention]`: snapshots kept per period.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub daily: Option<Spanned<u32>>,
    pub weekly: Option<Spanned<u32>>,
    pub monthly: Option<Spanned<u32>>,
}

/// Worker counts per kind; absent means the guide's default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkerCounts {
    pub client_sync: Option<Spanned<u32>>,
    pub federation_reader: Option<Spanned<u32>>,
    pub media: Option<Spanned<u32>>,
    pub rooms: Option<Spanned<u32>>,
    pub sender: Option<Spanned<u32>>,
    pub tasks: Option<Spanned<u32>>,
}

/// Which host runs each worker kind when a deployment spans several hosts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlacement {
    pub client_sync: Option<Spanned<String>>,
    pub federation_reader: Option<Spanned<String>>,
    pub media: Option<Spanned<String>>,
    pub rooms: Option<Spanned<String>>,
    pub sender: Option<Spanned<String>>,
    pub tasks: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImages {
    pub preload: Option<bool>,
    pub synapse: Option<Spanned<String>>,
    pub postgres: Option<Spanned<String>>,
    pub redis: Option<Spanned<String>>,
    pub nginx: Option<Spanned<String>>,
    pub acme: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    pub profile: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<u32>>,
    pub cp_max: Option<Spanned<u32>>,
    pub shared_buffers: Option<Spanned<String>>,
    pub effective_cache_size: Option<Spanned<String>>,
    pub work_mem: Option<Spanned<String>>,
    pub maintenance_work_mem: Option<Spanned<String>>,
    pub max_worker_processes: Option<Spanned<u32>>,
    pub max_parallel_workers: Option<Spanned<u32>>,
    pub max_parallel_workers_per_gather: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNginx {
    pub http_port: Option<Spanned<u16>>,
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    pub admin_allow: Option<Vec<Spanned<String>>>,
}

/// `[deployments.NAME.tls]`: the certificate either from files (paths on the controller,
/// relative to the inventory's directory) or from an ACME CA (`acme`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub certificate: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub acme: Option<Spanned<RawAcme>>,
    pub federation: Option<Spanned<String>>,
    pub https_port: Option<Spanned<u16>>,
    pub federation_port: Option<Spanned<u16>>,
}

/// `[deployments.NAME.tls.acme]`: files are paths on the controller, relative to the
/// inventory's directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    pub email: Spanned<String>,
    pub directory: Option<Spanned<String>>,
    pub ca_bundle: Option<Spanned<String>>,
    pub names: Option<Spanned<Vec<Spanned<String>>>>,
    pub key_type: Option<Spanned<String>>,
    pub dns_provider: Option<Spanned<String>>,
    pub dns_credentials: Option<Spanned<String>>,
}

/// `[deployments.NAME.metrics]`: Synapse's Prometheus metrics.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRollout {
    pub parallel: Option<Spanned<u32>>,
    pub batch: Option<Spanned<toml::Value>>,
    pub max_failures: Option<Spanned<toml::Value>>,
    pub health_timeout: Option<Spanned<u64>>,
    pub rollback_on_failure: Option<bool>,
    pub keep_generations: Option<Spanned<u32>>,
    #[serde(default)]
    pub deadlines: RawDeadlines,
}

/// `[rollout.deadlines]`: durations as humantime reads them (`90s`, `15m`, `2h`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeadlines {
    pub connect: Option<Spanned<String>>,
    pub facts: Option<Spanned<String>>,
    pub install: Option<Spanned<String>>,
    pub image: Option<Spanned<String>>,
    pub files: Option<Spanned<String>>,
    pub compose_up: Option<Spanned<String>>,
    pub backup: Option<Spanned<String>>,
    pub certificate: Option<Spanned<String>>,
}
