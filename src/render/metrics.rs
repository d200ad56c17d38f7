//! The Prometheus scrape file of a deployment with metrics on: every Synapse process's
//! metrics listener as a `file_sd` target, for the operator's Prometheus.

use serde_json::{Value, json};

use crate::inventory::Deployment;
use crate::topology::{Process, Role, Topology};

/// Where the scrape file lands in the deploy directory of the deployment's main host.
pub const TARGETS: &str = "prometheus/targets.json";

/// Synapse serves its metrics here, not at Prometheus' default `/metrics`.
const METRICS_PATH: &str = "/_synapse/metrics";

/// The `job` label of Synapse's documentation and Grafana dashboard: `master` for main, the
/// worker app otherwise (`generic_worker`, `media_repository`).
fn job(process: &Process) -> &'static str {
    match process.role {
        Role::Main => "master",
        Role::Worker(_) => process
            .app()
            .strip_prefix("synapse.app.")
            .unwrap_or(process.app()),
    }
}

/// The `file_sd` JSON listing every process of `topology` that has a metrics listener,
/// None when the deployment has metrics off. Labels follow Synapse's documentation
/// (`instance` the server name, `job` and `index` as its dashboard groups them) with the
/// worker's name and type besides, and `__metrics_path__` so that a scrape job needs no
/// `metrics_path` of its own.
pub fn targets(deployment: &Deployment, topology: &Topology) -> Option<String> {
    if !deployment.metrics {
        return None;
    }
    let mut seen: Vec<&str> = Vec::new();
    let groups: Vec<Value> = topology
        .processes
        .iter()
        .filter_map(|process| {
            let listener = process.metrics.as_ref()?;
            let job = job(process);
            seen.push(job);
            let index = seen.iter().filter(|j| **j == job).count();
            Some(json!({
                "targets": [listener.target],
                "labels": {
                    "__metrics_path__": METRICS_PATH,
                    "instance": deployment.server_name,
                    "job": job,
                    "index": index.to_string(),
                    "worker_name": process.name,
                    "worker_type": process.kind().map_or("main", |kind| kind.stem()),
                },
            }))
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&groups).expect("JSON values serialize");
    text.push('\n');
    Some(text)
}
