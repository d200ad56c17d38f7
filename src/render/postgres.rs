//! Values for `postgresql.conf`: the guide's settings, sized for the host (see `sizing`).

use serde_json::{Value, json};

use crate::inventory::Deployment;
use crate::sizing::PostgresSizing;
use crate::topology::{Endpoint, Topology};

/// The `pg_dump` of a deployment's database: Postgres' custom format (what `pg_restore`
/// reads), without the rows of `e2e_one_time_keys_json`, the one-time keys that devices
/// upload for others to claim. Synapse's backup guide: a key restored from a dump is handed
/// out a second time, and messages encrypted with it cannot be decrypted.
pub const PG_DUMP: &str = "pg_dump -Fc --exclude-table-data=e2e_one_time_keys_json";

/// `program` connected to the deployment's database as its owner, from inside the db
/// container (its socket directory, its user and database).
pub fn as_owner(program: &str) -> String {
    format!("{program} -h /sockets -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\"")
}

/// The password of the database's owner, as a shell word read in the db container: from
/// the file `POSTGRES_PASSWORD_FILE` names (the container's root reads it), or from
/// `POSTGRES_PASSWORD` in a container created before synprov moved the password into a file.
const OWNER_PASSWORD: &str = "\"${POSTGRES_PASSWORD:-$(cat -- \"$POSTGRES_PASSWORD_FILE\")}\"";

/// `shell` for `sh -c` in the db container, with the owner's password exported from what
/// the container holds: no secret on any command line.
pub fn with_owner_password(shell: &str) -> String {
    format!("export PGPASSWORD={OWNER_PASSWORD}; {shell}")
}

/// `shell` in the db container of the Compose command `compose`, with the owner's password
/// exported from what the container holds (see [`with_owner_password`]).
pub fn in_db(compose: crate::shell::Command, shell: &str) -> crate::shell::Command {
    compose
        .arg("exec")
        .arg("-T")
        .arg("db")
        .arg("sh")
        .arg("-c")
        .arg(with_owner_password(shell))
}

/// The file holding the database owner's password, in the directory mounted read-only at
/// `/etc/postgresql`. The image's entrypoint reads it (as root, before it switches to the
/// postgres user) through `POSTGRES_PASSWORD_FILE`: the password never is an environment
/// value of the container, which `docker inspect` shows to anyone in the docker group. The
/// file is root's and 0600 (it holds a secret); the server itself never reads it.
pub const PASSWORD_FILE: &str = "postgres/password";

/// [`PASSWORD_FILE`] as the db container sees it.
pub const PASSWORD_FILE_MOUNTED: &str = "/etc/postgresql/password";

/// The context of `postgres/postgresql.conf`.
pub fn postgresql_conf(
    deployment: &Deployment,
    topology: &Topology,
    sizing: &PostgresSizing,
) -> Value {
    // The official image's entrypoint reaches its temporary server through the default
    // socket directory while it initialises the database, so that one stays too.
    json!({
        "server_name": deployment.server_name,
        "sizing": {
            "shared_buffers": sizing.shared_buffers.value.to_string(),
            "effective_cache_size": sizing.effective_cache_size.value.to_string(),
            "work_mem": sizing.work_mem.value.to_string(),
            "maintenance_work_mem": sizing.maintenance_work_mem.value.to_string(),
            "max_wal_size": sizing.max_wal_size().to_string(),
            "max_worker_processes": sizing.max_worker_processes.value,
            "max_parallel_workers": sizing.max_parallel_workers.value,
            "max_parallel_workers_per_gather": sizing.max_parallel_workers_per_gather.value,
            "max_parallel_maintenance_workers": sizing.max_parallel_maintenance_workers,
            "max_connections": sizing.max_connections.value,
        },
        "listen_addresses": match &topology.postgres {
            Endpoint::Tcp { address, .. } => address.as_str(),
            Endpoint::Unix { .. } => "",
        },
        "timezone": deployment.timezone,
    })
}
