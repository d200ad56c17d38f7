//! The rendered Compose files, checked by the real Compose v2: `docker compose config -q`
//! accepts every one of them (the single-host example, each host of a spread deployment,
//! every deployment of a fleet), and the merged result is what the guide intends.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{compose, files, render, root};

fn compose_dirs(out: &Path) -> Vec<PathBuf> {
    files(out)
        .into_iter()
        .filter(|f| f.ends_with("docker-compose.yml"))
        .map(|f| out.join(f).parent().unwrap().to_path_buf())
        .collect()
}

fn config(dir: &Path, extra: &[&str]) -> std::process::Output {
    let command = compose();
    Command::new(&command[0])
        .args(&command[1..])
        .arg("config")
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn compose_accepts_every_rendered_file() {
    for inventory in ["example.toml", "fleet.toml", "spread.toml"] {
        let out = render(&root().join("inventory").join(inventory));
        let dirs = compose_dirs(out.path());
        assert!(!dirs.is_empty());
        for dir in dirs {
            let output = config(&dir, &["-q"]);
            assert!(
                output.status.success(),
                "{inventory}: {}: {}",
                dir.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[test]
fn the_merged_services_keep_the_templates_and_start_in_order_of_health() {
    let out = render(&root().join("inventory/example.toml"));
    let output = config(&out.path().join("hs1/example"), &["--format", "json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let merged: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let services = merged["services"].as_object().unwrap();
    assert_eq!(services.len(), 16);
    let rooms1 = &services["rooms1"];
    assert_eq!(
        rooms1["environment"]["SYNAPSE_WORKER"],
        "synapse.app.generic_worker"
    );
    assert_eq!(
        rooms1["depends_on"]["synapse"]["condition"],
        "service_healthy"
    );
    assert_eq!(rooms1["restart"], "always");
    assert_eq!(
        services["media1"]["environment"]["SYNAPSE_WORKER"],
        "synapse.app.media_repository"
    );
    assert_eq!(
        services["synapse"]["depends_on"]["db"]["condition"],
        "service_healthy"
    );
    assert_eq!(
        services["synapse"]["depends_on"]["redis"]["condition"],
        "service_healthy"
    );
    assert_eq!(
        services["nginx"]["depends_on"]["synapse"]["condition"],
        "service_healthy"
    );
    for (name, service) in services {
        assert!(
            service["healthcheck"]["test"].is_array(),
            "{name} has a healthcheck"
        );
    }
    assert!(
        services["synapse"]["healthcheck"]["test"]
            .to_string()
            .contains("synapse_replication_main.sock")
    );
}

/// The host ports Compose publishes for the nginx service of the rendered `inventory`, as
/// `host:container`, sorted.
fn nginx_ports(inventory: &Path) -> Vec<String> {
    let out = render(inventory);
    let merged = merged(&compose_dirs(out.path()).pop().unwrap());
    let mut ports: Vec<String> = (merged["services"]["nginx"]["ports"].as_array().unwrap())
        .iter()
        .map(|p| format!("{}:{}", p["published"].as_str().unwrap(), p["target"]))
        .collect();
    ports.sort();
    ports
}

#[test]
fn with_tls_nginx_publishes_http_https_and_federation_and_with_well_known_no_federation() {
    let ca = common::tls::TestCa::new("test CA");
    let (cert, key) = ca.issue(&["example.org"]);
    let inventory = |tls: &str| {
        let (dir, path) = common::inventory(&format!(
            "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"h\"\n\
[deployments.d.tls]\ncertificate = \"c.pem\"\nkey = \"k.pem\"\n{tls}"
        ));
        std::fs::write(dir.path().join("c.pem"), &cert).unwrap();
        std::fs::write(dir.path().join("k.pem"), &key).unwrap();
        (dir, path)
    };
    let (_dir, path) = inventory("");
    assert_eq!(nginx_ports(&path), ["443:8443", "80:8008", "8448:8448"]);
    let (_dir, path) = inventory("federation = \"well-known\"\nhttps_port = 8443\n");
    assert_eq!(nginx_ports(&path), ["80:8008", "8443:8443"]);
    assert_eq!(
        nginx_ports(&root().join("inventory/example.toml")),
        ["8008:8008"],
        "without TLS, the plain listener alone, as before"
    );
}

/// The Compose file in `dir`, as Compose merges it.
fn merged(dir: &Path) -> serde_json::Value {
    let output = config(dir, &["--format", "json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Each service of every rendered Compose file, as Compose merges it.
fn merged_services(inventory: &str) -> Vec<(String, serde_json::Value)> {
    let out = render(&root().join("inventory").join(inventory));
    let mut services = Vec::new();
    for dir in compose_dirs(out.path()) {
        let merged = merged(&dir);
        for (name, service) in merged["services"].as_object().unwrap() {
            services.push((format!("{}: {name}", dir.display()), service.clone()));
        }
    }
    services
}

#[test]
fn every_service_drops_its_capabilities_is_limited_and_only_nginx_publishes_a_port() {
    for inventory in ["example.toml", "fleet.toml", "spread.toml"] {
        for (name, service) in merged_services(inventory) {
            let service_name = name.rsplit(": ").next().unwrap();
            assert_eq!(service["cap_drop"], serde_json::json!(["ALL"]), "{name}");
            assert_eq!(
                service["security_opt"],
                serde_json::json!(["no-new-privileges:true"]),
                "{name}"
            );
            assert_eq!(service["read_only"], true, "{name}");
            assert!(service["pids_limit"].as_u64().unwrap_or(0) > 0, "{name}");
            assert!(service["mem_limit"].as_str().is_some(), "{name}");
            assert!(service["privileged"].is_null(), "{name}");
            assert_eq!(
                service["ports"].is_array(),
                service_name == "nginx",
                "{name}: {}",
                service["ports"]
            );
            // What each adds back: its entrypoint's switch to its user, nothing more.
            let added: Vec<&str> = service["cap_add"]
                .as_array()
                .map(|a| a.iter().map(|c| c.as_str().unwrap()).collect())
                .unwrap_or_default();
            let expected: &[&str] = match service_name {
                "redis" => &[],
                "db" => &["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"],
                "nginx" => &["CHOWN", "SETGID", "SETUID"],
                _ => &["SETGID", "SETUID"],
            };
            let mut added = added;
            added.sort_unstable();
            assert_eq!(added, expected, "{name}");
        }
    }
}

#[test]
fn with_acme_nginx_mounts_the_challenge_directory_and_the_installed_certificate_read_only() {
    let (_dir, path) = common::inventory(
        "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"h\"\n\
[deployments.d.tls.acme]\nemail = \"admin@example.org\"\n",
    );
    let out = render(&path);
    let dir = compose_dirs(out.path()).pop().unwrap();
    let merged = merged(&dir);
    let mounts: Vec<(String, String, bool)> = merged["services"]["nginx"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let source = v["source"].as_str().unwrap();
            let source = source.strip_prefix(dir.to_str().unwrap()).unwrap_or(source);
            (
                source.to_string(),
                v["target"].as_str().unwrap().to_string(),
                v["read_only"].as_bool().unwrap_or(false),
            )
        })
        .filter(|(_, target, _)| target.contains("acme") || target.contains("tls"))
        .collect();
    assert_eq!(
        mounts,
        [
            (
                "/acme-challenge".to_string(),
                "/var/www/acme-challenge".to_string(),
                true
            ),
            ("/tls".to_string(), "/etc/synprov-tls".to_string(), true),
        ]
    );
    assert_eq!(nginx_ports(&path), ["443:8443", "80:8008", "8448:8448"]);
}
