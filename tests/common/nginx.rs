//! Rendered Nginx files made runnable by the nginx of this machine: the paths the container
//! mounts (`/tmp`, `/sockets`, `/var/log/nginx`) moved under a temporary directory, so that
//! `nginx -t` and a real nginx can run them without root's directories.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{render, require};

/// The ports nginx listens on in the container: plain HTTP, HTTPS and federation.
pub const CONTAINER_PORTS: [u16; 3] = [8008, 8443, 8448];

/// A copy of a rendered `nginx/` directory that this machine's nginx can load.
pub struct StagedNginx {
    dir: tempfile::TempDir,
}

impl StagedNginx {
    /// The prefix (`nginx -p`): holds `conf/`, `sockets/`, `logs/` and `run/`, and ACME
    /// mode's `tls/` and `acme-challenge/`.
    pub fn base(&self) -> &Path {
        self.dir.path()
    }

    /// The main file (`nginx -c`).
    pub fn conf(&self) -> PathBuf {
        self.base().join("conf/nginx.conf")
    }

    /// `nginx -t` on the staged files, as it runs: a failure is in the output's status.
    pub fn test(&self) -> Output {
        Command::new(nginx())
            .arg("-p")
            .arg(self.base())
            .arg("-c")
            .arg(self.conf())
            .arg("-t")
            .output()
            .unwrap()
    }
}

/// The nginx binary; fails the test, saying how to install it, when there is none.
pub fn nginx() -> PathBuf {
    require("nginx", "apt-get install nginx")
}

/// Copies the files of the rendered directory `rendered` (a deployment's `nginx/`) into a
/// fresh directory, with the container's paths moved into it and each listener of `ports`
/// (container port, loopback port) on `127.0.0.1:PORT`.
pub fn stage(rendered: &Path, ports: &[(u16, u16)]) -> StagedNginx {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    for sub in ["conf", "sockets", "logs", "run", "tls", "acme-challenge"] {
        std::fs::create_dir(base.join(sub)).unwrap();
        std::fs::set_permissions(base.join(sub), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    for entry in std::fs::read_dir(rendered).unwrap() {
        let path = entry.unwrap().path();
        let target = base.join("conf").join(path.file_name().unwrap());
        // Certificates and keys as they are: base64 may hold any of the paths below.
        if path.extension().is_some_and(|e| e == "pem") {
            std::fs::copy(&path, target).unwrap();
            continue;
        }
        let mut text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/tmp/", &format!("{}/run/", base.display()))
            // After /tmp/: the staged directory itself is under /tmp.
            .replace("/etc/nginx/", &format!("{}/conf/", base.display()))
            .replace("/sockets/", &format!("{}/sockets/", base.display()))
            .replace("/var/log/nginx/", &format!("{}/logs/", base.display()))
            // ACME mode's mounts: the certificate the renewal installs, the CA's tokens.
            .replace("/etc/synprov-tls/", &format!("{}/tls/", base.display()))
            .replace(
                "/var/www/acme-challenge",
                &format!("{}/acme-challenge", base.display()),
            );
        for (container, port) in ports {
            text = text.replace(
                &format!("listen {container} "),
                &format!("listen 127.0.0.1:{port} "),
            );
        }
        std::fs::write(target, text).unwrap();
    }
    StagedNginx { dir }
}

/// A rendered Nginx config running against stub upstreams.
pub struct NginxBed {
    _staged: StagedNginx,
    /// The loopback port of each container port (8008, 8443, 8448).
    ports: BTreeMap<u16, u16>,
    nginx: Child,
}

impl Drop for NginxBed {
    fn drop(&mut self) {
        // TERM, not KILL: the master then stops its workers too.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.nginx.id().to_string())
            .status();
        let _ = self.nginx.wait();
    }
}

/// What a stub upstream saw.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub worker: Option<String>,
    /// The headers the stub upstream received.
    pub headers: BTreeMap<String, String>,
    /// The headers of Nginx's response, names lowercase.
    pub response_headers: BTreeMap<String, String>,
    pub body: String,
}

impl NginxBed {
    /// Renders `inventory`, points its Nginx files at a temporary directory (sockets, logs,
    /// pid, temp paths, free loopback ports), checks them with `nginx -t` and starts nginx.
    pub fn start(inventory: &Path) -> NginxBed {
        NginxBed::start_with(inventory, |_| {})
    }

    /// [`NginxBed::start`], with `prepare` given the staged prefix before `nginx -t` (to
    /// put there what the host holds beside the rendered files, as ACME's certificate).
    pub fn start_with(inventory: &Path, prepare: impl FnOnce(&Path)) -> NginxBed {
        let rendered = render(inventory);
        let deployment = std::fs::read_dir(rendered.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let deployment = std::fs::read_dir(&deployment)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let ports: BTreeMap<u16, u16> = CONTAINER_PORTS
            .iter()
            .map(|&container| (container, free_port()))
            .collect();
        let mapping: Vec<(u16, u16)> = ports.iter().map(|(c, l)| (*c, *l)).collect();
        let staged = stage(&deployment.join("nginx"), &mapping);
        let upstreams = std::fs::read_to_string(staged.base().join("conf/upstreams.conf")).unwrap();
        let sockets: BTreeSet<&str> = upstreams
            .lines()
            .filter_map(|line| line.trim().strip_prefix("server unix:"))
            .filter_map(|s| s.split_whitespace().next())
            .collect();
        for socket in sockets {
            spawn_stub(PathBuf::from(socket));
        }
        prepare(staged.base());
        let test = staged.test();
        assert!(
            test.status.success(),
            "nginx -t refused the rendered config:\n{}",
            String::from_utf8_lossy(&test.stderr)
        );
        // Detached from the test's output, so that no worker outlives the test holding it.
        let nginx = Command::new(nginx())
            .arg("-p")
            .arg(staged.base())
            .arg("-c")
            .arg(staged.conf())
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let port = ports[&8008];
        let bed = NginxBed {
            _staged: staged,
            ports,
            nginx,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        bed
    }

    /// The loopback port nginx listens on for the container's `port`.
    pub fn port(&self, container: u16) -> u16 {
        self.ports[&container]
    }

    /// `METHOD URI` over plain HTTP (the container's port 8008), as `Host: example.org`.
    pub fn request(&self, method: &str, uri: &str) -> Answer {
        let stream = TcpStream::connect(("127.0.0.1", self.port(8008))).unwrap();
        exchange(stream, method, uri)
    }

    /// `METHOD URI` over HTTPS to the container's `port`, the chain verified against
    /// `ca_pem` for the name example.org.
    pub fn request_tls(&self, port: u16, ca_pem: &str, method: &str, uri: &str) -> Answer {
        let stream =
            super::tls::connect("127.0.0.1", self.port(port), "example.org", ca_pem, |_| {})
                .unwrap_or_else(|e| panic!("TLS handshake with nginx failed: {e}"));
        exchange(stream, method, uri)
    }

    /// The worker a request reached, asserting it was proxied with the headers Synapse needs.
    pub fn worker(&self, method: &str, uri: &str) -> String {
        let answer = self.request(method, uri);
        assert_eq!(answer.status, 200, "{method} {uri}: {answer:?}");
        assert_eq!(
            answer.headers.get("host").map(String::as_str),
            Some("example.org"),
            "{uri}"
        );
        assert_eq!(
            answer.headers.get("x-forwarded-for").map(String::as_str),
            Some("127.0.0.1"),
            "{uri}"
        );
        assert_eq!(
            answer.headers.get("x-forwarded-proto").map(String::as_str),
            Some("http"),
            "{uri}"
        );
        answer
            .worker
            .unwrap_or_else(|| panic!("{uri}: no worker answered"))
    }
}

/// A UNIX-socket HTTP server that answers every request with `worker=NAME` and the request
/// headers it received.
pub fn spawn_stub(path: PathBuf) {
    let name = path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("synapse_inbound_")
        .trim_end_matches(".sock")
        .to_string();
    let listener = UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let name = name.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut head = Vec::new();
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((key, value)) = line.trim_end().split_once(": ") {
                            if key.eq_ignore_ascii_case("content-length") {
                                length = value.parse().unwrap_or(0);
                            }
                            head.push(format!("{key}: {value}"));
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let text = format!("worker={name}\n{}\n", head.join("\n"));
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if reader.get_mut().write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// Sends one request on `stream` and reads the whole response (`Connection: close`).
fn exchange(mut stream: impl Read + Write, method: &str, uri: &str) -> Answer {
    let body = if method == "GET" { "" } else { "{}" };
    write!(stream, "{method} {uri} HTTP/1.1\r\nHost: example.org\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut response = Vec::new();
    // A TLS peer may close without close_notify once the body is sent.
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let response_headers = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(": "))
        .map(|(key, value)| (key.to_ascii_lowercase(), value.to_string()))
        .collect();
    let mut headers = BTreeMap::new();
    let mut worker = None;
    for line in body.lines() {
        if let Some(name) = line.strip_prefix("worker=") {
            worker = Some(name.to_string());
        } else if let Some((key, value)) = line.split_once(": ") {
            headers.insert(key.to_ascii_lowercase(), value.to_string());
        }
    }
    Answer {
        status,
        worker,
        headers,
        response_headers,
        body: body.to_string(),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
