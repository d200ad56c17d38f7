//! `[deployments.NAME.metrics]`: every Synapse process gets a metrics listener that is never
//! published, and the main host gets a Prometheus `file_sd` file listing them all with the
//! labels of Synapse's documentation.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::{inventory, render, root};
use serde_norway::Value;

fn yaml(path: &Path) -> Value {
    serde_norway::from_str(&fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn targets(path: &Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// The metrics listeners a Synapse YAML declares: (bind address, port).
fn metrics_listeners(config: &Value, key: &str) -> Vec<(String, u64)> {
    config[key]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|l| l["type"].as_str() == Some("metrics"))
        .map(|l| {
            (
                l["bind_addresses"][0].as_str().unwrap().to_string(),
                l["port"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Renders a single-host deployment with `metrics` (its table, or nothing): the output, the
/// deployment's directory in it and its homeserver.yaml.
fn single_host(metrics: &str) -> (tempfile::TempDir, PathBuf, Value) {
    let (_dir, path) = inventory(&format!(
        "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"h\"\n{metrics}"
    ));
    let out = render(&path);
    let dir = out.path().join("h/d");
    let hs = yaml(&dir.join("synapse/homeserver.yaml"));
    (out, dir, hs)
}

#[test]
fn metrics_give_every_process_an_unpublished_listener_and_a_scrape_target() {
    let (_out, dir, hs) = single_host("[deployments.d.metrics]\nenabled = true\n");
    assert_eq!(hs["enable_metrics"].as_bool(), Some(true));
    assert_eq!(
        metrics_listeners(&hs, "listeners"),
        [("0.0.0.0".to_string(), 9000)]
    );
    let compose = yaml(&dir.join("docker-compose.yml"));
    let services = compose["services"].as_mapping().unwrap();
    let targets = targets(&dir.join("prometheus/targets.json"));
    // One target per Synapse process, reached by its service's name.
    let synapse_services: BTreeSet<String> = services
        .iter()
        .filter(|(_, s)| {
            s["healthcheck"]["test"]
                .as_str()
                .is_some_and(|t| t.contains("curl"))
        })
        .map(|(name, _)| format!("{}:9000", name.as_str().unwrap()))
        .collect();
    let scraped: BTreeSet<String> = targets
        .iter()
        .map(|t| t["targets"][0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(scraped, synapse_services);
    assert_eq!(targets.len(), 13);
    let mut jobs = BTreeSet::new();
    for target in &targets {
        let labels = &target["labels"];
        assert_eq!(labels["__metrics_path__"], "/_synapse/metrics");
        assert_eq!(labels["instance"], "example.org");
        assert!(
            jobs.insert((labels["job"].to_string(), labels["index"].to_string())),
            "job and index tell the targets apart: {target}"
        );
        let name = labels["worker_name"].as_str().unwrap();
        if name == "main" {
            assert_eq!(labels["job"], "master");
            assert_eq!(labels["worker_type"], "main");
            continue;
        }
        let worker = yaml(&dir.join(format!("synapse/workers/{name}.yaml")));
        assert_eq!(
            metrics_listeners(&worker, "worker_listeners"),
            [("0.0.0.0".to_string(), 9000)],
            "{name}"
        );
        let app = worker["worker_app"].as_str().unwrap();
        assert_eq!(
            Some(labels["job"].as_str().unwrap()),
            app.strip_prefix("synapse.app.")
        );
        assert!(name.starts_with(labels["worker_type"].as_str().unwrap()));
    }
    // Never published: the only published port is Nginx's.
    for (name, service) in services {
        assert_eq!(
            service.get("ports").is_some(),
            name.as_str() == Some("nginx"),
            "{name:?}"
        );
    }
}

#[test]
fn metrics_are_off_by_default() {
    let (_out, dir, hs) = single_host("");
    assert_eq!(hs["enable_metrics"].as_bool(), Some(false));
    assert!(metrics_listeners(&hs, "listeners").is_empty());
    let rooms1 = yaml(&dir.join("synapse/workers/rooms1.yaml"));
    assert!(metrics_listeners(&rooms1, "worker_listeners").is_empty());
    assert!(!dir.join("prometheus").exists());
}

#[test]
fn a_spread_deployment_scrapes_each_process_on_its_hosts_private_address() {
    let text = fs::read_to_string(root().join("inventory/spread.toml")).unwrap();
    let (_dir, path) = inventory(&format!(
        "{text}\n[deployments.big.metrics]\nenabled = true\n"
    ));
    let out = render(&path);
    let plain = render(&root().join("inventory/spread.toml"));
    let main = out.path().join("hs-main/big");
    assert!(
        !out.path().join("hs-rooms/big/prometheus").exists(),
        "the scrape file is on the main host only"
    );
    let targets = targets(&main.join("prometheus/targets.json"));
    let mut ports = BTreeSet::new();
    for target in &targets {
        let address = target["targets"][0].as_str().unwrap();
        let (ip, port) = address.rsplit_once(':').unwrap();
        assert!(ports.insert(port.to_string()), "{address} has its own port");
        let name = target["labels"]["worker_name"].as_str().unwrap();
        let host = ["hs-main", "hs-rooms", "hs-edge"]
            .into_iter()
            .find(|h| {
                out.path()
                    .join(h)
                    .join("big/synapse/workers")
                    .join(format!("{name}.yaml"))
                    .exists()
            })
            .unwrap_or("hs-main");
        let config = if name == "main" {
            metrics_listeners(&yaml(&main.join("synapse/homeserver.yaml")), "listeners")
        } else {
            metrics_listeners(
                &yaml(
                    &out.path()
                        .join(host)
                        .join(format!("big/synapse/workers/{name}.yaml")),
                ),
                "worker_listeners",
            )
        };
        assert_eq!(config, [(ip.to_string(), port.parse().unwrap())], "{name}");
    }
    // Turning metrics on moves no other listener.
    let rooms1 = |dir: &Path| {
        yaml(&dir.join("hs-rooms/big/synapse/workers/rooms1.yaml"))["worker_listeners"][0].clone()
    };
    assert_eq!(rooms1(out.path()), rooms1(plain.path()));
}
