//! The inventory: the user's one file, parsed and validated.
//!
//! `load` turns a path into an [`Inventory`] whose every value has been checked, or into an
//! [`InventoryError`] that points at the offending text. Later stages take the validated
//! type only, so they never see a host that is not defined or a worker count of zero.

mod backup;
mod error;
mod grant;
mod raw;
mod validate;
pub mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::regular_file::Refusal;
pub use backup::{BackupSettings, Repository, Retention};

pub use error::{InventoryError, InventoryWarning};
pub use grant::Grant;
pub use validate::CONNECTION_HEADROOM;
pub use values::{AcmeSettings, Challenge, DnsCredentials, DnsProvider, KeyType};
pub use values::{AddressRange, DeployDir, ImageRef, MemorySize, TimeZone, TlsPair, UserName};

/// The kinds of Synapse worker the guide's model has. The main process is not a kind: there
/// is always exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkerKind {
    ClientSync,
    FederationReader,
    Media,
    Rooms,
    Sender,
    Tasks,
}

impl WorkerKind {
    /// In the order the guide lists them (and the rendered files follow).
    pub const ALL: [WorkerKind; 6] = [
        WorkerKind::ClientSync,
        WorkerKind::FederationReader,
        WorkerKind::Media,
        WorkerKind::Rooms,
        WorkerKind::Sender,
        WorkerKind::Tasks,
    ];

    /// The worker-name stem (`client_sync` in `client_sync1`), also the inventory key.
    pub fn stem(self) -> &'static str {
        match self {
            WorkerKind::ClientSync => "client_sync",
            WorkerKind::FederationReader => "federation_reader",
            WorkerKind::Media => "media",
            WorkerKind::Rooms => "rooms",
            WorkerKind::Sender => "sender",
            WorkerKind::Tasks => "tasks",
        }
    }

    /// The guide's count for this kind.
    pub fn default_count(self) -> u32 {
        match self {
            WorkerKind::Rooms | WorkerKind::Sender => 4,
            _ => 1,
        }
    }

    /// Whether worker number `index` (from 1) of this kind has a replication listener:
    /// those that write a stream. Only the first sync worker is the stream writer; the
    /// others serve sync.
    pub fn replicates(self, index: u32) -> bool {
        match self {
            WorkerKind::ClientSync => index == 1,
            WorkerKind::Media | WorkerKind::Sender | WorkerKind::Tasks => true,
            WorkerKind::FederationReader | WorkerKind::Rooms => false,
        }
    }

    /// Whether workers of this kind serve requests that Nginx routes to them.
    pub fn serves_clients(self) -> bool {
        matches!(
            self,
            WorkerKind::ClientSync
                | WorkerKind::FederationReader
                | WorkerKind::Media
                | WorkerKind::Rooms
        )
    }
}

/// How synprov reaches a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Ssh,
    /// Run the same steps on the machine synprov runs on.
    Local,
}

/// What to do with a host key that known_hosts does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyChecking {
    /// Refuse unknown and changed keys (the default).
    Strict,
    /// Record unknown keys; still refuse changed ones.
    AcceptNew,
}

/// Where Docker comes from when a host lacks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerSource {
    /// The distribution's `docker.io` package.
    Distribution,
    /// Docker's own apt repository (`docker-ce`).
    DockerRepository,
}

/// A machine synprov deploys to, with defaults and group settings already applied.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub address: String,
    /// The address other hosts of a spread deployment use to reach this one.
    pub private_address: Option<String>,
    pub port: u16,
    pub user: UserName,
    pub identity_file: Option<PathBuf>,
    pub become_root: bool,
    pub transport: Transport,
    pub host_key_checking: HostKeyChecking,
    pub docker_source: DockerSource,
    pub groups: Vec<String>,
}

/// Images of the four kinds of container.
#[derive(Debug, Clone)]
pub struct Images {
    /// Stream the images from this machine over the SSH session (`docker save | docker
    /// load`) instead of letting the host pull them: for hosts without a registry.
    pub preload: bool,
    pub synapse: ImageRef,
    pub postgres: ImageRef,
    pub redis: ImageRef,
    pub nginx: ImageRef,
    /// The ACME client's (lego, openssl and a POSIX sh), run by the renewal of a deployment
    /// whose certificate comes from an ACME CA.
    pub acme: ImageRef,
}

/// The ACME client's image unless `images.acme` says: the one `scripts/build-images.sh lego`
/// builds from Debian's lego package (no registry has it: stream it with `preload`).
pub const ACME_IMAGE: &str = "synprov/lego:4.9";

impl Images {
    pub fn all(&self) -> [&ImageRef; 4] {
        [&self.synapse, &self.postgres, &self.redis, &self.nginx]
    }
}

/// The guide's two reference machines: the host Postgres is sized for when its facts are
/// not known (`synprov render`, which connects nowhere). Once synprov has gathered a
/// host's facts, its measured memory and cores are used instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostgresProfile {
    /// 4 cores, 8 GB of RAM (the guide's "conservative" settings).
    Small,
    /// 16 cores or more, 64 GB of RAM, SSD.
    Large,
}

impl PostgresProfile {
    /// As the inventory spells it.
    pub fn name(self) -> &'static str {
        match self {
            PostgresProfile::Small => "small",
            PostgresProfile::Large => "large",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PostgresSettings {
    pub profile: PostgresProfile,
    /// Connection pool size of every Synapse process.
    pub cp_max: u32,
    /// Settings the inventory fixes, whatever the host has.
    pub pins: PostgresPins,
}

/// The `postgresql.conf` settings synprov sizes from the host, as the inventory pins
/// them; `None` is sized. `max_connections`, when pinned, has been checked to hold the
/// deployment's connection budget.
#[derive(Debug, Clone, Default)]
pub struct PostgresPins {
    pub shared_buffers: Option<MemorySize>,
    pub effective_cache_size: Option<MemorySize>,
    pub work_mem: Option<MemorySize>,
    pub maintenance_work_mem: Option<MemorySize>,
    pub max_worker_processes: Option<u32>,
    pub max_parallel_workers: Option<u32>,
    pub max_parallel_workers_per_gather: Option<u32>,
    pub max_connections: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct NginxSettings {
    /// Port on the host that Nginx's plain-HTTP listener is published on.
    pub http_port: u16,
    /// Addresses of TLS proxies in front of Nginx, trusted for X-Forwarded-For.
    pub trusted_proxies: Vec<AddressRange>,
    /// Client addresses allowed to reach `/_synapse/admin`.
    pub admin_allow: Vec<AddressRange>,
}

/// How other homeservers find this one when Nginx serves HTTPS itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Federation {
    /// On its own port (8448 unless set), as the Matrix spec's default.
    Port,
    /// On the HTTPS port, announced by `/.well-known/matrix/server` (delegation), which
    /// Nginx serves with `/.well-known/matrix/client`.
    WellKnown,
}

/// Where Nginx's certificate comes from.
#[derive(Debug, Clone)]
pub enum CertificateSource {
    /// The operator's files, read when the inventory loads and sent with every apply.
    Files(TlsPair),
    /// An ACME CA, issued and renewed on the host (`[deployments.NAME.tls.acme]`).
    Acme(AcmeSettings),
}

/// `[deployments.NAME.tls]`: Nginx terminates TLS itself.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub certificate: CertificateSource,
    pub federation: Federation,
    /// Host port of the HTTPS listener.
    pub https_port: u16,
    /// Host port of the federation listener ([`Federation::Port`] only).
    pub federation_port: u16,
}

/// One homeserver and where its pieces run.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub name: String,
    pub server_name: String,
    pub public_baseurl: String,
    pub admin_contact: Option<String>,
    /// Runs main, Postgres, Redis, Nginx, and every worker not placed elsewhere.
    pub host: String,
    pub deploy_dir: DeployDir,
    pub timezone: TimeZone,
    /// First TCP port of the listeners used when the deployment spans several hosts.
    pub port_base: u16,
    pub workers: BTreeMap<WorkerKind, u32>,
    pub placement: BTreeMap<WorkerKind, String>,
    pub images: Images,
    pub postgres: PostgresSettings,
    pub nginx: NginxSettings,
    /// HTTPS by Nginx itself; `None` is the plain-HTTP variant behind a TLS proxy.
    pub tls: Option<TlsSettings>,
    /// Every Synapse process serves its metrics on a listener of its own, on the private
    /// network, and a Prometheus scrape file lists them (`[deployments.NAME.metrics]`).
    pub metrics: bool,
    /// Extra `homeserver.yaml` settings from the inventory, merged over the base settings.
    pub homeserver_extra: serde_json::Map<String, serde_json::Value>,
    /// Scheduled backups (`[deployments.NAME.backup]`); `None` takes none.
    pub backup: Option<BackupSettings>,
    /// The secrets of a homeserver deployed before synprov (`imported = "FILE"`), in place of
    /// the derived ones.
    pub imported: Option<crate::secrets::ImportedSecrets>,
}

impl Deployment {
    /// The host that runs workers of `kind`.
    pub fn host_of(&self, kind: WorkerKind) -> &str {
        self.placement.get(&kind).map_or(&self.host, String::as_str)
    }

    /// Every host this deployment puts something on, main's host first.
    pub fn hosts(&self) -> Vec<&str> {
        let mut hosts = vec![self.host.as_str()];
        for kind in WorkerKind::ALL {
            let host = self.host_of(kind);
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        hosts
    }

    /// The images the part of this deployment on `host` runs: all four on the main host
    /// (and the ACME client's when it renews there), only Synapse's on a host of workers
    /// alone (no need to stream the others there).
    pub fn images_on(&self, host: &str) -> Vec<&ImageRef> {
        if host == self.host {
            let mut images = self.images.all().to_vec();
            if self.acme().is_some() {
                images.push(&self.images.acme);
            }
            // restic's image reaches the host with the others (streamed with `preload`).
            if let Some(backup) = &self.backup {
                images.push(&backup.image);
            }
            images
        } else {
            vec![&self.images.synapse]
        }
    }

    /// The ACME settings, when the certificate comes from an ACME CA.
    pub fn acme(&self) -> Option<&AcmeSettings> {
        match &self.tls.as_ref()?.certificate {
            CertificateSource::Acme(acme) => Some(acme),
            CertificateSource::Files(_) => None,
        }
    }

    /// Whether workers run on more than one host (listeners then use TCP).
    pub fn is_spread(&self) -> bool {
        self.hosts().len() > 1
    }

    pub fn count(&self, kind: WorkerKind) -> u32 {
        self.workers[&kind]
    }

    /// How many Synapse processes the deployment runs: main and every worker.
    pub fn process_count(&self) -> u32 {
        1 + self.workers.values().sum::<u32>()
    }

    /// The Postgres connections the deployment needs: every process's pool full
    /// (`cp_max`), and [`CONNECTION_HEADROOM`] for maintenance. In u64: 6001 processes
    /// times cp_max 1000 stays far from overflow, but beyond what Postgres takes.
    pub fn connection_budget(&self) -> u64 {
        u64::from(self.process_count()) * u64::from(self.postgres.cp_max)
            + u64::from(CONNECTION_HEADROOM)
    }

    /// How many listeners the processes have (main's two, and each worker's, and one more
    /// each for metrics): the TCP ports from `port_base` a spread deployment uses.
    pub fn listener_count(&self) -> u32 {
        let mut count = 2;
        for (kind, workers) in &self.workers {
            for index in 1..=*workers {
                count += u32::from(kind.replicates(index)) + u32::from(kind.serves_clients());
            }
        }
        if self.metrics {
            count += self.process_count();
        }
        count
    }
}

/// A size given as a count or a share of the hosts (`3` or `"25%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(u32),
    Percent(u32),
}

/// How many hosts change at once and when a rollout stops.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub parallel: u32,
    pub batch: Option<Amount>,
    pub max_failures: Amount,
    pub health_timeout_secs: u64,
    /// Roll a host back when it fails its health check after an apply.
    pub rollback_on_failure: bool,
    /// Generations kept per deployment on its host.
    pub keep_generations: u32,
    pub deadlines: Deadlines,
}

/// How long each step on a host may take before the host fails with it (`[rollout.deadlines]`):
/// a dead or stuck host fails within its step's deadline, not after libssh2's own timeout.
/// The defaults fit a slow host on a slow link; the health step waits `health_timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlines {
    /// TCP connection and SSH handshake.
    pub connect: Duration,
    /// Gathering facts and fetching the deployed files.
    pub facts: Duration,
    /// Installing or starting Docker, and Compose.
    pub install: Duration,
    /// Each image streamed to the host.
    pub image: Duration,
    /// Writing a deployment's files (and recording a generation).
    pub files: Duration,
    /// `compose up` (pulls included), and each stop or start of an upgrade.
    pub compose_up: Duration,
    /// The config check and the database dump before an upgrade, or its restore.
    pub backup: Duration,
    /// An ACME deployment's certificate: the placeholder, then the CA's validation and
    /// issuance (lego waits for the CA's answer, seconds to minutes).
    pub certificate: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        Deadlines {
            connect: Duration::from_secs(30),
            facts: minutes(2),
            install: minutes(20),
            image: minutes(30),
            files: minutes(5),
            compose_up: minutes(30),
            backup: minutes(120),
            certificate: minutes(10),
        }
    }
}

/// A plugin of the inventory (`[[plugins]]`), before it is loaded.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Its name in errors and output: `name`, or the file's stem.
    pub name: String,
    /// The component, resolved against the inventory's directory.
    pub path: PathBuf,
    /// Hosts or groups whose deployments it applies to (by their main host); all if empty.
    pub hosts: Vec<String>,
    /// Deployments it applies to; all if empty.
    pub deployments: Vec<String>,
    /// Its `config` table, as the plugin receives it (JSON).
    pub config: serde_json::Value,
    /// What the operator lets its services do beyond the confined default (`allow`).
    pub allow: Vec<Grant>,
    /// The SHA-256 the component must have (`sha256`, lowercase hex), when pinned.
    pub sha256: Option<String>,
}

impl PluginSpec {
    /// Whether the plugin adds to `deployment` (on every host the deployment uses).
    pub fn applies_to(&self, inventory: &Inventory, deployment: &Deployment) -> bool {
        let main = &inventory.hosts[&deployment.host];
        (self.deployments.is_empty() || self.deployments.contains(&deployment.name))
            && (self.hosts.is_empty()
                || self.hosts.contains(&main.name)
                || main.groups.iter().any(|g| self.hosts.contains(g)))
    }
}

/// A validated inventory.
#[derive(Debug)]
pub struct Inventory {
    /// The file it came from, as the user named it.
    pub path: PathBuf,
    pub hosts: BTreeMap<String, Host>,
    pub deployments: BTreeMap<String, Deployment>,
    pub rollout: Rollout,
    pub plugins: Vec<PluginSpec>,
    /// Values that are valid but dangerous, for the commands to show before they act.
    pub warnings: Vec<InventoryWarning>,
    /// Its text, to locate what later stages refuse (a host too small, found at plan time).
    source: error::Source,
}

impl Inventory {
    /// An error about host `host` as a whole, pointing at its `[hosts.NAME]` table.
    pub fn host_error(
        &self,
        host: &str,
        message: impl Into<String>,
        label: impl Into<String>,
        help: impl Into<String>,
    ) -> InventoryError {
        let span = self.source.table_span("hosts", host);
        self.source.error(span, message, label, help)
    }

    /// The hosts named by `names` (host or group names), in inventory order; all hosts when
    /// `names` is empty. An unknown name is an error naming the known ones.
    pub fn select(&self, names: &[String]) -> Result<Vec<String>, String> {
        for name in names {
            if !self.hosts.contains_key(name)
                && !self.hosts.values().any(|h| h.groups.contains(name))
            {
                return Err(format!(
                    "`{name}` is neither a host nor a group of the inventory (hosts: {})",
                    self.hosts.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        Ok(self
            .hosts
            .values()
            .filter(|h| {
                names.is_empty()
                    || names.contains(&h.name)
                    || h.groups.iter().any(|g| names.contains(g))
            })
            .map(|h| h.name.clone())
            .collect())
    }

    /// Deployments that put something on `host`.
    pub fn deployments_on<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Deployment> {
        self.deployments
            .values()
            .filter(move |d| d.hosts().contains(&host))
    }

    /// The hosts that must be up before `host`: the main hosts of the spread deployments
    /// that have workers on `host`. Those workers reach Postgres and Redis there, and
    /// Synapse refuses to start without them.
    pub fn prerequisites(&self, host: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .deployments_on(host)
            .filter(|d| d.host != host)
            .map(|d| d.host.clone())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Reads and validates the inventory at `path`.
/// Only a regular file is read (a FIFO or a device would block or never end), and at most
/// [`MAX_INVENTORY_BYTES`] of it.
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    let bytes =
        crate::regular_file::read(path, MAX_INVENTORY_BYTES).map_err(|refusal| match refusal {
            Refusal::Io(source) => InventoryError::Read {
                path: path.display().to_string(),
                source,
            },
            Refusal::NotAFile => InventoryError::NotAFile {
                path: path.display().to_string(),
            },
            Refusal::TooLarge { .. } => InventoryError::TooLarge {
                path: path.display().to_string(),
                limit: MAX_INVENTORY_BYTES,
            },
        })?;
    let text = String::from_utf8(bytes).map_err(|_| InventoryError::Read {
        path: path.display().to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ),
    })?;
    parse(path, text)
}

/// The largest inventory read: thousands of hosts fit in a few MiB.
pub const MAX_INVENTORY_BYTES: u64 = 16 << 20;

/// Validates inventory text; `path` names it in errors.
pub fn parse(path: &Path, text: String) -> Result<Inventory, InventoryError> {
    let source = error::Source {
        name: path.display().to_string(),
        text,
    };
    validate::validate(path, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread() -> Inventory {
        let text = "[hosts.a]\naddress = \"10.0.0.1\"\nprivate_address = \"10.1.0.1\"\n\
[hosts.b]\naddress = \"10.0.0.2\"\nprivate_address = \"10.1.0.2\"\n\
[hosts.c]\naddress = \"10.0.0.3\"\n\
[deployments.d]\nserver_name = \"example.org\"\nhost = \"b\"\n[deployments.d.placement]\nrooms = \"a\"\n\
[deployments.e]\nserver_name = \"example.com\"\nhost = \"c\"\n";
        parse(Path::new("t.toml"), text.to_string()).unwrap()
    }

    #[test]
    fn a_host_of_workers_needs_the_main_host_and_only_the_synapse_image() {
        let inventory = spread();
        assert_eq!(inventory.prerequisites("a"), ["b"]);
        assert!(inventory.prerequisites("b").is_empty());
        assert!(inventory.prerequisites("c").is_empty());
        let d = &inventory.deployments["d"];
        assert_eq!(d.images_on("a"), [&d.images.synapse]);
        assert_eq!(d.images_on("b").len(), 4);
    }

    #[test]
    fn the_main_host_of_an_acme_deployment_also_runs_the_acme_client_s_image() {
        let text = "[hosts.a]\naddress = \"10.0.0.1\"\n\
[deployments.d]\nserver_name = \"example.org\"\nhost = \"a\"\n\
[deployments.d.images]\nacme = \"registry.example.org/lego:4.9\"\n\
[deployments.d.tls.acme]\nemail = \"admin@example.org\"\n";
        let inventory = parse(Path::new("t.toml"), text.to_string()).unwrap();
        let d = &inventory.deployments["d"];
        assert_eq!(d.images_on("a").len(), 5);
        assert_eq!(
            d.images_on("a")[4].to_string(),
            "registry.example.org/lego:4.9"
        );
        assert!(d.acme().is_some());
        assert_eq!(
            spread().deployments["d"].images.acme.to_string(),
            ACME_IMAGE
        );
    }
}
