//! Health: `GET /health` on every listener of every Synapse process, and the checks the
//! plugins ask for, through the host connection itself (SSH direct-streamlocal or
//! direct-tcpip channels), so nothing needs curl on the host and no port needs opening.
//! Retried with backoff until a deadline.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::inventory::Inventory;
use crate::plugins::PluginCheck;
use crate::render::HostFiles;
use crate::topology::{Endpoint, SOCKETS_DIR, Topology};
use crate::transport::Connection;

/// One listener to check.
#[derive(Debug, Clone)]
pub struct HealthTarget {
    pub deployment: String,
    pub deploy_dir: String,
    /// The Synapse process, or `plugin NAME`.
    pub process: String,
    /// The Compose service whose logs explain a failure, if any.
    pub service: Option<String>,
    pub probe: Probe,
}

/// What is checked.
#[derive(Debug, Clone)]
pub enum Probe {
    /// A Synapse listener's `GET /health`.
    Synapse(Endpoint),
    /// A plugin's check, on the host's loopback.
    Plugin(PluginCheck),
}

impl HealthTarget {
    /// Where the listener is, seen from the host: a socket under the deploy directory, or
    /// an address.
    pub fn host_location(&self) -> String {
        match &self.probe {
            Probe::Synapse(Endpoint::Unix { path }) => format!(
                "{}/sockets{}",
                self.deploy_dir,
                path.strip_prefix(SOCKETS_DIR).unwrap_or(path)
            ),
            Probe::Synapse(Endpoint::Tcp { address, port }) => format!("{address}:{port}"),
            Probe::Plugin(PluginCheck::Tcp { port }) => format!("127.0.0.1:{port}"),
            Probe::Plugin(PluginCheck::Http { port, path, .. }) => {
                format!("http://127.0.0.1:{port}{path}")
            }
        }
    }
}

/// Every replication and inbound listener of the processes that run on `host`.
pub fn targets(inventory: &Inventory, host: &str) -> Vec<HealthTarget> {
    let mut out = Vec::new();
    for deployment in inventory.deployments_on(host) {
        let topology = Topology::resolve(deployment, &inventory.hosts);
        for process in topology.on_host(host) {
            for endpoint in [&process.replication, &process.inbound]
                .into_iter()
                .flatten()
            {
                out.push(HealthTarget {
                    deployment: deployment.name.clone(),
                    deploy_dir: deployment.deploy_dir.to_string(),
                    process: process.name.clone(),
                    service: Some(process.service.clone()),
                    probe: Probe::Synapse(endpoint.clone()),
                });
            }
        }
    }
    out
}

/// The health checks the plugins of `files` ask for.
pub fn plugin_targets(files: &HostFiles) -> Vec<HealthTarget> {
    files
        .deployments
        .iter()
        .flat_map(|d| {
            d.checks.iter().map(|c| HealthTarget {
                deployment: d.deployment.clone(),
                deploy_dir: d.deploy_dir.clone(),
                process: format!("plugin {}", c.plugin),
                service: c.service.clone(),
                probe: Probe::Plugin(c.check.clone()),
            })
        })
        .collect()
}

/// One check: a `GET` answering `200 OK`, or for a plugin's TCP check, a connection.
pub fn check(connection: &Connection, target: &HealthTarget) -> Result<(), String> {
    const LOOPBACK: &str = "127.0.0.1";
    let (stream, path, host) = match &target.probe {
        Probe::Synapse(Endpoint::Unix { .. }) => (
            connection.open_socket(&target.host_location()),
            "/health",
            None,
        ),
        Probe::Synapse(Endpoint::Tcp { address, port }) => {
            (connection.open_tcp(address, *port), "/health", None)
        }
        Probe::Plugin(PluginCheck::Tcp { port }) => {
            return connection
                .open_tcp(LOOPBACK, *port)
                .map(drop)
                .map_err(|e| e.to_string());
        }
        Probe::Plugin(PluginCheck::Http {
            port,
            path,
            host_header,
        }) => (
            connection.open_tcp(LOOPBACK, *port),
            path.as_str(),
            host_header.as_deref(),
        ),
    };
    let mut stream = stream.map_err(|e| e.to_string())?;
    let host = host.unwrap_or("localhost");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .take(4096)
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().unwrap_or_default().to_string();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(format!("answered {status:?}"))
    }
}

/// Checks every target until all answer or `timeout` passes; returns those still failing,
/// with the last error of each.
pub fn wait_healthy(
    connection: &Connection,
    targets: &[HealthTarget],
    timeout: Duration,
) -> Vec<(HealthTarget, String)> {
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<HealthTarget> = targets.to_vec();
    let mut delay = Duration::from_millis(250);
    loop {
        let mut failing = Vec::new();
        for target in pending {
            if let Err(error) = check(connection, &target) {
                failing.push((target, error));
            }
        }
        if failing.is_empty() || Instant::now() >= deadline {
            return failing;
        }
        std::thread::sleep(delay.min(deadline.saturating_duration_since(Instant::now())));
        delay = (delay * 2).min(Duration::from_secs(5));
        pending = failing.into_iter().map(|(t, _)| t).collect();
    }
}
