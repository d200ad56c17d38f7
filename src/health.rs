//! What should answer where: the health targets a host's render carries and a generation
//! records (every Synapse listener, every plugin's check). Data only, low in the house:
//! render makes them, [`crate::verify`] checks them over a connection.

use serde::{Deserialize, Serialize};

use crate::host_data::{ManagedPath, ServiceName};
use crate::plugins::PluginCheck;
use crate::topology::{Endpoint, SOCKETS_DIR, Topology};

/// One listener to check. Part of what a host's render carries and a generation records:
/// what should answer there, whatever the inventory of the day says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

    /// Whether this target, read from a host's record, checks the deployment in
    /// `deploy_dir` only: its directory is that one, its socket (if any) a plain file name
    /// in the sockets directory, its service a service name. A record is the host's: a
    /// target elsewhere would be connected to and counted healthy.
    pub fn inside(&self, deploy_dir: &str) -> Result<(), String> {
        let process = crate::text::one_line(&self.process);
        if self.process.is_empty() || self.process.len() > 256 || process != self.process {
            return Err(format!(
                "the health check's process name `{process}` is not plain text"
            ));
        }
        if self.deploy_dir != deploy_dir {
            return Err(format!(
                "the health check of {process} lies in {}, outside the deploy directory {deploy_dir}",
                crate::text::one_line(&self.deploy_dir)
            ));
        }
        if let Probe::Synapse(Endpoint::Unix { path }) = &self.probe {
            let name = path
                .strip_prefix(SOCKETS_DIR)
                .and_then(|p| p.strip_prefix('/'));
            if !name.is_some_and(|n| !n.contains('/') && ManagedPath::parse(n).is_ok()) {
                return Err(format!(
                    "the socket of {process}'s health check, {}, is not a file of the sockets directory",
                    crate::text::one_line(path)
                ));
            }
        }
        if let Some(service) = &self.service {
            ServiceName::parse(service)
                .map_err(|why| format!("the service {} {why}", crate::text::one_line(service)))?;
        }
        Ok(())
    }

    /// The socket file of a Synapse listener on a UNIX socket, as [`Self::host_location`]
    /// names it; `None` for TCP listeners and plugin checks.
    pub fn socket_on_host(&self) -> Option<String> {
        matches!(self.probe, Probe::Synapse(Endpoint::Unix { .. })).then(|| self.host_location())
    }
}

/// Every replication and inbound listener of the processes of `topology` that run on
/// `host`, then the plugins' `checks`.
pub fn targets(
    deployment: &str,
    deploy_dir: &str,
    topology: &Topology,
    host: &str,
    checks: &[CheckTarget],
) -> Vec<HealthTarget> {
    let mut out = Vec::new();
    for process in topology.on_host(host) {
        for endpoint in [&process.replication, &process.inbound]
            .into_iter()
            .flatten()
        {
            out.push(HealthTarget {
                deployment: deployment.to_string(),
                deploy_dir: deploy_dir.to_string(),
                process: process.name.clone(),
                service: Some(process.service.clone()),
                probe: Probe::Synapse(endpoint.clone()),
            });
        }
    }
    out.extend(checks.iter().map(|c| HealthTarget {
        deployment: deployment.to_string(),
        deploy_dir: deploy_dir.to_string(),
        process: format!("plugin {}", c.plugin),
        service: c.service.clone(),
        probe: Probe::Plugin(c.check.clone()),
    }));
    out
}

/// A plugin's health check, with the plugin and the service to show logs of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckTarget {
    pub plugin: String,
    pub service: Option<String>,
    pub check: PluginCheck,
}
