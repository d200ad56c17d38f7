//! The rendered Nginx config, run by Debian's real nginx: `nginx -t` accepts it, and real
//! Matrix request URIs reach the right worker. Every upstream socket is a stub that answers
//! with its own name and the headers it received.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{inventory, nginx, render, root};

/// A rendered Nginx config running against stub upstreams.
struct NginxBed {
    _staged: nginx::StagedNginx,
    port: u16,
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
struct Answer {
    status: u16,
    worker: Option<String>,
    headers: BTreeMap<String, String>,
}

impl NginxBed {
    /// Renders `inventory`, points its Nginx files at a temporary directory (sockets, logs,
    /// pid, temp paths, a free loopback port), checks them with `nginx -t` and starts nginx.
    fn start(inventory: &Path) -> NginxBed {
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
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let staged = nginx::stage(&deployment.join("nginx"), port);
        let upstreams = std::fs::read_to_string(staged.base().join("conf/upstreams.conf")).unwrap();
        let sockets: BTreeSet<&str> = upstreams
            .lines()
            .filter_map(|line| line.trim().strip_prefix("server unix:"))
            .filter_map(|s| s.split_whitespace().next())
            .collect();
        for socket in sockets {
            spawn_stub(PathBuf::from(socket));
        }
        let test = staged.test();
        assert!(
            test.status.success(),
            "nginx -t refused the rendered config:\n{}",
            String::from_utf8_lossy(&test.stderr)
        );
        // Detached from the test's output, so that no worker outlives the test holding it.
        let nginx = Command::new(nginx::nginx())
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
        let bed = NginxBed {
            _staged: staged,
            port,
            nginx,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        bed
    }

    fn request(&self, method: &str, uri: &str) -> Answer {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let body = if method == "GET" { "" } else { "{}" };
        write!(stream, "{method} {uri} HTTP/1.1\r\nHost: example.org\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("");
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
        }
    }

    /// The worker a request reached, asserting it was proxied with the headers Synapse needs.
    fn worker(&self, method: &str, uri: &str) -> String {
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
fn spawn_stub(path: PathBuf) {
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

const ROOM: &str = "%21abc%3Aexample.org";
const ROOM_RAW: &str = "!abc:example.org";
const ROOM_V12: &str = "%21Hk2mXq9zPz0abcdefghijklmnopqrstuvwxyz01234";

#[test]
fn requests_reach_the_worker_that_serves_them() {
    let bed = NginxBed::start(&root().join("inventory/example.toml"));
    let expect = |worker: &str, requests: &[(&str, String)]| {
        for (method, uri) in requests {
            assert_eq!(bed.worker(method, uri), worker, "{method} {uri}");
        }
    };
    let c = "/_matrix/client/v3";
    expect(
        "client_sync1",
        &[
            (
                "PUT",
                format!("{c}/rooms/{ROOM}/typing/%40alice%3Aexample.org"),
            ),
            (
                "PUT",
                format!("{c}/rooms/{ROOM_V12}/typing/%40alice%3Aexample.org"),
            ),
            ("POST", format!("{c}/rooms/{ROOM}/receipt/m.read/%24event")),
            (
                "POST",
                format!("{c}/rooms/{ROOM_V12}/receipt/m.read/%24event"),
            ),
            ("POST", format!("{c}/rooms/{ROOM}/read_markers")),
            ("PUT", format!("{c}/sendToDevice/m.room.encrypted/txn1")),
            ("PUT", format!("{c}/presence/%40alice%3Aexample.org/status")),
            (
                "PUT",
                format!("{c}/user/%40alice%3Aexample.org/account_data/m.direct"),
            ),
            (
                "PUT",
                format!("{c}/user/%40alice%3Aexample.org/rooms/{ROOM}/account_data/m.fully_read"),
            ),
            (
                "PUT",
                format!("{c}/user/%40alice%3Aexample.org/rooms/{ROOM}/tags/m.favourite"),
            ),
            (
                "GET",
                format!("{c}/sync?since=s72594_4483_1934&timeout=30000"),
            ),
            ("GET", "/_matrix/client/r0/sync".to_string()),
            (
                "POST",
                "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync".to_string(),
            ),
            ("GET", format!("{c}/events?from=s1")),
            ("GET", format!("{c}/initialSync")),
            ("GET", format!("{c}/rooms/{ROOM}/initialSync")),
            ("POST", format!("{c}/user_directory/search")),
        ],
    );
    expect(
        "main",
        &[
            ("GET", format!("{c}/pushrules/")),
            ("PUT", format!("{c}/pushrules/global/override/my.rule")),
            ("POST", format!("{c}/rooms/{ROOM}/forget")),
            ("POST", format!("{c}/rooms/{ROOM_V12}/upgrade")),
            ("POST", format!("{c}/rooms/{ROOM}/report/%24event")),
            ("POST", format!("{c}/rooms/{ROOM}/report")),
            ("POST", format!("{c}/login")),
            ("GET", "/_matrix/client/versions".to_string()),
            ("POST", format!("{c}/register")),
            ("GET", format!("{c}/account/whoami")),
            ("POST", format!("{c}/account/3pid/add")),
            ("POST", format!("{c}/keys/query")),
            ("POST", format!("{c}/createRoom")),
            ("POST", format!("{c}/join/%23welcome-room%3Aexample.org")),
            ("GET", format!("{c}/profile/%40alice%3Aexample.org")),
            ("GET", format!("{c}/login/sso/redirect?redirectUrl=x")),
            (
                "GET",
                "/_matrix/federation/v1/openid/userinfo?access_token=x".to_string(),
            ),
            (
                "GET",
                "/_synapse/client/password_reset/email/submit_token?token=x".to_string(),
            ),
            ("GET", "/_synapse/client/oidc/callback".to_string()),
            (
                "GET",
                "/_synapse/admin/v1/users/%40alice%3Aexample.org/joined_rooms".to_string(),
            ),
            (
                "GET",
                "/_synapse/admin/v2/users/%40alice%3Aexample.org".to_string(),
            ),
            (
                "GET",
                "/_synapse/admin/v1/rooms/%21abc%3Aexample.org".to_string(),
            ),
        ],
    );
    expect(
        "media1",
        &[
            (
                "GET",
                "/_matrix/media/v3/download/example.org/abcdef".to_string(),
            ),
            (
                "GET",
                "/_matrix/media/r0/download/example.org/abcdef".to_string(),
            ),
            (
                "GET",
                "/_matrix/media/v3/thumbnail/example.org/abcdef?width=32&height=32".to_string(),
            ),
            (
                "POST",
                "/_matrix/media/v3/upload?filename=a.png".to_string(),
            ),
            ("POST", "/_matrix/media/v1/create".to_string()),
            ("GET", "/_matrix/media/v3/config".to_string()),
            (
                "GET",
                "/_matrix/media/v3/preview_url?url=https%3A%2F%2Fexample.org".to_string(),
            ),
            (
                "GET",
                "/_matrix/client/v1/media/download/example.org/abcdef".to_string(),
            ),
            (
                "GET",
                "/_matrix/client/v1/media/thumbnail/example.org/abcdef?width=32&height=32"
                    .to_string(),
            ),
            ("GET", "/_matrix/client/v1/media/config".to_string()),
            (
                "GET",
                "/_matrix/federation/v1/media/download/abcdef".to_string(),
            ),
            (
                "GET",
                "/_matrix/federation/v1/media/thumbnail/abcdef?width=32&height=32".to_string(),
            ),
            (
                "POST",
                "/_synapse/admin/v1/purge_media_cache?before_ts=1".to_string(),
            ),
            (
                "GET",
                "/_synapse/admin/v1/media/example.org/abcdef".to_string(),
            ),
            (
                "POST",
                "/_synapse/admin/v1/media/quarantine/example.org/abcdef".to_string(),
            ),
            (
                "POST",
                "/_synapse/admin/v1/media/unquarantine/example.org/abcdef".to_string(),
            ),
            (
                "POST",
                format!("/_synapse/admin/v1/quarantine_media/{ROOM}"),
            ),
            (
                "POST",
                format!("/_synapse/admin/v1/room/{ROOM}/media/quarantine"),
            ),
            ("GET", format!("/_synapse/admin/v1/room/{ROOM}/media")),
            (
                "POST",
                "/_synapse/admin/v1/user/%40alice%3Aexample.org/media/quarantine".to_string(),
            ),
            (
                "GET",
                "/_synapse/admin/v1/users/%40alice%3Aexample.org/media".to_string(),
            ),
        ],
    );
    expect(
        "federation_reader1",
        &[
            (
                "PUT",
                "/_matrix/federation/v1/send/1700000000000".to_string(),
            ),
            ("GET", "/_matrix/key/v2/server".to_string()),
            ("POST", "/_matrix/key/v2/query".to_string()),
            ("GET", "/_matrix/federation/v1/version".to_string()),
            (
                "GET",
                "/_matrix/federation/v1/query/profile?user_id=%40alice%3Aexample.org".to_string(),
            ),
            ("GET", "/_matrix/federation/v1/event/%24event".to_string()),
            ("GET", "/_matrix/federation/v1/publicRooms".to_string()),
            ("POST", "/_matrix/federation/v1/user/keys/query".to_string()),
        ],
    );

    assert_eq!(
        bed.request("GET", "/health").status,
        200,
        "Nginx's own health endpoint"
    );
    assert_eq!(bed.request("GET", "/.well-known/matrix/client").status, 404);
    assert_eq!(bed.request("GET", "/_synapse/metrics").status, 404);
}

/// Every request about one room, client or federation, room ID encoded or not, query string
/// or not: the room workers it reaches.
fn workers_for_room(bed: &NginxBed, room: &str) -> BTreeSet<String> {
    let c = "/_matrix/client/v3";
    let f = "/_matrix/federation/v1";
    let requests = [
        ("GET", format!("{c}/rooms/{room}/messages?dir=b&limit=10")),
        (
            "GET",
            format!("{c}/rooms/{room}/messages?dir=b&filter=%7B%22lazy_load_members%22%3Atrue%7D"),
        ),
        ("PUT", format!("{c}/rooms/{room}/send/m.room.message/txn1")),
        ("GET", format!("{c}/rooms/{room}/state")),
        (
            "GET",
            format!("{c}/rooms/{room}/state/m.room.member/%40bob%3Aexample.org"),
        ),
        ("GET", format!("{c}/rooms/{room}/members")),
        ("GET", format!("{c}/rooms/{room}/joined_members")),
        ("GET", format!("{c}/rooms/{room}/context/%24event")),
        ("GET", format!("{c}/rooms/{room}/event/%24event")),
        ("PUT", format!("{c}/rooms/{room}/redact/%24event/txn2")),
        ("POST", format!("{c}/rooms/{room}/join")),
        ("POST", format!("{c}/rooms/{room}/invite")),
        ("POST", format!("{c}/rooms/{room}/leave")),
        ("POST", format!("{c}/join/{room}?server_name=example.org")),
        (
            "GET",
            format!("/_matrix/client/v1/rooms/{room}/relations/%24event"),
        ),
        ("GET", format!("/_matrix/client/v1/rooms/{room}/hierarchy")),
        ("GET", format!("{f}/state_ids/{room}?event_id=%24event")),
        ("GET", format!("{f}/state/{room}?event_id=%24event")),
        (
            "GET",
            format!("{f}/make_join/{room}/%40bob%3Aremote.org?ver=10"),
        ),
        (
            "PUT",
            format!("/_matrix/federation/v2/send_join/{room}/%24event"),
        ),
        ("GET", format!("{f}/backfill/{room}?v=%24event&limit=10")),
        ("POST", format!("{f}/get_missing_events/{room}")),
        (
            "PUT",
            format!("/_matrix/federation/v2/invite/{room}/%24event"),
        ),
    ];
    requests
        .iter()
        .map(|(method, uri)| bed.worker(method, uri))
        .collect()
}

#[test]
fn every_request_for_one_room_reaches_the_same_room_worker() {
    let bed = NginxBed::start(&root().join("inventory/example.toml"));
    for room in [ROOM, ROOM_RAW, ROOM_V12] {
        let workers = workers_for_room(&bed, room);
        assert_eq!(workers.len(), 1, "room {room} reached {workers:?}");
        assert!(
            workers.iter().next().unwrap().starts_with("rooms"),
            "{workers:?}"
        );
    }
    assert_eq!(
        workers_for_room(&bed, ROOM),
        workers_for_room(&bed, ROOM_RAW),
        "encoded and plain IDs hash alike"
    );

    // Different rooms spread over the room workers.
    let spread: BTreeSet<String> = (0..40)
        .map(|i| {
            bed.worker(
                "GET",
                &format!("/_matrix/client/v3/rooms/%21room{i}x%3Aexample.org/messages"),
            )
        })
        .collect();
    assert!(spread.len() >= 3, "40 rooms reached only {spread:?}");
    assert!(spread.iter().all(|w| w.starts_with("rooms")));
}

#[test]
fn the_admin_api_is_private_and_synapse_client_pages_public() {
    let (_dir, path) = inventory(
        "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"h\"\n[deployments.d.nginx]\nadmin_allow = [\"10.0.0.0/8\"]\n",
    );
    let bed = NginxBed::start(&path);
    for uri in [
        "/_synapse/admin/v1/users/%40alice%3Aexample.org/joined_rooms",
        "/_synapse/admin/v1/media/example.org/abc",
        "/_synapse/admin/v1/purge_media_cache",
    ] {
        assert_eq!(bed.request("GET", uri).status, 403, "{uri}");
    }
    assert_eq!(
        bed.worker("GET", "/_synapse/client/password_reset/email/submit_token"),
        "main"
    );
    assert_eq!(
        bed.worker("GET", "/_synapse/client/unsubscribe?access_token=x"),
        "main"
    );
}

#[test]
fn hundreds_of_room_workers_pass_nginx_t_and_share_the_rooms() {
    let (_dir, path) = inventory(
        "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"h\"\n[deployments.d.workers]\nrooms = 200\nclient_sync = 3\nmedia = 2\nfederation_reader = 2\n[deployments.d.postgres]\nmax_connections = 2000\n",
    );
    let bed = NginxBed::start(&path);
    let reached: BTreeSet<String> = (0..100)
        .map(|i| {
            bed.worker(
                "GET",
                &format!("/_matrix/client/v3/rooms/%21r{i}%3Aexample.org/members"),
            )
        })
        .collect();
    assert!(
        reached.len() > 30,
        "100 rooms reached only {} of 200 workers",
        reached.len()
    );
    assert_eq!(
        bed.worker(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{ROOM}/typing/%40a%3Aexample.org")
        ),
        "client_sync1",
        "one stream writer"
    );
}
