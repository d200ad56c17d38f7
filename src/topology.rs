//! Which Synapse processes a deployment has, where each runs and how it is reached.
//!
//! This is the guide's worker model with counts as settings: `main` plus the workers of
//! each kind, numbered from 1. Every process gets at least one HTTP listener, so every one
//! of them can answer `/health` (senders and the background worker included).

use std::collections::BTreeMap;

use crate::inventory::{Deployment, Host, WorkerKind};

/// The sockets directory inside every container (and mounted from the deploy directory).
pub const SOCKETS_DIR: &str = "/sockets";

/// What each listener of a process is for: its socket is named after it and the process
/// ([`socket_file`]).
pub const LISTENER_PURPOSES: [&str; 2] = ["inbound", "replication"];

/// The file name, in [`SOCKETS_DIR`], of the UNIX socket of process `name`'s listener for
/// `purpose`: one rule, so that what removes a worker's sockets finds the ones it had.
pub fn socket_file(purpose: &str, name: &str) -> String {
    format!("synapse_{purpose}_{name}.sock")
}

/// How another process reaches a listener.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// A UNIX socket in [`SOCKETS_DIR`]: the single-host layout of the guide.
    Unix { path: String },
    /// TCP on a host's private address: used when a deployment spans several hosts.
    Tcp { address: String, port: u16 },
}

impl Endpoint {
    /// The file name of a UNIX socket, or `address:port`.
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Unix { path } => path.rsplit('/').next().unwrap_or(path).to_string(),
            Endpoint::Tcp { address, port } => format!("{address}:{port}"),
        }
    }
}

/// The port every process's metrics listener takes inside its own container, on a single
/// host (Synapse's documented 9000): each container has its network namespace, so one port
/// serves all, reached by service name on the deployment's Compose network.
pub const METRICS_PORT: u16 = 9000;

/// Where a process serves Prometheus metrics (`/_synapse/metrics`): never through Nginx,
/// never published on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsListener {
    /// The address Synapse binds: every address of its container on a single host (only
    /// the deployment's Compose network reaches it), the host's private address when spread.
    pub bind: String,
    pub port: u16,
    /// What Prometheus scrapes, `host:port`: the Compose service's name on a single host,
    /// the private address when spread.
    pub target: String,
}

/// What a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Main,
    Worker(WorkerKind),
}

/// One Synapse process.
#[derive(Debug, Clone)]
pub struct Process {
    pub role: Role,
    /// `main`, or the worker name (`client_sync1`): Synapse's names use underscores.
    pub name: String,
    /// The Compose service (`synapse`, `client-sync1`): service names use hyphens.
    pub service: String,
    /// The host it runs on.
    pub host: String,
    /// The `[replication]` listener, for processes in `instance_map`.
    pub replication: Option<Endpoint>,
    /// The `[client, federation]` (or media) listener, for processes Nginx routes to.
    pub inbound: Option<Endpoint>,
    /// Its metrics listener, when the deployment has metrics on.
    pub metrics: Option<MetricsListener>,
}

impl Process {
    /// The Python module Synapse runs for this process.
    pub fn app(&self) -> &'static str {
        match self.role {
            Role::Main => "synapse.app.homeserver",
            Role::Worker(WorkerKind::Media) => "synapse.app.media_repository",
            Role::Worker(_) => "synapse.app.generic_worker",
        }
    }

    /// The log-config type: one log config per type, shared by the processes of a kind.
    pub fn log_type(&self) -> &'static str {
        match self.role {
            Role::Main => "synapse",
            Role::Worker(kind) => kind.stem(),
        }
    }

    /// Resources of the inbound listener. The media worker needs `media` to serve
    /// `/_matrix/media` (GUIDE-SPEC D1) and `client`/`federation` for the authenticated
    /// media endpoints under `/_matrix/client/v1/media` and `/_matrix/federation/v1/media`.
    pub fn inbound_resources(&self) -> &'static [&'static str] {
        match self.role {
            Role::Worker(WorkerKind::Media) => &["media", "client", "federation"],
            _ => &["client", "federation"],
        }
    }

    /// The listener its health is checked on: replication when it has one, else inbound.
    pub fn health_endpoint(&self) -> &Endpoint {
        self.replication
            .as_ref()
            .or(self.inbound.as_ref())
            .expect("every process has a listener")
    }

    pub fn kind(&self) -> Option<WorkerKind> {
        match self.role {
            Role::Main => None,
            Role::Worker(kind) => Some(kind),
        }
    }
}

/// The processes of one deployment.
#[derive(Debug, Clone)]
pub struct Topology {
    pub processes: Vec<Process>,
    /// Redis, as Synapse reaches it.
    pub redis: Endpoint,
    /// Postgres, as Synapse reaches it (a socket directory, or TCP).
    pub postgres: Endpoint,
}

impl Topology {
    /// Lays out the processes of `deployment`: names, hosts and listeners.
    pub fn resolve(deployment: &Deployment, hosts: &BTreeMap<String, Host>) -> Topology {
        let spread = deployment.is_spread();
        let private = |host: &str| hosts[host].private_address.clone().unwrap_or_default();
        let mut next_port = deployment.port_base;
        let mut endpoint = |host: &str, purpose: &str, name: &str| {
            if spread {
                let port = next_port;
                // The inventory keeps port_base + listener_count within u16.
                next_port = next_port.saturating_add(1);
                Endpoint::Tcp {
                    address: private(host),
                    port,
                }
            } else {
                Endpoint::Unix {
                    path: format!("{SOCKETS_DIR}/{}", socket_file(purpose, name)),
                }
            }
        };

        let mut processes = vec![Process {
            role: Role::Main,
            name: "main".into(),
            service: "synapse".into(),
            host: deployment.host.clone(),
            replication: Some(endpoint(&deployment.host, "replication", "main")),
            inbound: Some(endpoint(&deployment.host, "inbound", "main")),
            metrics: None,
        }];
        for kind in WorkerKind::ALL {
            let host = deployment.host_of(kind);
            for index in 1..=deployment.count(kind) {
                let name = format!("{}{index}", kind.stem());
                let replicates = kind.replicates(index);
                let inbound = kind.serves_clients();
                processes.push(Process {
                    role: Role::Worker(kind),
                    service: name.replace('_', "-"),
                    host: host.to_string(),
                    replication: replicates.then(|| endpoint(host, "replication", &name)),
                    inbound: inbound.then(|| endpoint(host, "inbound", &name)),
                    metrics: None,
                    name,
                });
            }
        }
        // After every other listener: turning metrics on moves no port.
        if deployment.metrics {
            for process in &mut processes {
                process.metrics = Some(if spread {
                    let port = next_port;
                    next_port = next_port.saturating_add(1);
                    let address = private(&process.host);
                    MetricsListener {
                        target: format!("{address}:{port}"),
                        bind: address,
                        port,
                    }
                } else {
                    MetricsListener {
                        bind: "0.0.0.0".into(),
                        port: METRICS_PORT,
                        target: format!("{}:{METRICS_PORT}", process.service),
                    }
                });
            }
        }
        let (redis, postgres) = if spread {
            (
                Endpoint::Tcp {
                    address: private(&deployment.host),
                    port: 6379,
                },
                Endpoint::Tcp {
                    address: private(&deployment.host),
                    port: 5432,
                },
            )
        } else {
            (
                Endpoint::Unix {
                    path: format!("{SOCKETS_DIR}/synapse_redis.sock"),
                },
                Endpoint::Unix {
                    path: SOCKETS_DIR.into(),
                },
            )
        };
        Topology {
            processes,
            redis,
            postgres,
        }
    }

    pub fn main(&self) -> &Process {
        &self.processes[0]
    }

    /// The workers of one kind, in order.
    pub fn workers(&self, kind: WorkerKind) -> impl Iterator<Item = &Process> {
        self.processes
            .iter()
            .filter(move |p| p.role == Role::Worker(kind))
    }

    /// Names of the workers of one kind.
    pub fn names(&self, kind: WorkerKind) -> Vec<String> {
        self.workers(kind).map(|p| p.name.clone()).collect()
    }

    /// The writer of the single-writer streams (typing, to_device, account_data, presence,
    /// receipts): the first sync worker, as in the guide.
    pub fn stream_writer(&self) -> &Process {
        self.workers(WorkerKind::ClientSync)
            .next()
            .expect("validated: at least one sync worker")
    }

    /// Processes listed in `instance_map`: every one with a replication listener.
    pub fn instance_map(&self) -> impl Iterator<Item = (&Process, &Endpoint)> {
        self.processes
            .iter()
            .filter_map(|p| p.replication.as_ref().map(|e| (p, e)))
    }

    /// Processes that run on `host`.
    pub fn on_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Process> {
        self.processes.iter().filter(move |p| p.host == host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn topology(extra: &str) -> Topology {
        let text = format!(
            "[hosts.h]\naddress = \"10.0.0.1\"\nprivate_address = \"10.1.0.1\"\n[hosts.g]\naddress = \"10.0.0.2\"\nprivate_address = \"10.1.0.2\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"h\"\n{extra}"
        );
        let inventory = crate::inventory::parse(Path::new("t.toml"), text).unwrap();
        Topology::resolve(&inventory.deployments["d"], &inventory.hosts)
    }

    #[test]
    fn default_counts_give_the_guides_thirteen_processes() {
        let t = topology("");
        let names: Vec<&str> = t.processes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "main",
                "client_sync1",
                "federation_reader1",
                "media1",
                "rooms1",
                "rooms2",
                "rooms3",
                "rooms4",
                "sender1",
                "sender2",
                "sender3",
                "sender4",
                "tasks1"
            ]
        );
        let in_map: Vec<&str> = t.instance_map().map(|(p, _)| p.name.as_str()).collect();
        assert_eq!(
            in_map,
            [
                "main",
                "client_sync1",
                "media1",
                "sender1",
                "sender2",
                "sender3",
                "sender4",
                "tasks1"
            ]
        );
    }

    #[test]
    fn every_process_has_a_health_listener_and_hyphenated_service() {
        let t = topology(
            "[deployments.d.workers]\nrooms = 250\nclient_sync = 3\n[deployments.d.postgres]\nmax_connections = 2000\n",
        );
        assert_eq!(t.processes.len(), 1 + 3 + 1 + 1 + 250 + 4 + 1);
        for p in &t.processes {
            let _ = p.health_endpoint();
            assert!(!p.service.contains('_'));
        }
        assert_eq!(t.stream_writer().name, "client_sync1");
        assert!(
            t.workers(WorkerKind::ClientSync)
                .nth(1)
                .unwrap()
                .replication
                .is_none()
        );
    }

    #[test]
    fn a_spread_deployment_uses_tcp_on_private_addresses() {
        let t = topology("[deployments.d.placement]\nrooms = \"g\"\n");
        let rooms1 = t.workers(WorkerKind::Rooms).next().unwrap();
        assert_eq!(rooms1.host, "g");
        assert!(
            matches!(&rooms1.inbound, Some(Endpoint::Tcp { address, .. }) if address == "10.1.0.2")
        );
        assert_eq!(
            t.redis,
            Endpoint::Tcp {
                address: "10.1.0.1".into(),
                port: 6379
            }
        );
        let mut ports = listener_ports(&t);
        let count = ports.len();
        ports.dedup();
        assert_eq!(ports.len(), count, "every listener has its own port");
    }

    /// The TCP port of every replication and inbound listener (0 for a socket).
    fn listener_ports(t: &Topology) -> Vec<u16> {
        (t.processes.iter())
            .flat_map(|p| [&p.replication, &p.inbound])
            .flatten()
            .map(|e| match e {
                Endpoint::Tcp { port, .. } => *port,
                Endpoint::Unix { .. } => 0,
            })
            .collect()
    }

    #[test]
    fn metrics_take_the_ports_after_every_other_listener_and_move_none() {
        let spread = "[deployments.d.placement]\nrooms = \"g\"\n";
        let off = topology(spread);
        let on = topology(&format!(
            "{spread}[deployments.d.metrics]\nenabled = true\n"
        ));
        let last = listener_ports(&off).into_iter().max().unwrap();
        for (before, after) in off.processes.iter().zip(&on.processes) {
            assert_eq!(
                (&before.replication, &before.inbound),
                (&after.replication, &after.inbound)
            );
            assert_eq!(before.metrics, None);
        }
        let ports: Vec<u16> = on
            .processes
            .iter()
            .map(|p| p.metrics.as_ref().unwrap().port)
            .collect();
        let expected: Vec<u16> = (1..=on.processes.len() as u16).map(|i| last + i).collect();
        assert_eq!(ports, expected);
        let rooms1 = on
            .workers(WorkerKind::Rooms)
            .next()
            .unwrap()
            .metrics
            .clone()
            .unwrap();
        assert_eq!(rooms1.bind, "10.1.0.2");
        assert_eq!(rooms1.target, format!("10.1.0.2:{}", rooms1.port));
    }

    #[test]
    fn on_one_host_every_process_serves_metrics_on_port_9000_of_its_container() {
        let t = topology("[deployments.d.metrics]\nenabled = true\n");
        let media1 = t.workers(WorkerKind::Media).next().unwrap();
        assert_eq!(
            media1.metrics,
            Some(MetricsListener {
                bind: "0.0.0.0".into(),
                port: METRICS_PORT,
                target: "media1:9000".into(),
            })
        );
        assert!(t.processes.iter().all(|p| p.metrics.is_some()));
    }
}
