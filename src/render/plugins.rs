//! What the plugins return, fitted into the deployment's files: their files beside
//! synprov's, their services in docker-compose.yml, their locations in Nginx. A name that
//! collides with synprov's own, or another plugin's, is an error naming the plugin.

use serde_json::{Value, json};

use super::{CheckTarget, RenderError, RenderedFile, nginx};
use crate::plugins::{Contribution, PluginError};
use crate::secrets::DeploymentSecrets;
use crate::topology::Topology;

/// The services of a deployment's main host besides Synapse's.
const MAIN_HOST_SERVICES: [&str; 3] = ["db", "redis", "nginx"];

/// Compose services synprov itself may define for a deployment, on any of its hosts.
fn builtin_services(topology: &Topology) -> Vec<String> {
    let mut names: Vec<String> = MAIN_HOST_SERVICES.map(String::from).to_vec();
    names.extend(topology.processes.iter().map(|p| p.service.clone()));
    names
}

fn bad(plugin: &str, message: String) -> RenderError {
    PluginError::BadOutput {
        plugin: plugin.to_string(),
        message,
    }
    .into()
}

/// Services and locations: none may take a name synprov or an earlier plugin uses.
pub fn check_names(topology: &Topology, contributions: &[Contribution]) -> Result<(), RenderError> {
    let mut services = builtin_services(topology);
    let mut locations: Vec<String> = nginx::routes().iter().map(|r| r.matcher.clone()).collect();
    for contribution in contributions {
        for (name, _) in &contribution.services {
            if services.contains(name) {
                return Err(bad(
                    &contribution.plugin,
                    format!("its service `{name}` collides with a service of the deployment"),
                ));
            }
            services.push(name.clone());
        }
        for (path, _) in &contribution.locations {
            if locations.contains(path) {
                return Err(bad(
                    &contribution.plugin,
                    format!("its Nginx location `{path}` is already routed"),
                ));
            }
            locations.push(path.clone());
        }
    }
    Ok(())
}

/// The plugins' services as YAML lines for the `services:` mapping of docker-compose.yml.
pub fn compose_services(contributions: &[Contribution]) -> String {
    let mut out = String::new();
    for contribution in contributions {
        for (name, definition) in &contribution.services {
            let mut service = serde_norway::Mapping::new();
            service.insert(name.as_str().into(), definition.clone());
            let yaml = serde_norway::to_string(&service).expect("a parsed value serializes");
            out.push_str(&format!("  # from plugin {}\n", contribution.plugin));
            for line in yaml.lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    out
}

/// The plugins' Nginx locations, for locations.conf.
pub fn locations(contributions: &[Contribution]) -> Vec<Value> {
    contributions
        .iter()
        .flat_map(|c| {
            c.locations.iter().map(|(path, body)| {
                json!({
                    "plugin": c.plugin,
                    "path": path,
                    "lines": body.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>(),
                })
            })
        })
        .collect()
}

/// The images the plugins' services run.
pub fn images(contributions: &[Contribution]) -> Vec<String> {
    contributions
        .iter()
        .flat_map(|c| &c.services)
        .filter_map(|(_, definition)| definition.get("image")?.as_str().map(String::from))
        .collect()
}

/// The plugins' health checks, with the plugin's first service for logs.
pub fn checks(contributions: &[Contribution]) -> Vec<CheckTarget> {
    contributions
        .iter()
        .flat_map(|c| {
            c.checks.iter().map(|check| CheckTarget {
                plugin: c.plugin.clone(),
                service: c.services.first().map(|(name, _)| name.clone()),
                check: check.clone(),
            })
        })
        .collect()
}

/// Adds the plugins' files; a path synprov or an earlier plugin writes is an error, and
/// so is a file restarting a service that is not on this host.
pub fn add_files(
    files: &mut Vec<RenderedFile>,
    contributions: &[Contribution],
    topology: &Topology,
    host: &str,
    main_host: bool,
    secrets: &DeploymentSecrets,
) -> Result<(), RenderError> {
    let mut services: Vec<String> = topology.on_host(host).map(|p| p.service.clone()).collect();
    services.extend(
        contributions
            .iter()
            .flat_map(|c| c.services.iter().map(|(name, _)| name.clone())),
    );
    if main_host {
        services.extend(MAIN_HOST_SERVICES.map(String::from));
    }
    let all_secrets = secrets.all();
    for contribution in contributions {
        for file in &contribution.files {
            if files.iter().any(|f| f.path == file.path) {
                return Err(bad(
                    &contribution.plugin,
                    format!(
                        "its file {} collides with a file of the deployment",
                        file.path
                    ),
                ));
            }
            if let Some(unknown) = file.used_by.iter().find(|s| !services.contains(s)) {
                return Err(bad(
                    &contribution.plugin,
                    format!(
                        "its file {} restarts `{unknown}`, which is not a service on {host}",
                        file.path
                    ),
                ));
            }
            let secret = all_secrets
                .iter()
                .any(|s| file.contents.contains(s.expose()));
            files.push(RenderedFile {
                path: file.path.clone(),
                contents: file.contents.clone(),
                mode: file.mode.unwrap_or(if secret { 0o600 } else { 0o644 }),
                secret,
                keep_existing: false,
                owner: file.owner,
                used_by: file.used_by.clone(),
            });
        }
    }
    Ok(())
}
