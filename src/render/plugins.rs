//! What the plugins return, fitted into the deployment's files: their files in their own
//! directories, their services in docker-compose.yml, their locations in Nginx. A name or
//! a route that collides with synprov's own, or another plugin's, is an error naming the
//! plugin.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::{CheckTarget, RenderError, RenderedFile};
use crate::inventory::Grant;
use crate::plugins::nginx::Modifier;
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

/// The URI prefixes that are synprov's: every route of [`super::nginx::routes`] and the health
/// location lie under one of them. A plugin's location may not start with one, whatever
/// its modifier: a longer prefix (`/_synapse/admin/v1/`) or an exact match would take
/// requests from synprov's routes, past `admin_allow`.
const RESERVED: [&str; 3] = ["/_matrix", "/_synapse", "/health"];

/// Services and locations: none may take a name or a route synprov or an earlier plugin
/// uses.
pub fn check_names(topology: &Topology, contributions: &[Contribution]) -> Result<(), RenderError> {
    let mut services = builtin_services(topology);
    // Nginx's own duplicate rule: `/x` and `^~ /x` are the same location, `= /x` another.
    let mut locations: HashSet<(bool, &str)> = HashSet::from([(false, "/")]);
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
        for location in &contribution.locations {
            let matcher = location.matcher();
            if let Some(reserved) = RESERVED.iter().find(|r| location.uri.starts_with(*r)) {
                return Err(bad(
                    &contribution.plugin,
                    format!(
                        "its Nginx location `{matcher}` is under `{reserved}`, which synprov routes: it would take requests from synprov's locations (and past admin_allow)"
                    ),
                ));
            }
            let exact = location.modifier == Modifier::Exact;
            if !locations.insert((exact, &location.uri)) {
                return Err(bad(
                    &contribution.plugin,
                    format!("its Nginx location `{matcher}` is already routed"),
                ));
            }
        }
    }
    Ok(())
}

/// What the plugins applying to a deployment were granted, by plugin, for the plan.
pub fn grants(contributions: &[Contribution]) -> Vec<(String, Vec<Grant>)> {
    contributions
        .iter()
        .filter(|c| !c.grants.is_empty())
        .map(|c| (c.plugin.clone(), c.grants.clone()))
        .collect()
}

/// The process limit of a plugin's service that sets none.
const PLUGIN_PIDS: u64 = 256;

/// The memory limit of a plugin's service that sets none (synprov's small services').
const PLUGIN_MEMORY: &str = "0.5G";

/// A plugin's service confined as synprov's own are: every capability dropped (the ones
/// granted come back through its `cap_add`, which the plugin service rules held
/// to the grants), no gaining privileges, and a process and a memory limit unless it sets
/// its own. `privileged: true` (granted) still gives every capability: Docker ignores
/// `cap_drop` then.
fn hardened(definition: &serde_norway::Value) -> serde_norway::Value {
    use serde_norway::Value;
    let mut definition = definition.clone();
    if let Value::Mapping(map) = &mut definition {
        map.insert("cap_drop".into(), Value::Sequence(vec!["ALL".into()]));
        map.insert(
            "security_opt".into(),
            Value::Sequence(vec!["no-new-privileges:true".into()]),
        );
        if !map.contains_key("pids_limit") {
            map.insert("pids_limit".into(), PLUGIN_PIDS.into());
        }
        if !map.contains_key("mem_limit") {
            map.insert("mem_limit".into(), PLUGIN_MEMORY.into());
        }
    }
    definition
}

/// The plugins' services as YAML lines for the `services:` mapping of docker-compose.yml,
/// each [`hardened`].
pub fn compose_services(contributions: &[Contribution]) -> String {
    let mut out = String::new();
    for contribution in contributions {
        for (name, definition) in &contribution.services {
            let mut service = serde_norway::Mapping::new();
            service.insert(name.as_str().into(), hardened(definition));
            let yaml = serde_norway::to_string(&service).expect("a parsed value serializes");
            out.push_str(&format!("  # from plugin {}\n", contribution.plugin));
            for line in yaml.lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    out
}

/// The plugins' Nginx locations, for locations.conf: re-emitted from their parsed
/// directives, never the plugin's text.
pub fn locations(contributions: &[Contribution]) -> Vec<Value> {
    contributions
        .iter()
        .flat_map(|c| {
            c.locations.iter().map(|location| {
                json!({
                    "plugin": c.plugin,
                    "path": location.matcher(),
                    "lines": location.directives.iter().map(ToString::to_string).collect::<Vec<_>>(),
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
    let mut paths: HashSet<String> = files.iter().map(|f| f.path.clone()).collect();
    for contribution in contributions {
        no_secret_in_services(contribution, secrets)?;
        for file in &contribution.files {
            if !paths.insert(file.path.clone()) {
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
            // A file holding a secret is its owner's alone, whatever mode the plugin asks.
            let mode = match file.mode {
                Some(mode) if secret => mode & 0o700,
                Some(mode) => mode,
                None if secret => 0o600,
                None => 0o644,
            };
            files.push(RenderedFile {
                path: file.path.clone(),
                contents: file.contents.clone(),
                mode,
                secret,
                keep_existing: false,
                owner: file.owner,
                used_by: file.used_by.clone(),
                reloads: false,
            });
        }
    }
    Ok(())
}

/// Refuses a plugin's service that would hand a secret to its container as definition
/// text: in its environment, command, healthcheck or labels, or in a file of the plugin it
/// reads as an env file. Docker keeps those in the container's configuration, which
/// `docker inspect` shows to anyone in the docker group; a secret belongs in a file the
/// service mounts (0600, as synprov writes every file holding one).
fn no_secret_in_services(
    contribution: &Contribution,
    secrets: &DeploymentSecrets,
) -> Result<(), RenderError> {
    for (name, definition) in &contribution.services {
        let text = serde_norway::to_string(definition).expect("a parsed value serializes");
        if secrets.found_in(&text) {
            return Err(bad(
                &contribution.plugin,
                format!(
                    "its service `{name}` holds a secret in its definition (environment, command, healthcheck or labels), which `docker inspect` shows to anyone in the docker group: have the service read it from a file of the plugin it mounts"
                ),
            ));
        }
        let env_files = env_files(definition);
        if let Some(file) = contribution
            .files
            .iter()
            .find(|f| env_files.contains(&f.path.as_str()) && secrets.found_in(&f.contents))
        {
            return Err(bad(
                &contribution.plugin,
                format!(
                    "its service `{name}` reads {}, which holds a secret, as an env file: its values become the container's environment, which `docker inspect` shows to anyone in the docker group; have the service read the secret from a file it mounts",
                    file.path
                ),
            ));
        }
    }
    Ok(())
}

/// The env files of a checked service definition, as paths under the deploy directory
/// (`env_file` was rewritten to `./plugins/NAME/...`, a path or a list of paths or of
/// `{path: ...}`).
fn env_files(definition: &serde_norway::Value) -> Vec<&str> {
    fn path(entry: &serde_norway::Value) -> Option<&str> {
        entry
            .get("path")
            .unwrap_or(entry)
            .as_str()?
            .strip_prefix("./")
    }
    match definition.get("env_file") {
        Some(serde_norway::Value::Sequence(list)) => list.iter().filter_map(path).collect(),
        Some(single) => path(single).into_iter().collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> serde_norway::Value {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn a_plugin_service_drops_every_capability_and_gets_limits_unless_it_sets_them() {
        let plain = hardened(&service("image: coturn\ncap_add: [NET_ADMIN]\n"));
        assert_eq!(
            plain,
            service(
                "image: coturn\ncap_add: [NET_ADMIN]\ncap_drop: [ALL]\n\
                 security_opt: ['no-new-privileges:true']\npids_limit: 256\nmem_limit: 0.5G\n"
            )
        );
        let own = hardened(&service(
            "image: x\ncap_drop: [NET_RAW]\nsecurity_opt: [no-new-privileges]\npids_limit: 10\nmem_limit: 2G\n",
        ));
        assert_eq!(
            own,
            service(
                "image: x\ncap_drop: [ALL]\nsecurity_opt: ['no-new-privileges:true']\npids_limit: 10\nmem_limit: 2G\n"
            ),
            "its own limits stay; its capabilities are dropped all the same"
        );
    }

    /// A contribution of plugin `p`: one service `p-app` defined by `yaml`, and `files`
    /// (path under plugins/p/, contents).
    fn contribution(yaml: &str, files: &[(&str, &str)]) -> Contribution {
        Contribution {
            plugin: "p".into(),
            grants: Vec::new(),
            files: files
                .iter()
                .map(|(path, contents)| crate::plugins::output::PluginFile {
                    path: format!("plugins/p/{path}"),
                    contents: (*contents).into(),
                    mode: None,
                    owner: None,
                    used_by: Vec::new(),
                })
                .collect(),
            services: vec![("p-app".into(), service(yaml))],
            homeserver: None,
            locations: Vec::new(),
            checks: Vec::new(),
        }
    }

    #[test]
    fn a_plugin_service_that_would_show_a_secret_to_docker_inspect_is_refused() {
        let key = crate::secrets::MasterKey::from_text("Gx7q2LmP9vR4tY8wZ1aB6cD3eF5hJ0kN").unwrap();
        let mut secrets = key.secrets_for("example.org");
        secrets
            .plugins
            .push(key.derive("example.org", "plugin/p/key"));
        let own = secrets.plugins[0].expose().to_string();
        let db = secrets.postgres_password.expose().to_string();
        for (yaml, files, why) in [
            (
                format!("image: x\nenvironment: {{KEY: '{own}'}}\n"),
                vec![],
                "holds a secret in its definition",
            ),
            (
                format!("image: x\ncommand: ['--db-password', '{db}']\n"),
                vec![],
                "holds a secret in its definition",
            ),
            (
                "image: x\nenv_file: ./plugins/p/app.env\n".into(),
                vec![("app.env", format!("KEY={own}\n"))],
                "reads plugins/p/app.env, which holds a secret, as an env file",
            ),
            (
                "image: x\nenv_file: [{path: ./plugins/p/b.env}]\n".into(),
                vec![("b.env", format!("KEY={own}\n"))],
                "reads plugins/p/b.env",
            ),
        ] {
            let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
            let error = no_secret_in_services(&contribution(&yaml, &files), &secrets)
                .unwrap_err()
                .to_string();
            assert!(error.contains(why), "{yaml}: {error}");
        }
        let mounted = contribution(
            "image: x\nenv_file: ./plugins/p/app.env\nvolumes: ['./plugins/p/conf:/etc/x:ro']\n",
            &[
                ("app.env", "LEVEL=info\n"),
                ("conf/secret", &format!("{own}\n")),
            ],
        );
        assert!(no_secret_in_services(&mounted, &secrets).is_ok());
    }

    #[test]
    fn every_route_of_synprov_lies_under_a_reserved_prefix() {
        for route in super::super::nginx::routes() {
            let path = route
                .matcher
                .trim_start_matches("~ \"")
                .trim_start_matches('^');
            assert!(
                RESERVED.iter().any(|r| path.starts_with(r)),
                "{}",
                route.matcher
            );
        }
    }
}
