//! From the raw TOML to a validated [`Inventory`]: defaults applied, references resolved,
//! every value checked. The first problem found is reported with its position.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::{InventoryError, Source, did_you_mean};
use super::raw::{RawDeployment, RawHostSettings, RawInventory};
use super::{
    Amount, Deployment, DockerSource, Host, HostKeyChecking, Images, Inventory, NginxSettings,
    PluginSpec, PostgresProfile, PostgresSettings, Rollout, Transport, WorkerKind,
};

const REFERENCE: &str = "see the inventory reference in README.md";

/// Largest worker count of one kind; far beyond any real server, small enough that a typo
/// (an extra zero or two) is caught.
const MAX_WORKERS: u32 = 1000;

/// Connections Postgres keeps free for superusers, maintenance and replication.
pub const CONNECTION_HEADROOM: u32 = 10;

pub fn validate(path: &Path, source: &Source) -> Result<Inventory, InventoryError> {
    let raw: RawInventory =
        toml::from_str(&source.text).map_err(|e| deserialize_error(source, &e))?;
    let checker = Checker { source };
    let hosts = checker.hosts(&raw)?;
    let deployments = checker.deployments(&raw, &hosts)?;
    let rollout = checker.rollout(&raw)?;
    let plugins = checker.plugins(path, &raw, &hosts, &deployments)?;
    Ok(Inventory {
        path: path.to_path_buf(),
        hosts,
        deployments,
        rollout,
        plugins,
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

    fn hosts(&self, raw: &RawInventory) -> Result<BTreeMap<String, Host>, InventoryError> {
        let mut hosts = BTreeMap::new();
        for (name, settings) in &raw.hosts {
            check_name(name.get_ref()).map_err(|why| {
                self.at(
                    name,
                    format!("invalid host name `{}`: {why}", name.get_ref()),
                    "invalid name",
                    "use letters, digits, `-`, `_` and `.`",
                )
            })?;
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
        Ok(Host {
            name: name.get_ref().clone(),
            address,
            private_address: s.private_address.map(Spanned::into_inner),
            port: s.port.unwrap_or(22),
            user: s.user.unwrap_or_else(|| "root".into()),
            identity_file: s.identity_file.map(PathBuf::from),
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
        let mut server_names: HashMap<String, String> = HashMap::new();
        let mut dirs: HashMap<(String, String), String> = HashMap::new();
        let mut ports: HashMap<(String, u16), String> = HashMap::new();
        for (name, raw_deployment) in &raw.deployments {
            let deployment = self.deployment(name, raw_deployment, hosts)?;
            if let Some(other) =
                server_names.insert(deployment.server_name.clone(), deployment.name.clone())
            {
                return Err(self.at(
                    &raw_deployment.server_name,
                    format!(
                        "server_name `{}` is already used by deployment `{other}`",
                        deployment.server_name
                    ),
                    "duplicate server_name",
                    "every deployment is its own homeserver: give it its own server_name",
                ));
            }
            for host in deployment.hosts() {
                if let Some(other) = dirs.insert(
                    (host.to_string(), deployment.deploy_dir.clone()),
                    deployment.name.clone(),
                ) {
                    let span = raw_deployment
                        .deploy_dir
                        .as_ref()
                        .map_or_else(|| raw_deployment.host.span(), |d| d.span());
                    return Err(self.source.error(span, format!("deploy_dir `{}` on host `{host}` is already used by deployment `{other}`", deployment.deploy_dir), "duplicate deploy_dir", "give each deployment on a host its own deploy_dir"));
                }
            }
            if let Some(other) = ports.insert(
                (deployment.host.clone(), deployment.nginx.http_port),
                deployment.name.clone(),
            ) {
                let span = raw_deployment
                    .nginx
                    .http_port
                    .as_ref()
                    .map_or_else(|| raw_deployment.host.span(), |p| p.span());
                return Err(self.source.error(
                    span,
                    format!(
                        "Nginx port {} on host `{}` is already used by deployment `{other}`",
                        deployment.nginx.http_port, deployment.host
                    ),
                    "duplicate port",
                    "set `[deployments.NAME.nginx] http_port` to a free port",
                ));
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
        if name_text.is_empty()
            || !name_text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(self.at(
                name,
                format!("invalid deployment name `{name_text}`"),
                "invalid name",
                "use lowercase letters, digits, `-` and `_` (it names the Compose project)",
            ));
        }
        let server_name = raw.server_name.get_ref();
        check_server_name(server_name).map_err(|why| self.at(&raw.server_name, format!("invalid server_name `{server_name}`: {why}"), "invalid server_name", "give the domain of the Matrix IDs, e.g. \"example.org\" (a port may follow: \"example.org:8448\")"))?;
        let public_baseurl = match &raw.public_baseurl {
            Some(url) => {
                let text = url.get_ref();
                if !(text.starts_with("https://") || text.starts_with("http://"))
                    || text.contains(char::is_whitespace)
                {
                    return Err(self.at(
                        url,
                        format!("invalid public_baseurl `{text}`"),
                        "not an http(s) URL",
                        "give the URL clients use, e.g. \"https://matrix.example.org/\"",
                    ));
                }
                if text.ends_with('/') {
                    text.clone()
                } else {
                    format!("{text}/")
                }
            }
            None => format!("https://{server_name}/"),
        };
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
            Some(dir) => {
                let text = dir.get_ref().trim_end_matches('/');
                if !text.starts_with('/')
                    || text.split('/').any(|part| part == "..")
                    || text.is_empty()
                    || text.contains(char::is_whitespace)
                {
                    return Err(self.at(dir, format!("invalid deploy_dir `{}`", dir.get_ref()), "not an absolute path", "give an absolute path without `..` or spaces, e.g. \"/opt/synapse/example\""));
                }
                text.to_string()
            }
            None => format!("/opt/synapse/{name_text}"),
        };

        let postgres = self.postgres(raw, &workers)?;
        let deployment = Deployment {
            name: name_text.clone(),
            server_name: server_name.clone(),
            public_baseurl,
            admin_contact: raw.admin_contact.clone(),
            host,
            deploy_dir,
            timezone: raw.timezone.clone().unwrap_or_else(|| "Etc/UTC".into()),
            port_base: raw.port_base.as_ref().map_or(9100, |p| *p.get_ref()),
            workers,
            placement,
            images: Images {
                preload: raw.images.preload.unwrap_or(false),
                synapse: raw
                    .images
                    .synapse
                    .clone()
                    .unwrap_or_else(|| "matrixdotorg/synapse:latest".into()),
                postgres: raw
                    .images
                    .postgres
                    .clone()
                    .unwrap_or_else(|| "postgres:16-alpine".into()),
                redis: raw
                    .images
                    .redis
                    .clone()
                    .unwrap_or_else(|| "redis:alpine".into()),
                nginx: raw
                    .images
                    .nginx
                    .clone()
                    .unwrap_or_else(|| "nginx:mainline-alpine-slim".into()),
            },
            postgres,
            nginx: NginxSettings {
                http_port: raw.nginx.http_port.as_ref().map_or(8008, |p| *p.get_ref()),
                trusted_proxies: raw.nginx.trusted_proxies.clone().unwrap_or_default(),
                admin_allow: raw
                    .nginx
                    .admin_allow
                    .clone()
                    .unwrap_or_else(|| vec!["127.0.0.1".into(), "::1".into()]),
            },
            homeserver_extra: match &raw.homeserver {
                Some(table) => serde_json::to_value(table)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default(),
                None => serde_json::Map::new(),
            },
        };
        if deployment.is_spread() {
            for host in deployment.hosts() {
                if hosts[host].private_address.is_none() {
                    return Err(self.source.error(self.source.table_span("hosts", host), format!("deployment `{name_text}` spans several hosts, but host `{host}` has no private_address"), "needs `private_address`", "add `private_address = \"10.0.0.x\"`: the workers of one homeserver reach each other over the private network"));
                }
            }
        }
        Ok(deployment)
    }

    fn postgres(
        &self,
        raw: &RawDeployment,
        workers: &BTreeMap<WorkerKind, u32>,
    ) -> Result<PostgresSettings, InventoryError> {
        let profile = match raw.postgres.profile.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("small") => PostgresProfile::Small,
            Some("large") => PostgresProfile::Large,
            Some(other) => {
                return Err(self.at(
                    raw.postgres.profile.as_ref().unwrap_or(&raw.host),
                    format!("unknown Postgres profile `{other}`"),
                    "unknown profile",
                    "use \"small\" (4 cores, 8 GB) or \"large\" (16+ cores, 64 GB)",
                ));
            }
        };
        let max_connections = raw
            .postgres
            .max_connections
            .as_ref()
            .map_or(500, |m| *m.get_ref());
        let cp_max = raw.postgres.cp_max.as_ref().map_or(6, |c| *c.get_ref());
        if cp_max == 0 {
            let span = raw.postgres.cp_max.as_ref().map_or(0..0, |c| c.span());
            return Err(self.source.error(
                span,
                "cp_max must be at least 1",
                "must be 1 or more",
                "the guide suggests 6 per process with many workers",
            ));
        }
        let processes = 1 + workers.values().sum::<u32>();
        let needed = processes * cp_max + CONNECTION_HEADROOM;
        if needed > max_connections {
            let span = raw
                .postgres
                .max_connections
                .as_ref()
                .or(raw.postgres.cp_max.as_ref())
                .map_or_else(|| raw.host.span(), |s| s.span());
            return Err(self.source.error(span, format!("{processes} Synapse processes with cp_max = {cp_max} may open {} Postgres connections, more than max_connections = {max_connections} allows ({CONNECTION_HEADROOM} are kept for maintenance)", processes * cp_max), "connection budget exceeded", format!("set `[deployments.NAME.postgres] max_connections = {needed}` or more, or lower cp_max to {} or less", (max_connections.saturating_sub(CONNECTION_HEADROOM) / processes).max(1))));
        }
        Ok(PostgresSettings {
            profile,
            max_connections,
            cp_max,
        })
    }

    fn rollout(&self, raw: &RawInventory) -> Result<Rollout, InventoryError> {
        let r = &raw.rollout;
        let parallel = r.parallel.as_ref().map_or(Ok(10), |p| {
            if *p.get_ref() == 0 {
                Err(self.at(
                    p,
                    "parallel must be at least 1",
                    "must be 1 or more",
                    "set how many hosts synprov works on at once, e.g. `parallel = 10`",
                ))
            } else {
                Ok(*p.get_ref())
            }
        })?;
        let batch = r
            .batch
            .as_ref()
            .map(|b| self.amount(b, "batch"))
            .transpose()?;
        let max_failures = r
            .max_failures
            .as_ref()
            .map_or(Ok(Amount::Count(0)), |m| self.amount(m, "max_failures"))?;
        Ok(Rollout {
            parallel,
            batch,
            max_failures,
            health_timeout_secs: r.health_timeout.as_ref().map_or(300, |t| *t.get_ref()),
            rollback_on_failure: r.rollback_on_failure.unwrap_or(false),
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
        inventory: &Path,
        raw: &RawInventory,
        hosts: &BTreeMap<String, Host>,
        deployments: &BTreeMap<String, Deployment>,
    ) -> Result<Vec<PluginSpec>, InventoryError> {
        let mut out: Vec<PluginSpec> = Vec::new();
        for plugin in &raw.plugins {
            let path = inventory
                .parent()
                .unwrap_or(Path::new("."))
                .join(plugin.path.get_ref());
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
            check_name(&name).map_err(|why| {
                self.at(
                    span,
                    format!("invalid plugin name `{name}`: {why}"),
                    "invalid name",
                    "set `name` to letters, digits, `-`, `_` and `.`",
                )
            })?;
            if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                return Err(self.at(
                    span,
                    format!("invalid plugin name `{name}`: it names the plugin's directory (plugins/{name}/), so it must start with a letter or a digit"),
                    "invalid name",
                    "set `name` to a name starting with a letter or a digit",
                ));
            }
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

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("it has characters other than letters, digits, `-`, `_` and `.`");
    }
    Ok(())
}

fn check_address(address: &str) -> Result<(), &'static str> {
    if address.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    check_dns_name(address)
}

/// A DNS name as RFC 1123 allows it.
fn check_dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 253 {
        return Err("a DNS name has 1 to 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("every dot-separated part needs 1 to 63 characters");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("only letters, digits, `-` and `.` are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a part cannot start or end with `-`");
        }
    }
    Ok(())
}

/// A Matrix server name: a DNS name, an IPv4 address or a bracketed IPv6 address, with an
/// optional port (Matrix specification, appendix "Server name").
fn check_server_name(name: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = name.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs a closing `]`")?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| "not a valid IPv6 address")?;
        (None, after.strip_prefix(':'))
    } else {
        match name.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(name), None),
        }
    };
    if let Some(port) = port {
        port.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or("the port must be a number from 1 to 65535")?;
    }
    match host {
        Some(host) if host.parse::<std::net::Ipv4Addr>().is_ok() => Ok(()),
        Some(host) => check_dns_name(host),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_follow_the_matrix_grammar() {
        for good in [
            "example.org",
            "matrix.example.org:8448",
            "1.2.3.4",
            "[::1]:8448",
            "localhost",
        ] {
            assert_eq!(check_server_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "exa mple.org",
            "-bad.org",
            "example.org:",
            "example.org:99999",
            "a..b",
            "ex_ample.org",
            "[::1",
        ] {
            assert!(check_server_name(bad).is_err(), "{bad}");
        }
    }
}
