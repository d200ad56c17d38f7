//! Health: `GET /health` on every listener of every Synapse process, through the host
//! connection itself (SSH direct-streamlocal or direct-tcpip channels), so nothing needs
//! curl on the host and no port needs opening. Retried with backoff until a deadline.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::inventory::Inventory;
use crate::topology::{Endpoint, SOCKETS_DIR, Topology};
use crate::transport::Connection;

/// One listener to check.
#[derive(Debug, Clone)]
pub struct HealthTarget {
    pub deployment: String,
    pub deploy_dir: String,
    pub process: String,
    pub service: String,
    pub endpoint: Endpoint,
}

impl HealthTarget {
    /// Where the listener is, seen from the host: a socket under the deploy directory.
    pub fn host_location(&self) -> String {
        match &self.endpoint {
            Endpoint::Unix { path } => format!(
                "{}/sockets{}",
                self.deploy_dir,
                path.strip_prefix(SOCKETS_DIR).unwrap_or(path)
            ),
            Endpoint::Tcp { address, port } => format!("{address}:{port}"),
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
                    deploy_dir: deployment.deploy_dir.clone(),
                    process: process.name.clone(),
                    service: process.service.clone(),
                    endpoint: endpoint.clone(),
                });
            }
        }
    }
    out
}

/// One `GET /health`; Ok when the answer is `200 OK`.
pub fn check(connection: &Connection, target: &HealthTarget) -> Result<(), String> {
    let mut stream = match &target.endpoint {
        Endpoint::Unix { .. } => connection.open_socket(&target.host_location()),
        Endpoint::Tcp { address, port } => connection.open_tcp(address, *port),
    }
    .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
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
