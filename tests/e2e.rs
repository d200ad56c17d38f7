//! End to end: a bare Debian host (a container booting systemd and sshd, no Docker) gets the
//! guide's whole stack from `synprov apply`, as a user other than root (every step through
//! sudo), with the images streamed over SSH. Then a real
//! Matrix client conversation goes through its Nginx, and one more room worker is rolled
//! out: the plan shows exactly that, the apply recreates only what changed.
//!
//! Needs a Docker engine and the locally built images: `scripts/build-images.sh` (which
//! starts dockerd when needed). Run alone with `scripts/test.sh e2e`.

mod common;

use std::path::Path;
use std::process::Command;

use common::synprov;
use serde_json::{Value, json};

const SUBNET: &str = "172.31.240.0/24";
const HOST_IP: &str = "172.31.240.10";
const CONTAINER: &str = "synprov-e2e-host";
const IMAGES: [&str; 5] = [
    "synprov/host:bookworm",
    "synprov/synapse:1.163",
    "synprov/postgres:15",
    "synprov/redis:7",
    "synprov/nginx:1.22",
];

fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn on_host(script: &str) -> String {
    docker(&["exec", CONTAINER, "sh", "-c", script])
}

/// Removes the test host, its Docker volume and network, also when a test fails.
struct Bed(&'static str);

impl Bed {
    fn clean(name: &str) {
        let volume = format!("{name}-docker");
        for args in [
            ["rm", "-f", "-v", name].as_slice(),
            &["volume", "rm", "-f", &volume],
            &["network", "rm", name],
        ] {
            let _ = Command::new("docker").args(args).output();
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if std::env::var_os("SYNPROV_E2E_KEEP").is_none() {
            Bed::clean(self.0);
        }
    }
}

fn start_host(dir: &Path, name: &'static str, address: &str, subnet: &str) -> Bed {
    let running = Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        running,
        "the end-to-end test needs a running Docker engine: run scripts/start-dockerd.sh (scripts/test.sh does)"
    );
    for image in IMAGES {
        let present = Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            present,
            "image {image} is missing: build the test images with scripts/build-images.sh (scripts/test.sh does)"
        );
    }
    let bed = Bed(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("key"))
        .status()
        .unwrap();
    assert!(status.success());
    let started = Command::new("bash")
        .arg(common::root().join("scripts/start-host.sh"))
        .args([name, address, subnet])
        .arg(dir.join("key.pub"))
        .status()
        .unwrap();
    assert!(started.success(), "scripts/start-host.sh failed");
    bed
}

fn inventory(dir: &Path, rooms: u32) -> std::path::PathBuf {
    let path = dir.join(format!("e2e-{rooms}-rooms.toml"));
    std::fs::write(
        &path,
        format!(
            "[hosts.e2e]\naddress = \"{HOST_IP}\"\n# Not root: every step goes through sudo.\nuser = \"deploy\"\nbecome = true\nidentity_file = \"{key}\"\nhost_key_checking = \"accept-new\"\n\n\
[deployments.e2e]\nserver_name = \"e2e.example\"\npublic_baseurl = \"http://{HOST_IP}:8008/\"\nhost = \"e2e\"\ndeploy_dir = \"/opt/synapse/e2e\"\n\
[deployments.e2e.workers]\nrooms = {rooms}\n\
[deployments.e2e.images]\npreload = true\nsynapse = \"synprov/synapse:1.163\"\npostgres = \"synprov/postgres:15\"\nredis = \"synprov/redis:7\"\nnginx = \"synprov/nginx:1.22\"\n\
[deployments.e2e.nginx]\nadmin_allow = [\"172.16.0.0/12\", \"127.0.0.1\"]\n\
[deployments.e2e.postgres]\nmax_connections = 200\n",
            key = dir.join("key").display()
        ),
    )
    .unwrap();
    path
}

fn synprov_run(dir: &Path, args: &[&str], inventory: &Path) -> (i32, String) {
    synprov_run_with(dir, &[], args, inventory)
}

/// `synprov ARGS INVENTORY` with extra environment variables; prints and returns its output.
fn synprov_run_with(
    dir: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    inventory: &Path,
) -> (i32, String) {
    let output = synprov(dir)
        .envs(env.iter().copied())
        .args(args)
        .arg(inventory)
        .arg("--known-hosts")
        .arg(dir.join("known_hosts"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("synprov {args:?}:\n{text}");
    (output.status.code().unwrap_or(-1), text)
}

/// Container ID and start time of each service, to see what an apply recreated.
fn containers() -> std::collections::BTreeMap<String, String> {
    on_host("cd /opt/synapse/e2e && docker compose ps -a --format '{{.Service}} {{.ID}}'")
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(s, id)| (s.to_string(), id.to_string()))
        })
        .collect()
}

struct Client {
    base: String,
    token: String,
}

fn base() -> String {
    format!("http://{HOST_IP}:8008")
}

fn register(name: &str, shared_secret: &str) -> Client {
    use hmac::{Hmac, Mac};
    let url = format!("{}/_synapse/admin/v1/register", base());
    let nonce: Value = ureq::get(&url).call().unwrap().into_json().unwrap();
    let nonce = nonce["nonce"].as_str().unwrap();
    let password = format!("{name}-password");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(shared_secret.as_bytes()).unwrap();
    mac.update(format!("{nonce}\0{name}\0{password}\0notadmin").as_bytes());
    let body = json!({ "nonce": nonce, "username": name, "password": password, "admin": false, "mac": hex::encode(mac.finalize().into_bytes()) });
    let registered: Value = ureq::post(&url)
        .send_json(body)
        .unwrap()
        .into_json()
        .unwrap();
    assert!(registered["access_token"].is_string(), "{registered}");
    // A real login, as a client does.
    let login: Value = ureq::post(&format!("{}/_matrix/client/v3/login", base()))
        .send_json(json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": name }, "password": password }))
        .unwrap()
        .into_json()
        .unwrap();
    Client {
        base: base(),
        token: login["access_token"]
            .as_str()
            .expect("login token")
            .to_string(),
    }
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let request = ureq::request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token));
        let response = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        match response {
            Ok(r) => r.into_json().unwrap_or(Value::Null),
            Err(ureq::Error::Status(code, r)) => panic!(
                "{method} {path}: {code} {}",
                r.into_string().unwrap_or_default()
            ),
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }
}

#[test]
fn e2e_apply_deploys_a_healthy_stack_a_client_can_use_and_rolls_out_one_more_room_worker() {
    let dir = tempfile::tempdir().unwrap();
    let _bed = start_host(dir.path(), CONTAINER, HOST_IP, SUBNET);
    assert!(
        on_host("command -v docker || echo none").ends_with("none"),
        "the host starts without Docker"
    );
    let first = inventory(dir.path(), 4);

    let (code, out) = synprov_run(dir.path(), &["plan"], &first);
    assert_eq!(code, 2, "changes pending");
    assert!(
        out.contains("+ install Docker") && out.contains("+ load image synprov/synapse:1.163"),
        "{out}"
    );

    let (code, out) = synprov_run(dir.path(), &["apply"], &first);
    assert_eq!(code, 0, "apply failed");
    assert!(
        out.contains("installing Docker") && out.contains("16 listener(s) healthy"),
        "{out}"
    );
    assert_eq!(
        on_host("systemctl is-active docker"),
        "active",
        "Docker runs under systemd"
    );
    let status =
        on_host("cd /opt/synapse/e2e && docker compose ps -a --format '{{.Service}} {{.Health}}'");
    let services: Vec<&str> = status.lines().collect();
    assert_eq!(services.len(), 16, "{status}");
    assert!(
        services.iter().all(|l| l.ends_with(" healthy")),
        "every container healthy:\n{status}"
    );

    // A client conversation through Nginx.
    let hs: Value =
        serde_norway::from_str(&on_host("cat /opt/synapse/e2e/synapse/homeserver.yaml")).unwrap();
    let secret = hs["registration_shared_secret"].as_str().unwrap();
    let alice = register("alice", secret);
    let bob = register("bob", secret);
    let whoami = alice.call("GET", "/_matrix/client/v3/account/whoami", None);
    assert_eq!(whoami["user_id"], "@alice:e2e.example");
    let room = alice.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(json!({ "invite": ["@bob:e2e.example"], "name": "e2e" })),
    );
    let room_id = room["room_id"].as_str().unwrap().to_string();
    let encoded = room_id.replace('!', "%21").replace(':', "%3A");
    bob.call(
        "POST",
        &format!("/_matrix/client/v3/join/{encoded}"),
        Some(json!({})),
    );
    alice.call(
        "PUT",
        &format!("/_matrix/client/v3/rooms/{encoded}/typing/%40alice%3Ae2e.example"),
        Some(json!({ "typing": true, "timeout": 10000 })),
    );
    let sent = alice.call(
        "PUT",
        &format!("/_matrix/client/v3/rooms/{encoded}/send/m.room.message/t1"),
        Some(json!({ "msgtype": "m.text", "body": "hello bob" })),
    );
    let event_id = sent["event_id"].as_str().unwrap().to_string();
    bob.call(
        "POST",
        &format!(
            "/_matrix/client/v3/rooms/{encoded}/receipt/m.read/{}",
            event_id.replace('$', "%24")
        ),
        Some(json!({})),
    );
    let messages = bob.call(
        "GET",
        &format!("/_matrix/client/v3/rooms/{encoded}/messages?dir=b&limit=20"),
        None,
    );
    assert!(
        messages["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["content"]["body"] == "hello bob"),
        "{messages}"
    );
    let upload = ureq::post(&format!(
        "{}/_matrix/media/v3/upload?filename=hello.txt",
        base()
    ))
    .set("Authorization", &format!("Bearer {}", alice.token))
    .set("Content-Type", "text/plain")
    .send_bytes(b"media through the media worker")
    .unwrap()
    .into_json::<Value>()
    .unwrap();
    let mxc = upload["content_uri"]
        .as_str()
        .unwrap()
        .trim_start_matches("mxc://")
        .to_string();
    let download = ureq::get(&format!(
        "{}/_matrix/client/v1/media/download/{mxc}",
        base()
    ))
    .set("Authorization", &format!("Bearer {}", bob.token))
    .call()
    .unwrap()
    .into_string()
    .unwrap();
    assert_eq!(download, "media through the media worker");
    let sync = bob.call("GET", "/_matrix/client/v3/sync?timeout=0", None);
    let timeline = &sync["rooms"]["join"][&room_id]["timeline"]["events"];
    assert!(
        timeline
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["content"]["body"] == "hello bob"),
        "sync shows the message: {sync}"
    );
    let receipts = sync["rooms"]["join"][&room_id]["ephemeral"]["events"].to_string();
    assert!(
        receipts.contains("m.receipt"),
        "sync shows bob's receipt: {receipts}"
    );

    // Nothing changed: nothing to do.
    let before = containers();
    let (code, out) = synprov_run(dir.path(), &["apply"], &first);
    assert_eq!(code, 0);
    assert!(
        out.contains("host e2e: no changes") && out.contains("0 change(s) applied"),
        "{out}"
    );
    assert_eq!(containers(), before, "no container touched");

    // One more room worker.
    let second = inventory(dir.path(), 5);
    let (code, out) = synprov_run(dir.path(), &["plan"], &second);
    assert_eq!(code, 2);
    for expected in [
        "+ create synapse/workers/rooms5.yaml",
        "~ change docker-compose.yml",
        "new services: rooms5",
        "~ change nginx/upstreams.conf",
    ] {
        assert!(out.contains(expected), "plan lacks {expected:?}:\n{out}");
    }
    assert!(
        !out.contains("change synapse/homeserver.yaml"),
        "the shared config does not change"
    );
    let (code, out) = synprov_run(dir.path(), &["apply"], &second);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("17 listener(s) healthy"), "{out}");
    let after = containers();
    assert!(after.contains_key("rooms5"));
    for (service, id) in &before {
        if service == "nginx" {
            assert_ne!(
                after[service], *id,
                "nginx is recreated for its new upstream"
            );
        } else {
            assert_eq!(after[service], *id, "{service} was not touched");
        }
    }
    let status =
        on_host("cd /opt/synapse/e2e && docker compose ps -a --format '{{.Service}} {{.Health}}'");
    assert!(
        status.lines().count() == 17 && status.lines().all(|l| l.ends_with(" healthy")),
        "{status}"
    );

    // Roll the last apply back (with the inventory of before): rooms5 is gone, the stack is
    // healthy on the old files, and the first inventory has nothing left to change.
    let (code, out) = synprov_run(dir.path(), &["rollback", "--host", "e2e"], &first);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("16 listener(s) healthy"), "{out}");
    assert!(!containers().contains_key("rooms5"));
    let (code, out) = synprov_run(dir.path(), &["plan"], &first);
    assert_eq!(code, 0, "nothing to change after the rollback: {out}");

    // A worker that is down fails the apply: named, with the tail of its log, exit 1.
    on_host("docker stop e2e-tasks1-1");
    let impatient = dir.path().join("impatient.toml");
    std::fs::write(
        &impatient,
        format!(
            "{}[rollout]\nhealth_timeout = 10\n",
            std::fs::read_to_string(&first).unwrap()
        ),
    )
    .unwrap();
    let (code, out) = synprov_run(dir.path(), &["apply"], &impatient);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("UNHEALTHY tasks1")
            && out.contains("last log lines of tasks1")
            && out.contains("1 listener(s) unhealthy"),
        "{out}"
    );

    // A change that breaks Synapse (a config value it refuses), with rollback_on_failure: the
    // host fails its health check, is rolled back at once, and is healthy on the old files.
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        format!("{}[deployments.e2e.homeserver]\nevent_cache_size = \"lots\"\n[rollout]\nhealth_timeout = 30\nrollback_on_failure = true\n", std::fs::read_to_string(&first).unwrap()),
    )
    .unwrap();
    let (code, out) = synprov_run(dir.path(), &["apply"], &broken);
    assert_eq!(code, 1, "a rolled-back apply still fails: {out}");
    assert!(
        out.contains("unhealthy: rolling back")
            && out.contains("rolled back, 16 listener(s) healthy"),
        "{out}"
    );
    let (code, out) = synprov_run(dir.path(), &["plan"], &first);
    assert_eq!(code, 0, "the old files are back: {out}");
}

/// A host whose only Compose is the distribution's legacy docker-compose v1: synprov
/// installs it (no v2 plugin to send) and deploys and verifies through it.
#[test]
fn e2e_a_host_with_compose_v1_only_is_deployed_through_it() {
    const NAME: &str = "synprov-e2e-v1";
    const ADDRESS: &str = "172.31.242.10";
    let dir = tempfile::tempdir().unwrap();
    let _bed = start_host(dir.path(), NAME, ADDRESS, "172.31.242.0/24");
    let inventory = dir.path().join("v1.toml");
    std::fs::write(
        &inventory,
        format!(
            "[hosts.v1]\naddress = \"{ADDRESS}\"\nidentity_file = \"{}\"\nhost_key_checking = \"accept-new\"\n\n\
[deployments.v1]\nserver_name = \"v1.example\"\nhost = \"v1\"\n\
[deployments.v1.workers]\nrooms = 1\nsender = 1\n\
[deployments.v1.images]\npreload = true\nsynapse = \"synprov/synapse:1.163\"\npostgres = \"synprov/postgres:15\"\nredis = \"synprov/redis:7\"\nnginx = \"synprov/nginx:1.22\"\n",
            dir.path().join("key").display()
        ),
    )
    .unwrap();
    let run = || {
        synprov_run_with(
            dir.path(),
            &[("SYNPROV_COMPOSE_PLUGIN", "none")],
            &["apply"],
            &inventory,
        )
    };
    let (code, out) = run();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("installing docker-compose (v1)") && out.contains("10 listener(s) healthy"),
        "{out}"
    );
    let version = docker(&["exec", NAME, "docker-compose", "version", "--short"]);
    assert!(version.starts_with("1."), "legacy Compose: {version}");
    let (code, out) = run();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 change(s) applied"), "{out}");
}
