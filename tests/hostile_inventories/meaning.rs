//! What an inventory means, read from its TOML by the README's inventory reference alone
//! (types and defaults), without synprov: the values the rendered files must carry.

use std::collections::{BTreeMap, BTreeSet};

use toml::{Table, Value};

use crate::case::{IMAGE_KINDS, POSTGRES_MEMORY, WORKER_KINDS};

/// One deployment, as its inventory entry means it.
#[derive(Debug, Clone)]
pub struct DeploymentMeaning {
    pub name: String,
    pub host: String,
    pub server_name: String,
    pub public_baseurl: String,
    /// `public_baseurl` as written, when given.
    pub public_baseurl_written: Option<String>,
    pub admin_contact: Option<String>,
    pub timezone: String,
    pub images: BTreeMap<&'static str, String>,
    pub http_port: u16,
    pub admin_allow: Vec<String>,
    pub trusted_proxies: Vec<String>,
    pub cp_max: u32,
    /// As pinned; synprov sizes it to the connection budget when not.
    pub max_connections: Option<u32>,
    /// The Postgres memory settings pinned, as written.
    pub postgres_memory: BTreeMap<&'static str, String>,
    pub workers: BTreeMap<&'static str, u32>,
    /// Every process with a metrics listener, and the scrape file on the main host.
    pub metrics: bool,
    pub placement: BTreeMap<&'static str, String>,
    pub homeserver: Table,
}

/// The whole inventory.
#[derive(Debug, Clone)]
pub struct Meaning {
    pub deployments: Vec<DeploymentMeaning>,
    /// The `echo` plugin's config, as JSON, when the inventory loads it.
    pub echo_config: Option<serde_json::Value>,
}

impl Meaning {
    /// Reads `table`; an error says which value has not the type the reference gives it
    /// (synprov had to refuse that inventory).
    pub fn of(table: &Table) -> Result<Meaning, String> {
        let mut deployments = Vec::new();
        if let Some(Value::Table(all)) = table.get("deployments") {
            for (name, deployment) in all {
                let Value::Table(deployment) = deployment else {
                    return Err(format!("deployment `{name}` is not a table"));
                };
                deployments.push(DeploymentMeaning::of(name, deployment)?);
            }
        }
        if let Some(timeout) = table.get("rollout").and_then(|r| r.get("health_timeout")) {
            integer::<u64>(timeout, "rollout.health_timeout")?;
        }
        let echo_config = match table.get("plugins") {
            Some(Value::Array(plugins)) => plugins
                .first()
                .and_then(|p| p.get("config"))
                .map(|c| serde_json::to_value(c).map_err(|e| e.to_string()))
                .transpose()?,
            _ => None,
        };
        Ok(Meaning {
            deployments,
            echo_config,
        })
    }
}

impl DeploymentMeaning {
    fn of(name: &str, d: &Table) -> Result<DeploymentMeaning, String> {
        let section = |key: &str| d.get(key).and_then(Value::as_table);
        let get = |section_name: &str, key: &str| section(section_name).and_then(|s| s.get(key));
        let server_name = required_string(d, "server_name")?;
        // A URL means what a URL parser reads in it: `<` or a space in its path are the
        // same URL percent-encoded, as a client sends them.
        let public_baseurl_written = optional_string(d.get("public_baseurl"), "public_baseurl")?;
        let public_baseurl = match public_baseurl_written.clone() {
            Some(url) => {
                let parsed = url::Url::parse(&url).map_err(|e| format!("public_baseurl: {e}"))?;
                let text = String::from(parsed);
                if text.ends_with('/') {
                    text
                } else {
                    format!("{text}/")
                }
            }
            None => format!("https://{server_name}/"),
        };
        let mut images = BTreeMap::new();
        for (kind, default) in IMAGE_KINDS.into_iter().zip([
            "matrixdotorg/synapse:latest",
            "postgres:16-alpine",
            "redis:alpine",
            "nginx:mainline-alpine-slim",
        ]) {
            let image = optional_string(get("images", kind), kind)?;
            images.insert(kind, image.unwrap_or_else(|| default.to_string()));
        }
        let mut postgres_memory = BTreeMap::new();
        for setting in POSTGRES_MEMORY {
            if let Some(text) = optional_string(get("postgres", setting), setting)? {
                postgres_memory.insert(setting, text);
            }
        }
        let mut workers = BTreeMap::new();
        let mut placement = BTreeMap::new();
        for kind in WORKER_KINDS {
            let default = if matches!(kind, "rooms" | "sender") {
                4
            } else {
                1
            };
            let count = get("workers", kind)
                .map(|v| integer::<u32>(v, kind))
                .transpose()?;
            workers.insert(kind, count.unwrap_or(default));
            if let Some(host) = optional_string(get("placement", kind), kind)? {
                placement.insert(kind, host);
            }
        }
        let list = |key: &str| -> Result<Option<Vec<String>>, String> {
            match get("nginx", key) {
                None => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| optional_string(Some(i), key).map(Option::unwrap_or_default))
                    .collect::<Result<_, _>>()
                    .map(Some),
                Some(other) => Err(format!("{key} is not a list: {other}")),
            }
        };
        // Not in any rendered file, but typed all the same.
        if let Some(port) = d.get("port_base") {
            integer::<u16>(port, "port_base")?;
        }
        optional_string(d.get("deploy_dir"), "deploy_dir")?;
        Ok(DeploymentMeaning {
            name: name.to_string(),
            host: required_string(d, "host")?,
            public_baseurl,
            public_baseurl_written,
            // An empty contact is no contact.
            admin_contact: optional_string(d.get("admin_contact"), "admin_contact")?
                .filter(|c| !c.is_empty()),
            timezone: optional_string(d.get("timezone"), "timezone")?
                .unwrap_or_else(|| "Etc/UTC".into()),
            images,
            http_port: get("nginx", "http_port")
                .map(|v| integer::<u16>(v, "http_port"))
                .transpose()?
                .unwrap_or(8008),
            admin_allow: list("admin_allow")?
                .unwrap_or_else(|| vec!["127.0.0.1".into(), "::1".into()]),
            trusted_proxies: list("trusted_proxies")?.unwrap_or_default(),
            cp_max: get("postgres", "cp_max")
                .map(|v| integer::<u32>(v, "cp_max"))
                .transpose()?
                .unwrap_or(6),
            max_connections: get("postgres", "max_connections")
                .map(|v| integer::<u32>(v, "max_connections"))
                .transpose()?,
            postgres_memory,
            metrics: match get("metrics", "enabled") {
                None => false,
                Some(Value::Boolean(enabled)) => *enabled,
                Some(other) => return Err(format!("metrics.enabled = {other} is not a boolean")),
            },
            homeserver: match d.get("homeserver") {
                Some(Value::Table(t)) => t.clone(),
                Some(other) => return Err(format!("homeserver is not a table: {other}")),
                None => Table::new(),
            },
            workers,
            placement,
            server_name,
        })
    }

    /// The host that runs the workers of `kind`.
    pub fn host_of(&self, kind: &str) -> &str {
        self.placement.get(kind).unwrap_or(&self.host)
    }

    /// Every host this deployment puts something on.
    pub fn hosts(&self) -> BTreeSet<&str> {
        let mut hosts: BTreeSet<&str> = WORKER_KINDS.iter().map(|k| self.host_of(k)).collect();
        hosts.insert(&self.host);
        hosts
    }

    pub fn is_spread(&self) -> bool {
        self.hosts().len() > 1
    }

    /// The Synapse processes: `main`, then the workers (`rooms1`, ...).
    pub fn processes(&self) -> Vec<String> {
        let mut out = vec!["main".to_string()];
        for kind in WORKER_KINDS {
            out.extend((1..=self.workers[kind]).map(|i| format!("{kind}{i}")));
        }
        out
    }

    /// The files rendered for `host`, relative to the deployment's directory (the plugin's
    /// aside). The signing key is named after the server name.
    pub fn files_on(&self, host: &str) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = [
            ".env",
            ".synapse.env",
            "docker-compose.yml",
            "synapse/homeserver.yaml",
        ]
        .map(String::from)
        .into();
        out.insert(format!("synapse/{}.signing.key", self.server_name));
        let mut log_types = BTreeSet::new();
        if host == self.host {
            out.extend(
                [
                    ".postgres.env",
                    "postgres/password",
                    "postgres/postgresql.conf",
                ]
                .map(String::from),
            );
            if self.metrics {
                out.insert("prometheus/targets.json".into());
            }
            // Redis' password lives in its own config file when Redis is reached over TCP.
            if self.is_spread() {
                out.insert("redis-conf/redis.conf".into());
            }
            for file in [
                "nginx.conf",
                "upstreams.conf",
                "maps.conf",
                "locations.conf",
                "proxy.conf",
                "private.conf",
            ] {
                out.insert(format!("nginx/{file}"));
            }
            log_types.insert("synapse");
        }
        for kind in WORKER_KINDS.iter().filter(|k| self.host_of(k) == host) {
            log_types.insert(kind);
            out.extend((1..=self.workers[kind]).map(|i| format!("synapse/workers/{kind}{i}.yaml")));
        }
        out.extend(
            log_types
                .iter()
                .map(|t| format!("synapse/log.config/{t}.log.config")),
        );
        out
    }

    /// The Compose services on `host` (worker names with hyphens).
    pub fn services_on(&self, host: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if host == self.host {
            out.extend(["synapse", "db", "redis", "nginx"].map(String::from));
        }
        for kind in WORKER_KINDS.iter().filter(|k| self.host_of(k) == host) {
            out.extend((1..=self.workers[kind]).map(|i| format!("{}{i}", kind.replace('_', "-"))));
        }
        out
    }
}

fn required_string(d: &Table, key: &str) -> Result<String, String> {
    optional_string(d.get(key), key)?.ok_or_else(|| format!("{key} is missing"))
}

fn optional_string(value: Option<&Value>, key: &str) -> Result<Option<String>, String> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{key} = {other} is not a string")),
    }
}

fn integer<T: TryFrom<i64>>(value: &Value, key: &str) -> Result<T, String> {
    match value {
        Value::Integer(n) => T::try_from(*n).map_err(|_| {
            format!(
                "{key} = {n} is out of the range of its type ({})",
                std::any::type_name::<T>()
            )
        }),
        other => Err(format!("{key} = {other} is not a whole number")),
    }
}
