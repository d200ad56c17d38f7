//! End to end with the example plugins: a host gets a homeserver plus the `turn` plugin's
//! coturn and the `well-known` plugin's delegation. A client gets TURN credentials from
//! Synapse and coturn accepts them for a relay allocation (so both share the derived secret);
//! the `.well-known` files are served by the deployment's Nginx; a change to a plugin's
//! config shows in the plan with its secret masked and restarts only coturn.
//!
//! Needs a Docker engine and the locally built images: `scripts/build-images.sh`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};

use common::bed::{Bed, Host, PRELOADED_IMAGES};
use common::{matrix, root};
use serde_json::Value;

const SUBNET: &str = "172.31.247.0/24";
const HOST_IP: &str = "172.31.247.10";
const CONTAINER: &str = "synprov-e2e-plugins";
const DIR: &str = "/opt/synapse/calls";

fn inventory(dir: &Path, name: &str, turn_config: &str) -> PathBuf {
    let dist = |plugin: &str| root().join("plugins/dist").join(format!("{plugin}.wasm"));
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[hosts.calls]\naddress = \"{HOST_IP}\"\nuser = \"root\"\nidentity_file = \"{key}\"\nhost_key_checking = \"accept-new\"\n\n\
[deployments.calls]\nserver_name = \"calls.example\"\npublic_baseurl = \"http://{HOST_IP}:8008/\"\nhost = \"calls\"\ndeploy_dir = \"{DIR}\"\n\
[deployments.calls.workers]\nrooms = 1\nsender = 1\n\
[deployments.calls.images]\n{PRELOADED_IMAGES}\
[deployments.calls.nginx]\nadmin_allow = [\"172.16.0.0/12\", \"127.0.0.1\"]\n\n\
[[plugins]]\npath = {turn:?}\nallow = [\"host-network\"]\nsha256 = \"{turn_sha256}\"\n[plugins.config]\nimage = \"synprov/coturn:4.6\"\nhost = \"{HOST_IP}\"\n{turn_config}\n\n\
[[plugins]]\npath = {well_known:?}\n\n\
[[plugins]]\npath = {echo:?}\n",
            key = dir.join("key").display(),
            turn = dist("turn").display().to_string(),
            turn_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                std::fs::read(dist("turn")).unwrap()
            )),
            well_known = dist("well-known").display().to_string(),
            echo = dist("echo").display().to_string(),
        ),
    )
    .unwrap();
    path
}

fn get_json(url: &str) -> Value {
    ureq::get(url).call().unwrap().into_json().unwrap()
}

/// When the service's container last started.
fn started(host: &Host, service: &str) -> String {
    host.exec(&format!(
        "cd {DIR} && docker inspect --format '{{{{.State.StartedAt}}}}' $(docker compose ps -q {service})"
    ))
}

#[test]
fn e2e_plugins_deploy_a_turn_server_synapse_hands_out_credentials_for_and_well_known_delegation() {
    common::bed::require_image("synprov/coturn:4.6");
    let dir = tempfile::tempdir().unwrap();
    let bed = Bed::start(dir.path(), CONTAINER, SUBNET, &[(CONTAINER, HOST_IP)]);
    let host = &bed.hosts[0];
    let first = inventory(dir.path(), "calls.toml", "");

    let (code, out) = common::bed::run(dir.path(), &[], &["apply"], &first);
    assert_eq!(code, 0, "apply failed");
    assert!(
        out.contains("+ create plugins/turn/coturn/turnserver.conf"),
        "{out}"
    );
    assert!(
        out.contains("calls: plugin turn granted host-network"),
        "the plan shows what the operator granted: {out}"
    );
    assert!(
        out.contains("+ load image synprov/coturn:4.6"),
        "the plugin's image is preloaded like the deployment's: {out}"
    );
    let status = host.exec(&format!(
        "cd {DIR} && docker compose ps --format '{{{{.Service}}}} {{{{.State}}}}'"
    ));
    assert!(status.lines().any(|l| l == "coturn running"), "{status}");
    // Confined like synprov's own services: granted the host's network, nothing more.
    let coturn = host.exec(&format!(
        "cd {DIR} && docker inspect --format '{{{{json .HostConfig.CapDrop}}}} {{{{json .HostConfig.CapAdd}}}} \
         {{{{json .HostConfig.SecurityOpt}}}} {{{{.HostConfig.PidsLimit}}}} {{{{.HostConfig.Memory}}}}' \
         $(docker compose ps -q coturn)"
    ));
    assert_eq!(
        coturn,
        format!(
            r#"["ALL"] null ["no-new-privileges:true"] 256 {}"#,
            512 * 1024 * 1024
        ),
        "the plugin's service drops every capability and has limits"
    );

    // The plugin was told the host's facts when synprov connected.
    let echo = host.exec(&format!("cat {DIR}/plugins/echo/echo/input.txt"));
    assert!(echo.contains("facts: os=debian 12 arch=x86_64"), "{echo}");
    assert!(echo.contains("workers: client_sync1@calls"), "{echo}");

    // `.well-known` delegation through the deployment's Nginx.
    let base = host.url(8008);
    let client = get_json(&format!("{base}/.well-known/matrix/client"));
    assert_eq!(
        client["m.homeserver"]["base_url"],
        format!("http://{HOST_IP}:8008/")
    );
    let server = get_json(&format!("{base}/.well-known/matrix/server"));
    assert_eq!(server["m.server"], format!("{HOST_IP}:8008"));

    // Synapse hands out TURN credentials, and coturn accepts them: they share the secret.
    let secret = matrix::shared_secret(&host.exec(&format!("cat {DIR}/synapse/homeserver.yaml")));
    let alice = matrix::register(&base, "alice", &secret);
    let turn = alice.call("GET", "/_matrix/client/v3/voip/turnServer", None);
    assert_eq!(
        turn["uris"][1],
        format!("turn:{HOST_IP}:3478?transport=tcp"),
        "{turn}"
    );
    let (username, password) = (
        turn["username"].as_str().unwrap(),
        turn["password"].as_str().unwrap(),
    );
    turn_client::allocate(
        &format!("{HOST_IP}:3478"),
        username,
        password,
        "calls.example",
    )
    .expect("coturn allocates a relay with the credentials Synapse gave");
    assert!(
        turn_client::allocate(
            &format!("{HOST_IP}:3478"),
            username,
            "wrong",
            "calls.example"
        )
        .is_err(),
        "coturn refuses other credentials"
    );

    // A change to the plugin's config: the plan shows it with the secret masked, the apply
    // restarts coturn only.
    let turn_conf = host.exec(&format!("cat {DIR}/plugins/turn/coturn/turnserver.conf"));
    let turn_secret = turn_conf
        .lines()
        .find_map(|l| l.strip_prefix("static-auth-secret="))
        .unwrap()
        .to_string();
    let second = inventory(dir.path(), "calls-2.toml", "min_port = 49170\n");
    let (code, out) = common::bed::run(dir.path(), &[], &["plan"], &second);
    assert_eq!(code, 2, "changes pending");
    assert!(
        out.contains("~ change plugins/turn/coturn/turnserver.conf")
            && out.contains("+min-port=49170"),
        "{out}"
    );
    assert!(
        !out.contains(&turn_secret),
        "the plan shows the TURN secret"
    );
    assert!(
        !out.contains("homeserver.yaml"),
        "Synapse's config does not change: {out}"
    );
    let (synapse, coturn) = (started(host, "synapse"), started(host, "coturn"));
    let (code, out) = common::bed::run(dir.path(), &[], &["apply"], &second);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains(&turn_secret),
        "the apply shows the TURN secret"
    );
    assert_ne!(
        started(host, "coturn"),
        coturn,
        "coturn restarted on its new config"
    );
    assert_eq!(started(host, "synapse"), synapse, "Synapse was not touched");
    assert!(
        host.exec(&format!("cat {DIR}/plugins/turn/coturn/turnserver.conf"))
            .contains("min-port=49170")
    );

    let (code, out) = common::bed::run(dir.path(), &[], &["apply"], &second);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("host calls: no changes"),
        "a second apply changes nothing: {out}"
    );

    // The plugin's health check is verified: with coturn stopped, the apply fails naming it.
    host.exec(&format!("cd {DIR} && docker compose stop coturn"));
    let impatient = dir.path().join("calls-impatient.toml");
    let text = std::fs::read_to_string(&second).unwrap();
    std::fs::write(
        &impatient,
        format!("[rollout]\nhealth_timeout = 5\n\n{text}"),
    )
    .unwrap();
    let (code, out) = common::bed::run(dir.path(), &[], &["apply"], &impatient);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("UNHEALTHY plugin turn (calls)") && out.contains("127.0.0.1:3478"),
        "{out}"
    );
}

/// Just enough of TURN (RFC 5766) over TCP to ask for a relay allocation with long-term
/// credentials (RFC 5389 §10.2), as a calling client does.
mod turn_client {
    use super::*;
    use hmac::{Hmac, Mac};
    use md5::{Digest, Md5};

    const COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
    const ALLOCATE: u16 = 0x0003;
    const ALLOCATE_SUCCESS: u16 = 0x0103;
    const USERNAME: u16 = 0x0006;
    const MESSAGE_INTEGRITY: u16 = 0x0008;
    const REALM: u16 = 0x0014;
    const NONCE: u16 = 0x0015;
    const REQUESTED_TRANSPORT: u16 = 0x0019;

    fn message(attributes: &[(u16, Vec<u8>)], integrity_key: Option<&[u8]>) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in attributes {
            body.extend(kind.to_be_bytes());
            body.extend((value.len() as u16).to_be_bytes());
            body.extend(value);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        let header = |len: usize| {
            let mut h = ALLOCATE.to_be_bytes().to_vec();
            h.extend((len as u16).to_be_bytes());
            h.extend(COOKIE);
            h.extend(*b"synprov-test");
            h
        };
        let Some(key) = integrity_key else {
            return [header(body.len()), body].concat();
        };
        // The HMAC covers the message with its length already counting the attribute.
        let mut signed = [header(body.len() + 24), body.clone()].concat();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        mac.update(&signed);
        signed.extend(MESSAGE_INTEGRITY.to_be_bytes());
        signed.extend(20u16.to_be_bytes());
        signed.extend(mac.finalize().into_bytes());
        signed
    }

    /// Sends `request`, returns the response's type and attributes.
    fn exchange(stream: &mut TcpStream, request: &[u8]) -> (u16, Vec<(u16, Vec<u8>)>) {
        stream.write_all(request).unwrap();
        let mut header = [0u8; 20];
        stream.read_exact(&mut header).unwrap();
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).unwrap();
        let mut attributes = Vec::new();
        let mut at = 0;
        while at + 4 <= body.len() {
            let kind = u16::from_be_bytes([body[at], body[at + 1]]);
            let size = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
            attributes.push((kind, body[at + 4..at + 4 + size].to_vec()));
            at += 4 + size.next_multiple_of(4);
        }
        (u16::from_be_bytes([header[0], header[1]]), attributes)
    }

    /// An Allocate request, answered 401 with a nonce, then signed with the credentials.
    pub fn allocate(
        address: &str,
        username: &str,
        password: &str,
        realm: &str,
    ) -> Result<(), String> {
        let mut stream = TcpStream::connect(address).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let udp = (REQUESTED_TRANSPORT, vec![17, 0, 0, 0]);
        let (_, challenge) = exchange(&mut stream, &message(std::slice::from_ref(&udp), None));
        let find = |kind| {
            challenge
                .iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, v)| v.clone())
        };
        let nonce = find(NONCE).ok_or("no nonce in the 401 challenge")?;
        let server_realm = find(REALM).ok_or("no realm in the 401 challenge")?;
        assert_eq!(
            server_realm,
            realm.as_bytes(),
            "coturn's realm is the server name"
        );
        let key = Md5::digest(format!("{username}:{realm}:{password}"));
        let signed = message(
            &[
                udp,
                (USERNAME, username.as_bytes().to_vec()),
                (REALM, realm.as_bytes().to_vec()),
                (NONCE, nonce),
            ],
            Some(&key),
        );
        match exchange(&mut stream, &signed) {
            (ALLOCATE_SUCCESS, _) => Ok(()),
            (kind, attributes) => Err(format!("answered {kind:#06x}: {attributes:?}")),
        }
    }
}
