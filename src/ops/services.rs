//! The services of a deployment by the names synprov gives them (`main`, `rooms1`, `db`),
//! read from its current generation's record rather than the inventory: the host runs what
//! it recorded, which a changed inventory may no longer describe.

use std::collections::{BTreeMap, BTreeSet};

use crate::generations::Record;
use crate::health::Probe;

/// Name to Compose service: each Synapse process (`main` is `synapse`, `client_sync1` is
/// `client-sync1`), and the other services under their own names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Services {
    services: BTreeMap<String, String>,
    /// The names of the Synapse processes among them, which log to a file of their own.
    synapse: BTreeSet<String>,
}

impl Services {
    /// The services `record` names. Synapse processes come from its health targets (every
    /// process has a listener); the others from the services its files and plugin checks
    /// are for (`nginx`, `db`, a plugin's). Redis has a file only when it has a password,
    /// but it runs wherever Postgres does (on the deployment's main host).
    pub fn of(record: &Record) -> Services {
        let mut names = BTreeMap::new();
        for target in &record.health {
            if let (Probe::Synapse(_), Some(service)) = (&target.probe, &target.service) {
                names.insert(target.process.clone(), service.clone());
            }
        }
        let processes: BTreeSet<String> = names.keys().cloned().collect();
        let synapse: Vec<String> = names.values().cloned().collect();
        let others = (record.files.iter().flat_map(|f| f.used_by.iter()))
            .chain(record.health.iter().filter_map(|t| t.service.as_ref()))
            .filter(|service| !synapse.contains(service))
            .cloned()
            .collect::<Vec<_>>();
        let redis = others
            .iter()
            .any(|s| s == "db")
            .then(|| "redis".to_string());
        for service in others.into_iter().chain(redis) {
            names.entry(service.clone()).or_insert(service);
        }
        Services {
            services: names,
            synapse: processes,
        }
    }

    /// Whether `name` is a Synapse process (its full log is in `logs/NAME` on the host).
    pub fn is_synapse(&self, name: &str) -> bool {
        self.synapse.contains(name)
    }

    /// The Compose service of `name`, or every valid name, comma-separated.
    pub fn service(&self, name: &str) -> Result<&str, String> {
        self.services
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| self.services.keys().cloned().collect::<Vec<_>>().join(", "))
    }

    /// For tests of what uses them: the Synapse processes `synapse` as (name, service),
    /// and `others` by their names.
    #[cfg(test)]
    pub(crate) fn from_names(synapse: &[(&str, &str)], others: &[&str]) -> Services {
        let others = others.iter().map(|name| (*name, *name));
        Services {
            services: (synapse.iter().copied().chain(others))
                .map(|(name, service)| (name.to_string(), service.to_string()))
                .collect(),
            synapse: synapse.iter().map(|(name, _)| name.to_string()).collect(),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generations::Origin;
    use crate::generations::record::RecordedFile;
    use crate::health::HealthTarget;
    use crate::plugins::PluginCheck;
    use crate::topology::Endpoint;

    fn target(process: &str, service: Option<&str>, synapse: bool) -> HealthTarget {
        let endpoint = Endpoint::Unix {
            path: format!("/sockets/{process}.sock"),
        };
        HealthTarget {
            deployment: "d".into(),
            deploy_dir: "/opt/d".into(),
            process: process.into(),
            service: service.map(String::from),
            probe: if synapse {
                Probe::Synapse(endpoint)
            } else {
                Probe::Plugin(PluginCheck::Tcp { port: 3478 })
            },
        }
    }

    fn file(path: &str, used_by: &[&str]) -> RecordedFile {
        RecordedFile {
            path: path.into(),
            sha256: String::new(),
            mode: 0o644,
            secret: false,
            keep_existing: false,
            owner: None,
            used_by: used_by.iter().map(|s| s.to_string()).collect(),
            reloads: false,
        }
    }

    fn record(health: Vec<HealthTarget>, files: Vec<RecordedFile>) -> Record {
        Record {
            format: 1,
            deployment: "d".into(),
            server_name: "example.org".into(),
            origin: Origin::here("apply", None),
            files,
            dirs: Vec::new(),
            images: Vec::new(),
            health,
            plugin_grants: Vec::new(),
        }
    }

    #[test]
    fn processes_map_to_their_services_and_the_main_host_has_db_redis_and_nginx() {
        let services = Services::of(&record(
            vec![
                target("main", Some("synapse"), true),
                target("main", Some("synapse"), true),
                target("client_sync1", Some("client-sync1"), true),
                target("plugin coturn", Some("coturn"), false),
            ],
            vec![
                file("synapse/homeserver.yaml", &["synapse", "client-sync1"]),
                file("nginx/nginx.conf", &["nginx"]),
                file("postgres/postgresql.conf", &["db"]),
                file("docker-compose.yml", &[]),
            ],
        ));
        assert_eq!(
            services.names().collect::<Vec<_>>(),
            ["client_sync1", "coturn", "db", "main", "nginx", "redis"]
        );
        assert_eq!(services.service("main"), Ok("synapse"));
        assert_eq!(services.service("client_sync1"), Ok("client-sync1"));
        assert_eq!(services.service("redis"), Ok("redis"));
        assert_eq!(
            services.service("synapse"),
            Err("client_sync1, coturn, db, main, nginx, redis".to_string()),
            "a Compose service is not a process name"
        );
    }

    #[test]
    fn a_host_without_postgres_has_only_its_synapse_processes() {
        let services = Services::of(&record(
            vec![target("rooms2", Some("rooms2"), true)],
            vec![file("synapse/workers/rooms2.yaml", &["rooms2"])],
        ));
        assert_eq!(services.names().collect::<Vec<_>>(), ["rooms2"]);
        assert_eq!(services.service("db"), Err("rooms2".to_string()));
    }
}
