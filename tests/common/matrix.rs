//! A Matrix client for the end-to-end tests: Synapse's client API through a deployment's
//! Nginx, as a real client uses it.

use std::sync::RwLock;

use serde_json::{Value, json};

/// The HTTP client of every request here, once [`trust`] has set one.
static AGENT: RwLock<Option<ureq::Agent>> = RwLock::new(None);

/// From now on, every request of this process's client trusts `ca_pem` and no other CA:
/// a deployment whose Nginx serves HTTPS with a certificate of the test's own CA is then
/// reached with the chain verified.
pub fn trust(ca_pem: &str) {
    trust_resolving(ca_pem, &[]);
}

/// [`trust`], with each name of `hosts` reached at its address, as a client whose DNS
/// points the names at the deployment.
pub fn trust_resolving(ca_pem: &str, hosts: &[(&str, &str)]) {
    *AGENT.write().unwrap() = Some(super::tls::https_agent_resolving(ca_pem, hosts));
}

/// The client requests go through: ureq's default, or the one [`trust`] made.
pub fn agent() -> ureq::Agent {
    AGENT.read().unwrap().clone().unwrap_or_else(ureq::agent)
}

pub struct Client {
    pub base: String,
    pub token: String,
}

/// Registers `name` with the shared secret (the admin API, so the test machine must be in
/// the deployment's `admin_allow`), then logs in with a password, as a client does.
pub fn register(base: &str, name: &str, shared_secret: &str) -> Client {
    use hmac::{Hmac, Mac};
    let url = format!("{base}/_synapse/admin/v1/register");
    let nonce: Value = agent().get(&url).call().unwrap().into_json().unwrap();
    let nonce = nonce["nonce"].as_str().unwrap();
    let password = format!("{name}-password");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(shared_secret.as_bytes()).unwrap();
    mac.update(format!("{nonce}\0{name}\0{password}\0notadmin").as_bytes());
    let body = json!({ "nonce": nonce, "username": name, "password": password, "admin": false, "mac": hex::encode(mac.finalize().into_bytes()) });
    let registered: Value = agent()
        .post(&url)
        .send_json(body)
        .unwrap()
        .into_json()
        .unwrap();
    assert!(registered["access_token"].is_string(), "{registered}");
    login(base, name)
}

/// Logs `name`, registered by [`register`], in with its password, as a client does.
pub fn login(base: &str, name: &str) -> Client {
    let password = format!("{name}-password");
    let login: Value = agent().post(&format!("{base}/_matrix/client/v3/login"))
        .send_json(json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": name }, "password": password }))
        .unwrap()
        .into_json()
        .unwrap();
    Client {
        base: base.to_string(),
        token: login["access_token"]
            .as_str()
            .expect("login token")
            .to_string(),
    }
}

/// Whether `name` can log in with the password [`register`] gave it.
pub fn logs_in(base: &str, name: &str) -> bool {
    agent().post(&format!("{base}/_matrix/client/v3/login"))
        .send_json(json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": name }, "password": format!("{name}-password") }))
        .is_ok()
}

impl Client {
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let request = agent()
            .request(method, &format!("{}{path}", self.base))
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

/// A conversation through the Nginx at `base` that touches every kind of worker: alice and
/// bob register and log in, alice creates a room and invites bob, bob joins, alice types and
/// writes, bob sends a read receipt and reads the messages, media goes up and down, and bob's
/// sync shows the message and the receipt. `round` tells the users of one conversation
/// from those of an earlier one on the same server (`alice2`, `bob2`).
pub fn conversation(base: &str, shared_secret: &str, server_name: &str, round: &str) {
    let (alice_name, bob_name) = (format!("alice{round}"), format!("bob{round}"));
    let alice = register(base, &alice_name, shared_secret);
    let bob = register(base, &bob_name, shared_secret);
    let whoami = alice.call("GET", "/_matrix/client/v3/account/whoami", None);
    assert_eq!(whoami["user_id"], format!("@{alice_name}:{server_name}"));
    let room = alice.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(json!({ "invite": [format!("@{bob_name}:{server_name}")], "name": "e2e" })),
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
        &format!("/_matrix/client/v3/rooms/{encoded}/typing/%40{alice_name}%3A{server_name}"),
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
    let upload = agent()
        .post(&format!(
            "{base}/_matrix/media/v3/upload?filename=hello.txt"
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
    let download = agent()
        .get(&format!("{base}/_matrix/client/v1/media/download/{mxc}"))
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
}

/// The registration shared secret of a deployment, from its `homeserver.yaml`.
pub fn shared_secret(homeserver_yaml: &str) -> String {
    let hs: Value = serde_norway::from_str(homeserver_yaml).unwrap();
    hs["registration_shared_secret"]
        .as_str()
        .expect("registration_shared_secret")
        .to_string()
}
