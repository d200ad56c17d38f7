//! Health: `GET /health` on every listener of every Synapse process, and the checks the
//! plugins ask for, through the host connection itself (SSH direct-streamlocal or
//! direct-tcpip channels), so nothing needs curl on the host and no port needs opening.
//! Retried with backoff until a deadline.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::health::{HealthTarget, Probe};
use crate::plugins::PluginCheck;
use crate::topology::Endpoint;
use crate::transport::Connection;

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
///
/// Each round asks the targets in order, up to the first that fails: while a stack starts,
/// the others fail too, and asking each of them every round would only space the rounds
/// out. Once the time is up, every target not yet seen answering is asked once more, so
/// that all the failing ones are named.
pub fn wait_healthy(
    connection: &Connection,
    targets: &[HealthTarget],
    timeout: Duration,
) -> Vec<(HealthTarget, String)> {
    let deadline = Deadline::after(timeout);
    let mut pending: VecDeque<&HealthTarget> = targets.iter().collect();
    let mut delay = Duration::from_millis(250);
    loop {
        while let Some(target) = pending.front() {
            if check(connection, target).is_err() {
                break;
            }
            pending.pop_front();
        }
        if pending.is_empty() {
            return Vec::new();
        }
        if deadline.passed() {
            return (pending.into_iter())
                .filter_map(|t| Some((t.clone(), check(connection, t).err()?)))
                .collect();
        }
        std::thread::sleep(deadline.left(delay));
        // A check is one request on the open connection: cheap enough to repeat every
        // half second, so a stack that turns healthy is seen as such within half a second
        // (what starts next waits for it).
        delay = (delay * 2).min(Duration::from_millis(500));
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

        assert!(wait_healthy(&local(), &[], Duration::from_secs(u64::MAX)).is_empty());
    }

    /// A connection to this machine.
    fn local() -> Connection {
        let inventory = crate::inventory::parse(
            std::path::Path::new("inventory.toml"),
            "[hosts.here]\ntransport = \"local\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"here\"\ndeploy_dir = \"/opt/d\"\n".into(),
        )
        .unwrap();
        Connection::open(
            &inventory.hosts["here"],
            &crate::transport::ConnectOptions::default(),
        )
        .unwrap()
    }

    /// A target on `socket` in `dir`'s sockets.
    fn local_target(dir: &std::path::Path, socket: &str) -> HealthTarget {
        HealthTarget {
            deployment: "d".into(),
            deploy_dir: dir.display().to_string(),
            process: socket.into(),
            service: Some(socket.into()),
            probe: Probe::Synapse(Endpoint::Unix {
                path: format!("/sockets/{socket}"),
            }),
        }
    }

    #[test]
    fn every_listener_failing_at_the_deadline_is_named_and_none_that_answers() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sockets")).unwrap();
        let listener = UnixListener::bind(dir.path().join("sockets/up.sock")).unwrap();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut request = [0; 256];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\nOK");
            }
        });
        let connection = local();
        let [up, down1, down2] =
            ["up.sock", "down1.sock", "down2.sock"].map(|socket| local_target(dir.path(), socket));
        // The first that fails ends each round: the one after it is only asked at the end.
        let failing = wait_healthy(
            &connection,
            &[down1.clone(), up.clone(), down2.clone()],
            Duration::from_millis(300),
        );
        let named: Vec<&str> = failing.iter().map(|(t, _)| t.process.as_str()).collect();
        assert_eq!(named, ["down1.sock", "down2.sock"]);
        assert!(wait_healthy(&connection, &[up], Duration::ZERO).is_empty());
    }
}
