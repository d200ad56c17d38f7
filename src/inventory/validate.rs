//! From the raw TOML to a validated [`Inventory`]: defaults applied, references resolved,
//! every value checked. The first problem found is reported with its position.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

mod acme;
mod backup;
mod tls;

use super::error::{InventoryError, InventoryWarning, Source, did_you_mean};
use super::raw::{RawDeadlines, RawDeployment, RawHostSettings, RawInventory};
use super::values::{
    AddressRange, DeployDir, DeploymentName, HostName, ImageRef, TimeZone, UserName, admin_contact,
    check_homeserver_table, check_host, check_server_name, public_baseurl,
};
use super::{
    Amount, Deadlines, Deployment, DockerSource, Host, HostKeyChecking, Images, Inventory,
    MemorySize, NginxSettings, PluginSpec, PostgresPins, PostgresProfile, PostgresSettings,
    Rollout, Transport, WorkerKind,
};

const REFERENCE: &str = "see the inventory reference in README.md";

/// Largest worker count of one kind; far beyond any real server, small enough that a typo
/// (an extra zero or two) is caught.
const MAX_WORKERS: u32 = 1000;

/// Connections Postgres keeps free for superusers, maintenance and replication.
pub const CONNECTION_HEADROOM: u32 = 10;

/// Postgres' own ceiling on `max_connections`.
const MAX_CONNECTIONS: u32 = 262_143;

/// Most background processes of one kind a Postgres setting may be given: beyond the
/// cores of any host, small enough that a typo is caught.
const MAX_POSTGRES_WORKERS: u32 = 1024;

/// Largest connection pool of one Synapse process.
const MAX_CP: u32 = 1000;

/// Bounds of `health_timeout`, in seconds: a day is longer than any migration.
const HEALTH_TIMEOUT: RangeInclusive<u64> = 1..=86_400;

/// Bounds of `keep_generations`: each generation is a copy of the deployment's files (tens
/// of kilobytes) and maybe a database dump.
const KEEP_GENERATIONS: RangeInclusive<u32> = 1..=1000;

/// Bounds of a step's deadline: a second is the least a round trip needs; a week is longer
/// than any dump.
const DEADLINE: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(7 * 86_400);

/// Hosts worked on at once unless `[rollout] parallel` says: chosen with
/// `scripts/bench-fleet.sh` (README, "Fleet benchmark").
const DEFAULT_PARALLEL: u32 = 25;

/// Most hosts worked on at once.
const MAX_PARALLEL: u32 = 4096;

/// Ports a deployment's own main host uses besides Synapse's listeners: Postgres and Redis
/// (reached over the private network in a spread deployment).
const SERVICE_PORTS: [(u16, &str); 2] = [(5432, "Postgres"), (6379, "Redis")];

pub fn validate(path: &Path, source: Source) -> Result<Inventory, InventoryError> {
    let raw: RawInventory =
        toml::from_str(&source.text).map_err(|e| deserialize_error(&source, &e))?;
    let checker = Checker {
        source: &source,
        dir: path.parent().unwrap_or(Path::new(".")),
        warnings: RefCell::default(),
    };
    let hosts = checker.hosts(&raw)?;
    let deployments = checker.deployments(&raw, &hosts)?;
    if deployments.is_empty() {
        return Err(checker.deploys_nothing(&raw));
    }
    let rollout = checker.rollout(&raw)?;
    let plugins = checker.plugins(&raw, &hosts, &deployments)?;
    Ok(Inventory {
        path: path.to_path_buf(),
        hosts,
        deployments,
        rollout,
        plugins,
        warnings: checker.warnings.into_inner(),
        source,
    })
}

/// Turns a TOML or serde error into a located one with a fix.
fn deserialize_error(source: &Source, error: &toml::de::Error) -> InventoryError {
    let span = error.span().unwrap_or(0..0);
    let message = error.message().trim().to_string();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let unknown = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
        let help = match did_you_mean(unknown, &expected) {
            Some(suggestion) => format!("did you mean `{suggestion}`?"),
            None => format!("the keys allowed here are: {}", expected.join(", ")),
        };
        return source.error(
            span,
            format!("unknown key `{unknown}`"),
            "not a known key here",
            help,
        );
    }
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        return source.error(
            span,
            message,
            "wrong type",
            format!("give a value of the expected type; {REFERENCE}"),
        );
    }
    if message.starts_with("missing field") {
        let field = message.split('`').nth(1).unwrap_or_default();
        return source.error(
            span,
            format!("this table needs the key `{field}`"),
            "missing key",
            format!("add `{field} = ...`; {REFERENCE}"),
        );
    }
    if message.contains("duplicate key") {
        return source.error(
            span,
            message,
            "defined twice",
            "every name must be unique: rename or remove one of them",
        );
    }
    source.error(
        span,
        format!("invalid TOML: {message}"),
        "here",
        "fix the TOML syntax at this position",
    )
}

struct Checker<'a> {
    source: &'a Source,
    /// The inventory's directory: the paths it names are relative to it.
    dir: &'a Path,
    warnings: RefCell<Vec<InventoryWarning>>,
}

impl Checker<'_> {
    fn at<T>(
        &self,
        value: &Spanned<T>,
        message: impl Into<String>,
        label: &str,
        help: impl Into<String>,
    ) -> InventoryError {
        self.source.error(value.span(), message, label, help)
    }

    /// Parses `value` with `parse`, or fails pointing at it with the parser's reason.
    fn parsed<T>(
        &self,
        value: &Spanned<String>,
        what: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
        help: &str,
    ) -> Result<T, InventoryError> {
        parse(value.get_ref()).map_err(|why| {
            self.at(
                value,
                format!("invalid {what} {:?}: {why}", value.get_ref()),
                &format!("invalid {what}"),
                help,
            )
        })
    }

    /// A number within `range`, `default` when absent, or an error pointing at it.
    fn bounded<T>(
        &self,
        value: &Option<Spanned<T>>,
        key: &str,
        range: RangeInclusive<T>,
        default: T,
        help: &str,
    ) -> Result<T, InventoryError>
    where
        T: Copy + PartialOrd + std::fmt::Display,
    {
        Ok(self.within(value, key, range, help)?.unwrap_or(default))
    }

    /// A number within `range` when given, or an error pointing at it.
    fn within<T>(
        &self,
        value: &Option<Spanned<T>>,
        key: &str,
        range: RangeInclusive<T>,
        help: &str,
    ) -> Result<Option<T>, InventoryError>
    where
        T: Copy + PartialOrd + std::fmt::Display,
    {
        match value {
            Some(v) if !range.contains(v.get_ref()) => Err(self.at(
                v,
                format!(
                    "{key} = {} is outside {}-{}",
                    v.get_ref(),
                    range.start(),
                    range.end()
                ),
                "out of range",
                help,
            )),
            Some(v) => Ok(Some(*v.get_ref())),
            None => Ok(None),
        }
    }

    /// A file the inventory names (`key = "PATH"`), resolved against the inventory's
    /// directory. An empty path is refused: joined to the directory it would name the
    /// directory itself, and given to ssh it would be no file at all.
    pub(super) fn file_path(
        &self,
        path: &Spanned<String>,
        key: &str,
    ) -> Result<PathBuf, InventoryError> {
        if path.get_ref().trim().is_empty() {
            return Err(self.at(
                path,
                format!("`{key}` is an empty path"),
                "empty path",
                format!("give `{key}` the path of a file, absolute or relative to the inventory's directory, or remove the key"),
            ));
        }
        Ok(self.dir.join(path.get_ref()))
    }

    /// The error of an inventory that defines no deployment (empty, comments only, hosts
    /// alone): it would make every command succeed having done nothing.
    fn deploys_nothing(&self, raw: &RawInventory) -> InventoryError {
        let span = raw
            .hosts
            .keys()
            .next()
            .map_or(0..0, |host| self.source.table_span("hosts", host.get_ref()));
        self.source.error(
            span,
            "the inventory deploys nothing: it defines no `[deployments.NAME]` table",
            "no deployment",
            "add a homeserver: `[deployments.NAME]` with `server_name = \"example.org\"` and `host = \"HOST\"` (a host of `[hosts.HOST]`); `synprov check --help` shows an example inventory",
        )
    }

    fn warn<T>(&self, value: &Spanned<T>, message: String, label: &str, help: &str) {
        self.warnings
            .borrow_mut()
            .push(self.source.warning(value.span(), message, label, help));
    }

    fn hosts(&self, raw: &RawInventory) -> Result<BTreeMap<String, Host>, InventoryError> {
        let mut hosts = BTreeMap::new();
        for name in raw.groups.keys() {
            HostName::parse(name).map_err(|why| {
                self.source.error(
                    self.source.table_span("groups", name),
                    format!("invalid group name {name:?}: {why}"),
                    "invalid name",
                    NAME_HELP,
                )
            })?;
        }
        for (name, settings) in &raw.hosts {
            self.parsed(name, "host name", HostName::parse, NAME_HELP)?;
            let mut merged = raw.defaults.clone();
            for group in settings.groups.iter().flatten() {
                let group_settings = raw.groups.get(group.get_ref()).ok_or_else(|| {
                    let known: Vec<&str> = raw.groups.keys().map(String::as_str).collect();
                    self.at(
                        group,
                        format!(
                            "host `{}` is in group `{}`, which is not defined",
                            name.get_ref(),
                            group.get_ref()
                        ),
                        "undefined group",
                        suggestion("group", group.get_ref(), &known),
                    )
                })?;
                overlay(&mut merged, group_settings.get_ref());
            }
            overlay(&mut merged, settings);
            hosts.insert(name.get_ref().clone(), self.host(name, merged)?);
        }
        Ok(hosts)
    }

    fn host(&self, name: &Spanned<String>, s: RawHostSettings) -> Result<Host, InventoryError> {
        let transport = match s.transport.as_ref().map(|t| t.get_ref().as_str()) {
            None | Some("ssh") => Transport::Ssh,
            Some("local") => Transport::Local,
            Some(other) => {
                return Err(self.at(
                    s.transport.as_ref().unwrap_or(name),
                    format!("unknown transport `{other}`"),
                    "unknown transport",
                    "use \"ssh\" or \"local\"",
                ));
            }
        };
        let host_key_checking = match s.host_key_checking.as_ref().map(|t| t.get_ref().as_str()) {
            None | Some("strict") => HostKeyChecking::Strict,
            Some("accept-new") => HostKeyChecking::AcceptNew,
            Some(other) => {
                return Err(self.at(
                    s.host_key_checking.as_ref().unwrap_or(name),
                    format!("unknown host_key_checking `{other}`"),
                    "unknown mode",
                    "use \"strict\" (the default) or \"accept-new\"",
                ));
            }
        };
        let docker_source = match s.docker_source.as_ref().map(|t| t.get_ref().as_str()) {
            None | Some("distribution") => DockerSource::Distribution,
            Some("docker") => DockerSource::DockerRepository,
            Some(other) => return Err(self.at(
                s.docker_source.as_ref().unwrap_or(name),
                format!("unknown docker_source `{other}`"),
                "unknown source",
                "use \"distribution\" (Debian's docker.io) or \"docker\" (Docker's apt repository)",
            )),
        };
        let address = match (&s.address, transport) {
            (Some(address), _) => {
                check_address(address.get_ref()).map_err(|why| {
                    self.at(
                        address,
                        format!("invalid address `{}`: {why}", address.get_ref()),
                        "invalid address",
                        "give a DNS name or an IP address",
                    )
                })?;
                address.get_ref().clone()
            }
            (None, Transport::Local) => "localhost".to_string(),
            (None, Transport::Ssh) => {
                return Err(self.source.error(self.source.table_span("hosts", name.get_ref()), format!("host `{}` has no address", name.get_ref()), "needs `address`", "add `address = \"host.example.org\"`, or `transport = \"local\"` for this machine"));
            }
        };
        if let Some(private) = &s.private_address {
            check_address(private.get_ref()).map_err(|why| {
                self.at(
                    private,
                    format!("invalid private_address `{}`: {why}", private.get_ref()),
                    "invalid address",
                    "give the host's address on the private network",
                )
            })?;
        }
        let port = match &s.port {
            Some(port) if *port.get_ref() == 0 => {
                return Err(self.at(
                    port,
                    "port 0 is not a port",
                    "invalid port",
                    "give the port sshd listens on (22 by default)",
                ));
            }
            Some(port) => *port.get_ref(),
            None => 22,
        };
        if let Some(file) = &s.identity_file {
            self.file_path(file, "identity_file")?;
        }
        let user = match &s.user {
            Some(user) => self.parsed(
                user,
                "user",
                UserName::parse,
                "give the login name on the host, e.g. \"root\" or \"deploy\"",
            )?,
            None => UserName::root(),
        };
        Ok(Host {
            name: name.get_ref().clone(),
            address,
            private_address: s.private_address.map(Spanned::into_inner),
            port,
            user,
            identity_file: s.identity_file.map(Spanned::into_inner).map(PathBuf::from),
            become_root: s.become_root.unwrap_or(false),
            transport,
            host_key_checking,
            docker_source,
            groups: s
                .groups
                .unwrap_or_default()
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
        })
    }

    fn deployments(
        &self,
        raw: &RawInventory,
        hosts: &BTreeMap<String, Host>,
    ) -> Result<BTreeMap<String, Deployment>, InventoryError> {
        let mut deployments = BTreeMap::new();
        // By the name in lowercase: Matrix server names are DNS names, which compare
        // without regard to case.
        let mut server_names: HashMap<String, (String, String)> = HashMap::new();
        let mut dirs: Vec<(String, DeployDir, String)> = Vec::new();
        let mut ports: Vec<PortClaim> = Vec::new();
        for (name, raw_deployment) in &raw.deployments {
            let deployment = self.deployment(name, raw_deployment, hosts)?;
            if let Some((other, spelt)) = server_names.insert(
                deployment.server_name.to_ascii_lowercase(),
                (deployment.name.clone(), deployment.server_name.clone()),
            ) {
                let same = if spelt == deployment.server_name {
                    String::new()
                } else {
                    format!(
                        " (as `{spelt}`: server names are DNS names, which compare without regard to case)"
                    )
                };
                return Err(self.at(
                    &raw_deployment.server_name,
                    format!(
                        "server_name `{}` is already used by deployment `{other}`{same}",
                        deployment.server_name
                    ),
                    "duplicate server_name",
                    "every deployment is its own homeserver: give it its own server_name",
                ));
            }
            for host in deployment.hosts() {
                let dir = &deployment.deploy_dir;
                // One inside the other counts too: `destroy` of one would remove the other.
                let nested = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
                if let Some((_, other_dir, other)) = dirs
                    .iter()
                    .find(|(h, d, _)| h == host && (nested(dir, d) || nested(d, dir)))
                {
                    let span = raw_deployment
                        .deploy_dir
                        .as_ref()
                        .map_or_else(|| raw_deployment.host.span(), |d| d.span());
                    return Err(self.source.error(span, format!("deploy_dir `{dir}` on host `{host}` overlaps `{other_dir}` of deployment `{other}`"), "shared deploy_dir", "give each deployment on a host a directory of its own, neither inside the other"));
                }
                dirs.push((host.to_string(), dir.clone(), deployment.name.clone()));
            }
            for claim in port_claims(raw_deployment, &deployment) {
                if let Some(other) = ports
                    .iter()
                    .find(|c| c.host == claim.host && c.overlaps(&claim))
                {
                    return Err(self.source.error(
                        claim.span.clone(),
                        format!(
                            "{} on host `{}` overlaps {} ({})",
                            claim.describe(),
                            claim.host,
                            other.describe(),
                            other.range()
                        ),
                        "port in use",
                        "give each listener its own ports: set `[deployments.NAME] port_base` (the listeners of a spread deployment take consecutive ports from it) or `[deployments.NAME.nginx] http_port`",
                    ));
                }
                ports.push(claim);
            }
            deployments.insert(deployment.name.clone(), deployment);
        }
        Ok(deployments)
    }

    fn host_ref(
        &self,
        host: &Spanned<String>,
        hosts: &BTreeMap<String, Host>,
    ) -> Result<String, InventoryError> {
        if hosts.contains_key(host.get_ref()) {
            return Ok(host.get_ref().clone());
        }
        let known: Vec<&str> = hosts.keys().map(String::as_str).collect();
        Err(self.at(
            host,
            format!("host `{}` is not defined", host.get_ref()),
            "undefined host",
            suggestion("host", host.get_ref(), &known),
        ))
    }

    fn deployment(
        &self,
        name: &Spanned<String>,
        raw: &RawDeployment,
        hosts: &BTreeMap<String, Host>,
    ) -> Result<Deployment, InventoryError> {
        let name_text = name.get_ref();
        self.parsed(
            name,
            "deployment name",
            DeploymentName::parse,
            "use lowercase letters, digits, `-` and `_`, starting with a letter or digit (it names the Compose project)",
        )?;
        let server_name = raw.server_name.get_ref();
        check_server_name(server_name).map_err(|why| self.at(&raw.server_name, format!("invalid server_name `{server_name}`: {why}"), "invalid server_name", "give the domain of the Matrix IDs, e.g. \"example.org\" (a port may follow: \"example.org:8448\")"))?;
        let public_baseurl = match &raw.public_baseurl {
            Some(url) => self.parsed(
                url,
                "public_baseurl",
                public_baseurl,
                "give the URL clients use, e.g. \"https://matrix.example.org/\"",
            )?,
            None => format!("https://{server_name}/"),
        };
        let admin_contact = raw
            .admin_contact
            .as_ref()
            .map(|contact| {
                self.parsed(
                    contact,
                    "admin_contact",
                    admin_contact,
                    "give an email address, e.g. \"mailto:admin@example.org\"",
                )
            })
            .transpose()?;
        let host = self.host_ref(&raw.host, hosts)?;

        let mut workers = BTreeMap::new();
        let mut placement = BTreeMap::new();
        for kind in WorkerKind::ALL {
            let (count, place) = worker_fields(raw, kind);
            let value = match count {
                Some(count) => {
                    let n = *count.get_ref();
                    if n == 0 {
                        return Err(self.at(count, format!("{} needs at least one worker", kind.stem()), "must be 1 or more", format!("the guide's model has no fallback for this role: set `{} = {}` (the default) or more", kind.stem(), kind.default_count())));
                    }
                    if n > MAX_WORKERS {
                        return Err(self.at(
                            count,
                            format!(
                                "{n} {} workers is more than synprov supports ({MAX_WORKERS})",
                                kind.stem()
                            ),
                            "too many",
                            format!("use at most {MAX_WORKERS}"),
                        ));
                    }
                    n
                }
                None => kind.default_count(),
            };
            workers.insert(kind, value);
            if let Some(place) = place {
                placement.insert(kind, self.host_ref(place, hosts)?);
            }
        }

        let deploy_dir = match &raw.deploy_dir {
            Some(dir) => self.parsed(
                dir,
                "deploy_dir",
                DeployDir::parse,
                "give an absolute directory of its own, e.g. \"/opt/synapse/example\"",
            )?,
            None => DeployDir::default_for(name_text).map_err(|why| {
                self.at(
                    name,
                    format!(
                        "the default deploy_dir of deployment `{name_text}` is not usable: {why}"
                    ),
                    "name too long for the default directory",
                    "set `deploy_dir` to a shorter absolute directory",
                )
            })?,
        };
        let timezone = match &raw.timezone {
            Some(zone) => self.parsed(
                zone,
                "timezone",
                TimeZone::parse,
                "give an IANA zone name, e.g. \"Etc/UTC\" or \"Europe/Berlin\"",
            )?,
            None => TimeZone::utc(),
        };
        let image = |value: &Option<Spanned<String>>, default: &'static str| match value {
            Some(image) => self.parsed(
                image,
                "image",
                ImageRef::parse,
                "give an image reference, e.g. \"registry.example.org/synapse:v1.163.0\"",
            ),
            None => Ok(ImageRef::builtin(default)),
        };
        let images = Images {
            preload: raw.images.preload.unwrap_or(false),
            synapse: image(&raw.images.synapse, "matrixdotorg/synapse:latest")?,
            postgres: image(&raw.images.postgres, "postgres:16-alpine")?,
            redis: image(&raw.images.redis, "redis:alpine")?,
            nginx: image(&raw.images.nginx, "nginx:mainline-alpine-slim")?,
            acme: image(&raw.images.acme, super::ACME_IMAGE)?,
        };
        let nginx = self.nginx(raw)?;
        let tls = self.tls(raw, &public_baseurl)?;
        let homeserver_extra = match &raw.homeserver {
            Some(table) => {
                check_homeserver_table(table.get_ref()).map_err(|refusal| {
                    self.at(
                        table,
                        format!(
                            "homeserver setting `{}` cannot be used: {}",
                            refusal.path, refusal.why
                        ),
                        "refused setting",
                        "change or remove that setting",
                    )
                })?;
                serde_json::to_value(table.get_ref())
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default()
            }
            None => serde_json::Map::new(),
        };

        let postgres = self.postgres(raw)?;
        let backup = self.backup(&raw.backup, &deploy_dir, hosts)?;
        let imported = match &raw.imported {
            Some(file) => {
                let path = self.file_path(file, "imported")?;
                let secrets = crate::inventory::values::read_text(&path)
                    .and_then(|text| crate::secrets::ImportedSecrets::parse(&text));
                Some(secrets.map_err(|why| {
                    self.at(
                        file,
                        format!("imported secrets: {why}"),
                        "unusable secrets file",
                        "give the file `synprov import` wrote, relative to the inventory's directory",
                    )
                })?)
            }
            None => None,
        };
        let deployment = Deployment {
            name: name_text.clone(),
            server_name: server_name.clone(),
            public_baseurl,
            admin_contact,
            host,
            deploy_dir,
            timezone,
            port_base: raw.port_base.as_ref().map_or(9100, |p| *p.get_ref()),
            workers,
            placement,
            images,
            postgres,
            nginx,
            tls,
            metrics: raw.metrics.enabled.unwrap_or(false),
            homeserver_extra,
            backup,
            imported,
        };
        self.connection_budget(raw, &deployment)?;
        if deployment.is_spread() {
            self.port_base(raw, &deployment)?;
        }
        if deployment.is_spread() {
            for host in deployment.hosts() {
                if hosts[host].private_address.is_none() {
                    return Err(self.source.error(self.source.table_span("hosts", host), format!("deployment `{name_text}` spans several hosts, but host `{host}` has no private_address"), "needs `private_address`", "add `private_address = \"10.0.0.x\"`: the workers of one homeserver reach each other over the private network"));
                }
            }
        }
        Ok(deployment)
    }

    fn nginx(&self, raw: &RawDeployment) -> Result<NginxSettings, InventoryError> {
        let proxies = self.addresses(&raw.nginx.trusted_proxies, "trusted_proxies")?;
        for (entry, range) in &proxies {
            if range.is_everyone() {
                self.warn(entry, format!("trusted_proxies {range} trusts every address: anyone can forge X-Forwarded-For, and so pass admin_allow"), "trusts everyone", "list only the addresses of your TLS proxies");
            }
        }
        let admin = self.addresses(&raw.nginx.admin_allow, "admin_allow")?;
        for (entry, range) in &admin {
            if range.is_everyone() {
                self.warn(
                    entry,
                    format!("admin_allow {range} opens the admin API to every address"),
                    "open to everyone",
                    "list only the addresses of your administrators",
                );
            }
        }
        let http_port = match &raw.nginx.http_port {
            Some(port) if *port.get_ref() == 0 => {
                return Err(self.at(
                    port,
                    "port 0 is not a port",
                    "invalid port",
                    "give the port Nginx is published on, e.g. 8008",
                ));
            }
            Some(port) => *port.get_ref(),
            // With TLS, the plain listener only redirects browsers to HTTPS.
            None if raw.tls.is_some() => 80,
            None => 8008,
        };
        Ok(NginxSettings {
            http_port,
            trusted_proxies: proxies.into_iter().map(|(_, r)| r).collect(),
            admin_allow: if raw.nginx.admin_allow.is_some() {
                admin.into_iter().map(|(_, r)| r).collect()
            } else {
                ["127.0.0.1", "::1"]
                    .iter()
                    .filter_map(|a| AddressRange::parse(a).ok())
                    .collect()
            },
        })
    }

    /// Each entry of an address list, parsed, beside its text.
    fn addresses<'r>(
        &self,
        list: &'r Option<Vec<Spanned<String>>>,
        key: &str,
    ) -> Result<Vec<(&'r Spanned<String>, AddressRange)>, InventoryError> {
        list.iter()
            .flatten()
            .map(|entry| {
                let range = self.parsed(
                    entry,
                    key,
                    AddressRange::parse,
                    "give IP addresses or CIDR ranges, e.g. [\"127.0.0.1\", \"10.0.0.0/8\"]",
                )?;
                Ok((entry, range))
            })
            .collect()
    }

    /// The listeners of a spread deployment take consecutive ports from `port_base`: all of
    /// them unprivileged and within 65535.
    fn port_base(
        &self,
        raw: &RawDeployment,
        deployment: &Deployment,
    ) -> Result<(), InventoryError> {
        let first = u32::from(deployment.port_base);
        let count = deployment.listener_count();
        let last = first + count - 1;
        if first < 1024 || last > u32::from(u16::MAX) {
            let span = raw
                .port_base
                .as_ref()
                .map_or_else(|| raw.host.span(), |p| p.span());
            return Err(self.source.error(span, format!("the {count} listeners of deployment `{}` would take ports {first}-{last}, outside 1024-65535", deployment.name), "ports out of range", format!("set `port_base` between 1024 and {}", u32::from(u16::MAX) + 1 - count)));
        }
        Ok(())
    }

    fn postgres(&self, raw: &RawDeployment) -> Result<PostgresSettings, InventoryError> {
        let given = &raw.postgres;
        let profile = match given.profile.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("small") => PostgresProfile::Small,
            Some("large") => PostgresProfile::Large,
            Some(other) => {
                return Err(self.at(
                    given.profile.as_ref().unwrap_or(&raw.host),
                    format!("unknown Postgres profile `{other}`"),
                    "unknown profile",
                    "use \"small\" (4 cores, 8 GB) or \"large\" (16+ cores, 64 GB)",
                ));
            }
        };
        // Below its minimum, Postgres refuses to start: the pin is refused here instead.
        let memory = |value: &Option<Spanned<String>>, key: &str, min: MemorySize| {
            (value.as_ref())
                .map(|v| {
                    let parse = |text: &str| {
                        MemorySize::parse(text).and_then(|size| {
                            (size >= min)
                                .then_some(size)
                                .ok_or(format!("Postgres refuses {key} below {min}"))
                        })
                    };
                    self.parsed(
                        v,
                        key,
                        parse,
                        "give an amount in a unit Postgres reads, e.g. \"2GB\" or \"512MB\"",
                    )
                })
                .transpose()
        };
        let processes = |value: &Option<Spanned<u32>>, key: &str| {
            self.within(
                value,
                key,
                0..=MAX_POSTGRES_WORKERS,
                "give a number of background processes, about one per core",
            )
        };
        let pins = PostgresPins {
            // Postgres' minimums (runtime-config-resource): 16 buffers of 8kB, one page,
            // 64kB and 1MB.
            shared_buffers: memory(
                &given.shared_buffers,
                "shared_buffers",
                MemorySize::from_kb(128),
            )?,
            effective_cache_size: memory(
                &given.effective_cache_size,
                "effective_cache_size",
                MemorySize::from_kb(8),
            )?,
            work_mem: memory(&given.work_mem, "work_mem", MemorySize::from_kb(64))?,
            maintenance_work_mem: memory(
                &given.maintenance_work_mem,
                "maintenance_work_mem",
                MemorySize::from_mb(1),
            )?,
            max_worker_processes: processes(&given.max_worker_processes, "max_worker_processes")?,
            max_parallel_workers: processes(&given.max_parallel_workers, "max_parallel_workers")?,
            max_parallel_workers_per_gather: processes(
                &given.max_parallel_workers_per_gather,
                "max_parallel_workers_per_gather",
            )?,
            max_connections: self.within(
                &given.max_connections,
                "max_connections",
                CONNECTION_HEADROOM + 1..=MAX_CONNECTIONS,
                "Postgres takes no more; a connection budget needs more than the headroom",
            )?,
        };
        let cp_max = self.bounded(
            &given.cp_max,
            "cp_max",
            1..=MAX_CP,
            6,
            "the guide suggests 6 per process with many workers",
        )?;
        Ok(PostgresSettings {
            profile,
            cp_max,
            pins,
        })
    }

    /// Every process's full pool and the headroom must fit in `max_connections`: the one
    /// pinned, or else Postgres' own ceiling (synprov sizes it to the budget).
    fn connection_budget(
        &self,
        raw: &RawDeployment,
        deployment: &Deployment,
    ) -> Result<(), InventoryError> {
        let pinned = deployment.postgres.pins.max_connections;
        let max_connections = pinned.unwrap_or(MAX_CONNECTIONS);
        let needed = deployment.connection_budget();
        if needed <= u64::from(max_connections) {
            return Ok(());
        }
        let (processes, cp_max) = (deployment.process_count(), deployment.postgres.cp_max);
        let opened = needed - u64::from(CONNECTION_HEADROOM);
        let span = (raw.postgres.max_connections.as_ref())
            .or(raw.postgres.cp_max.as_ref())
            .map_or_else(|| raw.host.span(), |s| s.span());
        let lower =
            (u64::from(max_connections - CONNECTION_HEADROOM) / u64::from(processes)).max(1);
        let fix = if needed <= u64::from(MAX_CONNECTIONS) {
            format!(
                "set `[deployments.NAME.postgres] max_connections = {needed}` or more (or leave it out: synprov then sizes it), or lower cp_max to {lower} or less"
            )
        } else {
            format!("lower cp_max to {lower} or less")
        };
        let limit = match pinned {
            Some(_) => format!("max_connections = {max_connections}"),
            None => format!("Postgres' ceiling of {max_connections} connections"),
        };
        Err(self.source.error(span, format!("{processes} Synapse processes with cp_max = {cp_max} may open {opened} Postgres connections, more than {limit} allows ({CONNECTION_HEADROOM} are kept for maintenance)"), "connection budget exceeded", fix))
    }

    fn rollout(&self, raw: &RawInventory) -> Result<Rollout, InventoryError> {
        let r = &raw.rollout;
        let parallel = self.bounded(
            &r.parallel,
            "parallel",
            1..=MAX_PARALLEL,
            DEFAULT_PARALLEL,
            "set how many hosts synprov works on at once, e.g. `parallel = 10`",
        )?;
        let batch = r
            .batch
            .as_ref()
            .map(|b| match self.amount(b, "batch")? {
                Amount::Count(0) => Err(self.at(
                    b,
                    "a batch of 0 hosts never ends",
                    "must be 1 or more",
                    "give how many hosts (`batch = 3`) or which share (`batch = \"25%\"`) change at once",
                )),
                amount => Ok(amount),
            })
            .transpose()?;
        let max_failures = r
            .max_failures
            .as_ref()
            .map_or(Ok(Amount::Count(0)), |m| self.amount(m, "max_failures"))?;
        let health_timeout_secs = self.bounded(
            &r.health_timeout,
            "health_timeout",
            HEALTH_TIMEOUT,
            300,
            "give the seconds to wait for the stack to become healthy, e.g. `health_timeout = 300`",
        )?;
        let keep_generations = self.bounded(
            &r.keep_generations,
            "keep_generations",
            KEEP_GENERATIONS,
            10,
            "give how many generations each deployment keeps on its host, e.g. `keep_generations = 10`",
        )?;
        Ok(Rollout {
            deadlines: self.deadlines(&r.deadlines)?,
            parallel,
            batch,
            max_failures,
            health_timeout_secs,
            rollback_on_failure: r.rollback_on_failure.unwrap_or(false),
            keep_generations,
        })
    }

    fn deadlines(&self, raw: &RawDeadlines) -> Result<Deadlines, InventoryError> {
        let default = Deadlines::default();
        let read = |value: &Option<Spanned<String>>, key: &str, default: Duration| {
            value.as_ref().map_or(Ok(default), |v| {
                self.parsed(
                    v,
                    &format!("deadline `{key}`"),
                    |text| {
                        let duration =
                            humantime::parse_duration(text).map_err(|e| e.to_string())?;
                        if DEADLINE.contains(&duration) {
                            Ok(duration)
                        } else {
                            Err("a deadline lies between 1s and 7d".into())
                        }
                    },
                    &format!(
                        "give a duration, e.g. `{key} = \"{}\"`",
                        humantime::format_duration(default)
                    ),
                )
            })
        };
        Ok(Deadlines {
            connect: read(&raw.connect, "connect", default.connect)?,
            facts: read(&raw.facts, "facts", default.facts)?,
            install: read(&raw.install, "install", default.install)?,
            image: read(&raw.image, "image", default.image)?,
            files: read(&raw.files, "files", default.files)?,
            compose_up: read(&raw.compose_up, "compose_up", default.compose_up)?,
            backup: read(&raw.backup, "backup", default.backup)?,
            certificate: read(&raw.certificate, "certificate", default.certificate)?,
        })
    }

    fn amount(&self, value: &Spanned<toml::Value>, key: &str) -> Result<Amount, InventoryError> {
        let bad = || {
            self.at(
                value,
                format!("invalid {key}"),
                "not a count or a percentage",
                format!("give a whole number (`{key} = 3`) or a percentage (`{key} = \"25%\"`)"),
            )
        };
        match value.get_ref() {
            toml::Value::Integer(n) => u32::try_from(*n).map(Amount::Count).map_err(|_| bad()),
            toml::Value::String(s) => s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<u32>().ok())
                .filter(|p| (1..=100).contains(p))
                .map(Amount::Percent)
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

impl Checker<'_> {
    /// `[[plugins]]`: the component exists, names are unique, hosts and deployments exist.
    /// The plugin itself (and its config) is checked when it is loaded.
    fn plugins(
        &self,
        raw: &RawInventory,
        hosts: &BTreeMap<String, Host>,
        deployments: &BTreeMap<String, Deployment>,
    ) -> Result<Vec<PluginSpec>, InventoryError> {
        let mut out: Vec<PluginSpec> = Vec::new();
        for plugin in &raw.plugins {
            let path = self.file_path(&plugin.path, "path")?;
            if !path.is_file() {
                return Err(self.at(
                    &plugin.path,
                    format!("plugin file {} does not exist", path.display()),
                    "no such file",
                    "give the path of a .wasm component, relative to the inventory's directory",
                ));
            }
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            let name = plugin
                .name
                .as_ref()
                .map_or(stem.unwrap_or_default(), |n| n.get_ref().clone());
            let span = plugin.name.as_ref().unwrap_or(&plugin.path);
            HostName::parse(&name).map_err(|why| {
                self.at(
                    span,
                    format!("invalid plugin name `{name}`: {why} (it names the plugin's directory, plugins/NAME/)"),
                    "invalid name",
                    NAME_HELP,
                )
            })?;
            if out.iter().any(|p| p.name == name) {
                return Err(self.at(
                    span,
                    format!("two plugins are named `{name}`"),
                    "defined twice",
                    "give one of them another `name`",
                ));
            }
            let groups: Vec<&str> = hosts
                .values()
                .flat_map(|h| h.groups.iter().map(String::as_str))
                .collect();
            for host in plugin.hosts.iter().flatten() {
                if !hosts.contains_key(host.get_ref()) && !groups.contains(&host.get_ref().as_str())
                {
                    let mut known: Vec<&str> = hosts.keys().map(String::as_str).collect();
                    known.extend(&groups);
                    return Err(self.at(
                        host,
                        format!(
                            "plugin `{name}` names `{}`, which is neither a host nor a group",
                            host.get_ref()
                        ),
                        "unknown host",
                        suggestion("host", host.get_ref(), &known),
                    ));
                }
            }
            for deployment in plugin.deployments.iter().flatten() {
                if !deployments.contains_key(deployment.get_ref()) {
                    let known: Vec<&str> = deployments.keys().map(String::as_str).collect();
                    return Err(self.at(
                        deployment,
                        format!(
                            "plugin `{name}` names deployment `{}`, which is not defined",
                            deployment.get_ref()
                        ),
                        "unknown deployment",
                        suggestion("deployment", deployment.get_ref(), &known),
                    ));
                }
            }
            let names = |list: &Option<Vec<Spanned<String>>>| {
                list.iter().flatten().map(|s| s.get_ref().clone()).collect()
            };
            let mut allow = Vec::new();
            for grant in plugin.allow.iter().flatten() {
                let parsed = super::Grant::parse(grant.get_ref()).map_err(|e| {
                    let help = match e.suggestion {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => format!("grants: {}", super::grant::SPELLINGS.join(", ")),
                    };
                    self.at(
                        grant,
                        format!("plugin `{name}`: {}", e.message),
                        "unknown grant",
                        help,
                    )
                })?;
                if !allow.contains(&parsed) {
                    allow.push(parsed);
                }
            }
            let sha256 = match &plugin.sha256 {
                Some(pin) => Some(self.plugin_digest(&name, &path, pin)?),
                None => None,
            };
            out.push(PluginSpec {
                name,
                path,
                hosts: names(&plugin.hosts),
                deployments: names(&plugin.deployments),
                config: serde_json::to_value(plugin.config.clone().unwrap_or_default())
                    .expect("a TOML table is JSON"),
                allow,
                sha256,
            });
        }
        Ok(out)
    }
}

/// Ports that one deployment takes on one host, and the text that set them.
struct PortClaim {
    host: String,
    deployment: String,
    what: &'static str,
    first: u32,
    last: u32,
    span: Range<usize>,
}

impl PortClaim {
    fn overlaps(&self, other: &PortClaim) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    fn describe(&self) -> String {
        format!("{} of deployment `{}`", self.what, self.deployment)
    }

    fn range(&self) -> String {
        if self.first == self.last {
            format!("port {}", self.first)
        } else {
            format!("ports {}-{}", self.first, self.last)
        }
    }
}

/// The host ports `deployment` uses: Nginx's published port on its main host and, when it
/// is spread over several hosts, Postgres', Redis' and its listeners' ports (host
/// networking) on each host.
fn port_claims(raw: &RawDeployment, deployment: &Deployment) -> Vec<PortClaim> {
    let claim = |host: &str, what, first: u32, last: u32, span: Range<usize>| PortClaim {
        host: host.to_string(),
        deployment: deployment.name.clone(),
        what,
        first,
        last,
        span,
    };
    let http_span = raw
        .nginx
        .http_port
        .as_ref()
        .map_or_else(|| raw.host.span(), |p| p.span());
    let http = u32::from(deployment.nginx.http_port);
    let mut claims = vec![claim(
        &deployment.host,
        "Nginx's port",
        http,
        http,
        http_span,
    )];
    if let (Some(raw_tls), Some(tls)) = (&raw.tls, &deployment.tls) {
        for (port, what, span) in tls::tls_ports(raw_tls, tls) {
            let port = u32::from(port);
            claims.push(claim(&deployment.host, what, port, port, span));
        }
    }
    if deployment.is_spread() {
        let base_span = raw
            .port_base
            .as_ref()
            .map_or_else(|| raw.host.span(), |p| p.span());
        for (port, what) in SERVICE_PORTS {
            let port = u32::from(port);
            claims.push(claim(&deployment.host, what, port, port, base_span.clone()));
        }
        let first = u32::from(deployment.port_base);
        let last = first + deployment.listener_count() - 1;
        for host in deployment.hosts() {
            claims.push(claim(host, "the listeners", first, last, base_span.clone()));
        }
    }
    claims
}

impl Checker<'_> {
    /// The pinned digest of a plugin, once the component at `path` is found to have it.
    fn plugin_digest(
        &self,
        name: &str,
        path: &Path,
        pin: &Spanned<String>,
    ) -> Result<String, InventoryError> {
        let expected = pin.get_ref().to_ascii_lowercase();
        if expected.len() != 64 || !expected.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(self.at(
                pin,
                format!("plugin `{name}`: sha256 is not 64 hexadecimal digits"),
                "not a SHA-256",
                "give the output of `sha256sum` for the .wasm file",
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| {
            self.at(
                pin,
                format!("plugin `{name}`: cannot read {}: {e}", path.display()),
                "unreadable",
                "check the plugin's `path`",
            )
        })?;
        let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        if actual != expected {
            return Err(self.at(
                pin,
                format!(
                    "plugin `{name}`: {} has SHA-256 {actual}, not the pinned one",
                    path.display()
                ),
                "digest differs",
                "the component changed since it was pinned: check where it came from, then pin the new digest if you trust it",
            ));
        }
        Ok(actual)
    }
}

fn worker_fields(
    raw: &RawDeployment,
    kind: WorkerKind,
) -> (Option<&Spanned<u32>>, Option<&Spanned<String>>) {
    let (w, p) = (&raw.workers, &raw.placement);
    match kind {
        WorkerKind::ClientSync => (w.client_sync.as_ref(), p.client_sync.as_ref()),
        WorkerKind::FederationReader => {
            (w.federation_reader.as_ref(), p.federation_reader.as_ref())
        }
        WorkerKind::Media => (w.media.as_ref(), p.media.as_ref()),
        WorkerKind::Rooms => (w.rooms.as_ref(), p.rooms.as_ref()),
        WorkerKind::Sender => (w.sender.as_ref(), p.sender.as_ref()),
        WorkerKind::Tasks => (w.tasks.as_ref(), p.tasks.as_ref()),
    }
}

/// Settings of `top` win over those of `base`, key by key.
fn overlay(base: &mut RawHostSettings, top: &RawHostSettings) {
    macro_rules! take {
        ($($field:ident),*) => { $( if top.$field.is_some() { base.$field = top.$field.clone(); } )* };
    }
    take!(
        address,
        private_address,
        groups,
        port,
        user,
        identity_file,
        become_root,
        transport,
        host_key_checking,
        docker_source
    );
}

fn suggestion(what: &str, name: &str, known: &[&str]) -> String {
    match did_you_mean(name, known) {
        Some(close) => {
            format!("did you mean `{close}`? Otherwise define it in a `[{what}s.{name}]` table")
        }
        None if known.is_empty() => format!("define it in a `[{what}s.{name}]` table"),
        None => format!(
            "define it in a `[{what}s.{name}]` table; defined {what}s: {}",
            known.join(", ")
        ),
    }
}

/// How to write a host, group or plugin name.
const NAME_HELP: &str =
    "use 1 to 63 letters, digits, `-`, `_` and `.`, starting with a letter or a digit";

fn check_address(address: &str) -> Result<(), &'static str> {
    if address.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(());
    }
    check_host(address)
}
