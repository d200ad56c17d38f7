//! Health: `GET /health` on every listener of every Synapse process, and the checks the
//! plugins ask for, through the host connection itself (SSH direct-streamlocal or
//! direct-tcpip channels), so nothing needs curl on the host and no port needs opening.
//! Retried with backoff until a deadline.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::host_data::{ManagedPath, ServiceName};
use crate::plugins::PluginCheck;
use crate::render::CheckTarget;
use crate::topology::{Endpoint, SOCKETS_DIR, Topology};
use crate::transport::Connection;

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

/// The request of a check: `GET path` with a `Host` header. The path and the host come from
/// plugins (checked there too): a space, a line break or any other byte that is not a
/// visible ASCII character could add headers or a second request, so it is refused here.
fn health_request(path: &str, host: &str) -> Result<String, String> {
    let plain = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic());
    if !path.starts_with('/') || !plain(path) || !plain(host) {
        return Err(format!(
            "not checked: the path {path:?} or the Host {host:?} is not plain text"
        ));
    }
    Ok(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n"))
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
    let request = health_request(path, host.unwrap_or("localhost"))?;
    let mut stream = stream.map_err(|e| e.to_string())?;
    stream
        .write_all(request.as_bytes())
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

/// When waiting stops: `timeout` from now, or never when that lies beyond what the clock
/// can hold (a timeout near `u64::MAX` seconds waits as long as it says, it does not panic).
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    pub fn after(timeout: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(timeout))
    }

    pub fn passed(&self) -> bool {
        self.0.is_some_and(|at| Instant::now() >= at)
    }

    /// The time left, at most `cap`.
    pub fn left(&self, cap: Duration) -> Duration {
        self.0.map_or(cap, |at| {
            cap.min(at.saturating_duration_since(Instant::now()))
        })
    }
}

/// Checks every target until all answer or `timeout` passes; returns those still failing,
/// with the last error of each.
pub fn wait_healthy(
    connection: &Connection,
    targets: &[HealthTarget],
    timeout: Duration,
) -> Vec<(HealthTarget, String)> {
    let deadline = Deadline::after(timeout);
    let mut pending: Vec<HealthTarget> = targets.to_vec();
    let mut delay = Duration::from_millis(250);
    loop {
        let mut failing = Vec::new();
        for target in pending {
            if let Err(error) = check(connection, &target) {
                failing.push((target, error));
            }
        }
        if failing.is_empty() || deadline.passed() {
            return failing;
        }
        std::thread::sleep(deadline.left(delay));
        // A check is one request on the open connection: cheap enough to repeat every
        // second, so a stack that turns healthy is seen as such within a second.
        delay = (delay * 2).min(Duration::from_secs(1));
        pending = failing.into_iter().map(|(t, _)| t).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_health_request_is_one_request_whatever_the_path_and_host() {
        assert_eq!(
            health_request("/health", "localhost").unwrap(),
            "GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n"
        );
        for (path, host) in [
            ("/a HTTP/1.0\r\nX-Evil: 1\r\n\r\nGET /b", "h"),
            ("/a", "h\r\nX-Evil: 1"),
            ("/a b", "h"),
            ("a", "h"),
            ("/a", ""),
            ("/\u{e9}", "h"),
        ] {
            assert!(health_request(path, host).is_err(), "{path:?} {host:?}");
        }
    }

    #[test]
    fn a_timeout_of_u64_max_seconds_waits_without_panicking() {
        let deadline = Deadline::after(Duration::from_secs(u64::MAX));
        assert!(!deadline.passed());
        assert_eq!(
            deadline.left(Duration::from_secs(2)),
            Duration::from_secs(2)
        );
        assert!(Deadline::after(Duration::ZERO).passed());

        let inventory = crate::inventory::parse(
            std::path::Path::new("inventory.toml"),
            "[hosts.here]\ntransport = \"local\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"here\"\ndeploy_dir = \"/opt/d\"\n".into(),
        )
        .unwrap();
        let connection = Connection::open(
            &inventory.hosts["here"],
            &crate::transport::ConnectOptions::default(),
        )
        .unwrap();
        assert!(wait_healthy(&connection, &[], Duration::from_secs(u64::MAX)).is_empty());
    }
}
