//! Values for `docker-compose.yml`: the services of one deployment on one host.

use serde_json::{Value, json};

use crate::inventory::{Deployment, PostgresProfile, WorkerKind};
use crate::plugins::Contribution;
use crate::secrets::DeploymentSecrets;
use crate::topology::{Endpoint, Process, Role, Topology};

/// The user and group Synapse and Redis run as (the guide's 1000:1000).
pub const UID: u32 = 1000;
pub const GID: u32 = 1000;

/// The healthcheck of a Synapse process: `/health` on one of its listeners.
pub fn health_command(process: &Process) -> String {
    match process.health_endpoint() {
        Endpoint::Unix { path } => {
            format!("curl -fSs --unix-socket {path} http://localhost/health")
        }
        Endpoint::Tcp { address, port } => format!("curl -fSs http://{address}:{port}/health"),
    }
}

fn service(process: &Process) -> Value {
    let (template, command) = match process.role {
        Role::Main => ("synapse-template", Value::Null),
        Role::Worker(kind) => (
            if kind == WorkerKind::Media {
                "synapse-media-template"
            } else {
                "synapse-worker-template"
            },
            json!(format!(
                "run --config-path=/data/homeserver.yaml --config-path=/data/workers/{}.yaml",
                process.name
            )),
        ),
    };
    json!({
        "service": process.service,
        "name": process.name,
        "template": template,
        "command": command,
        "health": health_command(process),
    })
}

/// The context of `docker-compose.yml` for the part of `deployment` that runs on `host`.
pub fn compose(
    deployment: &Deployment,
    topology: &Topology,
    secrets: &DeploymentSecrets,
    host: &str,
    contributions: &[Contribution],
) -> Value {
    let socket = "/sockets/synapse_redis.sock";
    let (redis_command, redis_health) = match &topology.redis {
        Endpoint::Tcp { address, port } => (
            format!(
                "redis-server --bind {address} --port {port} --requirepass {} --unixsocket {socket} --unixsocketperm 660",
                secrets.redis_password.expose()
            ),
            json!([
                "CMD",
                "redis-cli",
                "-s",
                socket,
                "--no-auth-warning",
                "-a",
                secrets.redis_password.expose(),
                "ping"
            ]),
        ),
        Endpoint::Unix { .. } => (
            format!("redis-server --unixsocket {socket} --unixsocketperm 660 --port 0"),
            json!(["CMD", "redis-cli", "-s", socket, "ping"]),
        ),
    };
    json!({
        "project": deployment.name,
        "server_name": deployment.server_name,
        "host": host,
        "main_host": host == deployment.host,
        "spread": deployment.is_spread(),
        "images": {
            "synapse": deployment.images.synapse,
            "postgres": deployment.images.postgres,
            "redis": deployment.images.redis,
            "nginx": deployment.images.nginx,
        },
        "uid": UID,
        "gid": GID,
        "shm_size": match deployment.postgres.profile { PostgresProfile::Small => "1g", PostgresProfile::Large => "4g" },
        "nginx_port": deployment.nginx.http_port,
        "redis_command": redis_command,
        "redis_health": redis_health,
        "processes": topology.on_host(host).map(service).collect::<Vec<_>>(),
        "plugin_services": super::plugins::compose_services(contributions),
    })
}
