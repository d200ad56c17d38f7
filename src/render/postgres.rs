//! Values for `postgresql.conf`: the guide's two hardware profiles.

use serde_json::{Value, json};

use crate::inventory::{Deployment, PostgresProfile};
use crate::topology::{Endpoint, Topology};

/// The context of `postgres/postgresql.conf`.
pub fn postgresql_conf(deployment: &Deployment, topology: &Topology) -> Value {
    let profile = match deployment.postgres.profile {
        PostgresProfile::Small => json!({
            "name": "small", "description": "4 cores, 8 GB of RAM",
            "workers": 4, "per_gather": 2, "maintenance": 1,
            "effective_cache_size": "2GB", "maintenance_work_mem": "512MB",
            "shared_buffers": "1GB", "work_mem": "28MB", "max_wal_size": "2GB",
        }),
        PostgresProfile::Large => json!({
            "name": "large", "description": "16 cores or more, 64 GB of RAM, SSD",
            "workers": 16, "per_gather": 4, "maintenance": 4,
            "effective_cache_size": "40GB", "maintenance_work_mem": "1GB",
            "shared_buffers": "4GB", "work_mem": "32MB", "max_wal_size": "4GB",
        }),
    };
    // The official image's entrypoint reaches its temporary server through the default
    // socket directory while it initialises the database, so that one stays too.
    json!({
        "server_name": deployment.server_name,
        "profile": profile,
        "listen_addresses": match &topology.postgres {
            Endpoint::Tcp { address, .. } => address.as_str(),
            Endpoint::Unix { .. } => "",
        },
        "max_connections": deployment.postgres.max_connections,
        "timezone": deployment.timezone,
    })
}
