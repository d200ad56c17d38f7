//! Values for the Synapse files: the shared homeserver.yaml, one YAML per worker, one log
//! config per process type.

use serde_json::{Value, json};

use crate::inventory::{Deployment, WorkerKind};
use crate::secrets::DeploymentSecrets;
use crate::topology::{Endpoint, Process, Topology};

/// Synapse's default IP range blocklist (`synapse/config/server.py`), for URL previews: the
/// guide's shorter list misses several reserved ranges (GUIDE-SPEC D5).
const IP_RANGE_BLOCKLIST: [&str; 19] = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
];

/// The listeners a process declares: replication first, then inbound, then metrics.
fn listeners(process: &Process) -> Vec<Value> {
    let listener = |endpoint: &Endpoint, resources: &[&str], x_forwarded: bool| {
        let mut value = endpoint_value(endpoint);
        value["resources"] = json!(resources);
        value["x_forwarded"] = json!(x_forwarded);
        value["metrics"] = json!(false);
        value
    };
    let mut out = Vec::new();
    if let Some(endpoint) = &process.replication {
        out.push(listener(endpoint, &["replication"], false));
    }
    if let Some(endpoint) = &process.inbound {
        out.push(listener(endpoint, process.inbound_resources(), true));
    }
    if let Some(metrics) = &process.metrics {
        out.push(json!({ "metrics": true, "host": metrics.bind, "port": metrics.port }));
    }
    out
}

/// An endpoint for the templates: `path` for a socket, `host` and `port` for TCP; the other
/// keys are null so that templates can test them.
fn endpoint_value(endpoint: &Endpoint) -> Value {
    match endpoint {
        Endpoint::Unix { path } => json!({ "path": path, "host": null, "port": null }),
        Endpoint::Tcp { address, port } => json!({ "path": null, "host": address, "port": port }),
    }
}

/// The path of the signing key inside the containers.
pub fn signing_key_path(deployment: &Deployment) -> String {
    format!("/data/{}.signing.key", deployment.server_name)
}

/// The context of `synapse/homeserver.yaml`.
pub fn homeserver(
    deployment: &Deployment,
    topology: &Topology,
    secrets: &DeploymentSecrets,
) -> Value {
    let names = |kind| topology.names(kind);
    let first = |kind| {
        names(kind)
            .into_iter()
            .next()
            .expect("validated: at least one worker of each kind")
    };
    let postgres = match &topology.postgres {
        Endpoint::Unix { path } => {
            json!({ "host": path, "port": null, "cp_max": deployment.postgres.cp_max })
        }
        Endpoint::Tcp { address, port } => {
            json!({ "host": address, "port": port, "cp_max": deployment.postgres.cp_max })
        }
    };
    json!({
        "deployment": deployment.name,
        "server_name": deployment.server_name,
        "public_baseurl": deployment.public_baseurl,
        "admin_contact": deployment.admin_contact,
        "signing_key_path": signing_key_path(deployment),
        "welcome_room": format!("#welcome-room:{}", deployment.server_name),
        "postgres": postgres,
        "redis": endpoint_value(&topology.redis),
        "main_listeners": listeners(topology.main()),
        "metrics": deployment.metrics,
        "ip_range_blocklist": IP_RANGE_BLOCKLIST,
        "duties": {
            "stream_writer": topology.stream_writer().name,
            "federation_senders": names(WorkerKind::Sender),
            "media": names(WorkerKind::Media),
            "media_background": first(WorkerKind::Media),
            "background": first(WorkerKind::Tasks),
            "pushers": names(WorkerKind::Tasks),
            "event_writers": names(WorkerKind::Tasks),
        },
        "instance_map": topology.instance_map().map(|(p, e)| {
            let mut entry = endpoint_value(e);
            entry["name"] = json!(p.name);
            entry
        }).collect::<Vec<_>>(),
        "secrets": {
            "postgres_password": secrets.postgres_password.expose(),
            "redis_password": secrets.redis_password.expose(),
            "form_secret": secrets.form_secret.expose(),
            "macaroon_secret_key": secrets.macaroon_secret_key.expose(),
            "registration_shared_secret": secrets.registration_shared_secret.expose(),
            "worker_replication_secret": secrets.worker_replication_secret.expose(),
        },
    })
}

/// The context of `synapse/workers/NAME.yaml`.
pub fn worker(deployment: &Deployment, process: &Process) -> Value {
    json!({
        "server_name": deployment.server_name,
        "name": process.name,
        "app": process.app(),
        "log_config": format!("/data/log.config/{}.log.config", process.log_type()),
        "listeners": listeners(process),
    })
}

/// The context of `synapse/log.config/TYPE.log.config`.
pub fn log_config(process: &Process) -> Value {
    json!({ "log_type": process.log_type(), "worker": process.kind().is_some() })
}
