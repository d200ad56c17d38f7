//! Values for `docker-compose.yml`: the services of one deployment on one host.

use serde_json::{Value, json};

use super::RenderedDir;
use crate::inventory::{Deployment, WorkerKind};
use crate::plugins::Contribution;
use crate::secrets::DeploymentSecrets;
use crate::sizing::PostgresSizing;
use crate::topology::{Endpoint, Process, Role, Topology};

/// The user and group Synapse and Redis run as (the guide's 1000:1000).
pub const UID: u32 = 1000;
pub const GID: u32 = 1000;

/// How many processes (threads included) a Synapse container may run: the reactor's
/// thread pool, the database pool's threads, media thumbnailing, and a healthcheck's curl,
/// with room to spare; a fork bomb stops well short of the host's limit.
const SYNAPSE_PIDS: u32 = 256;

/// Redis: its main thread, a few background I/O threads, the child of a background save and
/// the healthcheck's redis-cli.
const REDIS_PIDS: u32 = 64;

/// Nginx: `worker_processes auto` starts one worker per core of the host (not of the
/// container's `cpus`), so the limit leaves room for large hosts.
const NGINX_PIDS: u32 = 512;

/// Postgres beyond its connections (one process each): the background processes, the
/// autovacuum launcher and workers, the entrypoint's temporary server and the healthcheck.
const POSTGRES_PIDS_BESIDES_CONNECTIONS: u32 = 64;

/// Postgres' process limit: a process per connection and per background worker it may
/// start (`max_worker_processes`), plus [`POSTGRES_PIDS_BESIDES_CONNECTIONS`].
fn postgres_pids(sizing: &PostgresSizing) -> u32 {
    sizing
        .max_connections
        .value
        .saturating_add(sizing.max_worker_processes.value)
        .saturating_add(POSTGRES_PIDS_BESIDES_CONNECTIONS)
}

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

/// Redis' configuration file on the main host, when Redis has a password (a spread
/// deployment, where it listens on TCP). The password lives only in this file, never on a
/// command line (which `ps` on the host and `docker inspect` show).
pub const REDIS_CONF: &str = "redis-conf/redis.conf";

/// The directory of [`REDIS_CONF`], mounted as a whole.
const REDIS_CONF_DIR: &str = "redis-conf";

/// Where the directory holding [`REDIS_CONF`] is mounted, read-only, in the Redis container.
/// A directory, not the file: a file bind mount keeps the old inode after a rename.
const REDIS_CONF_MOUNT: &str = "/usr/local/etc/redis";

const REDIS_SOCKET: &str = "/sockets/synapse_redis.sock";

/// The directory of [`REDIS_CONF`], when there is one: root's, 0750, group [`GID`], so
/// that Redis (run as `UID:GID` by the compose file, in the official image as in the test
/// bed's) can enter it and nobody else on the host can. The file itself is 0600 and owned
/// by `UID:GID`: Redis reads it, and so does its healthcheck, run as the same user.
pub fn redis_conf_dir(topology: &Topology) -> Option<RenderedDir> {
    matches!(topology.redis, Endpoint::Tcp { .. }).then(|| RenderedDir {
        path: REDIS_CONF_DIR.to_string(),
        mode: 0o750,
        owner: Some((0, GID)),
    })
}

/// The context of [`REDIS_CONF`], when Redis needs a password. The password is derived
/// (URL-safe base64), so it needs no quoting in Redis' configuration syntax.
pub fn redis_conf(topology: &Topology, secrets: &DeploymentSecrets) -> Option<Value> {
    match &topology.redis {
        Endpoint::Tcp { address, port } => Some(json!({
            "bind": address,
            "port": port,
            "password": secrets.redis_password.expose(),
            "socket": REDIS_SOCKET,
        })),
        Endpoint::Unix { .. } => None,
    }
}

/// Redis' command and healthcheck. Over TCP, the healthcheck gives redis-cli the password
/// in its environment (`REDISCLI_AUTH`), read from the configuration file by a shell: never
/// on an argument list, never in the container's definition. It passes only on `PONG`, so a
/// wrong password makes Redis unhealthy.
fn redis_service(topology: &Topology) -> (String, Value) {
    match &topology.redis {
        Endpoint::Tcp { .. } => (
            format!("redis-server {REDIS_CONF_MOUNT}/redis.conf"),
            json!([
                "CMD-SHELL",
                // `$$`: Compose interpolates a single `$`. An assignment's value is not split,
                // so the substitution needs no quotes.
                format!(
                    "REDISCLI_AUTH=$$(sed -n 's/^requirepass //p' {REDIS_CONF_MOUNT}/redis.conf) redis-cli -s {REDIS_SOCKET} ping | grep -qx PONG"
                )
            ]),
        ),
        Endpoint::Unix { .. } => (
            format!("redis-server --unixsocket {REDIS_SOCKET} --unixsocketperm 660 --port 0"),
            json!(["CMD", "redis-cli", "-s", REDIS_SOCKET, "ping"]),
        ),
    }
}

/// The context of `docker-compose.yml` for the part of `deployment` that runs on `host`,
/// with `postgres` sized when its Postgres runs there.
pub fn compose(
    deployment: &Deployment,
    topology: &Topology,
    host: &str,
    contributions: &[Contribution],
    postgres: Option<&PostgresSizing>,
) -> Value {
    let (redis_command, redis_health) = redis_service(topology);
    let redis_conf =
        redis_conf_dir(topology).map(|dir| json!({ "dir": dir.path, "mount": REDIS_CONF_MOUNT }));
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
        // The tuning guide: /dev/shm about as large as the shared buffers (Docker's
        // default of 64MB fails parallel queries).
        "shm_size": postgres.map(|p| format!("{}m", p.shared_buffers.value.mb_rounded_up())),
        "pids": {
            "synapse": SYNAPSE_PIDS,
            "redis": REDIS_PIDS,
            "nginx": NGINX_PIDS,
            "postgres": postgres.map(postgres_pids),
        },
        "nginx_port": deployment.nginx.http_port,
        "tls": super::tls::context(deployment),
        "redis_command": redis_command,
        "redis_health": redis_health,
        "redis_conf": redis_conf,
        "processes": topology.on_host(host).map(service).collect::<Vec<_>>(),
        "plugin_services": super::plugins::compose_services(contributions),
    })
}
