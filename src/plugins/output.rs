//! What a plugin returned, checked on its own before rendering uses it: sizes, paths that
//! stay inside the plugin's own directory, names, YAML without aliases or merge keys,
//! services held to the capability model ([`super::service`]), Nginx locations parsed
//! ([`super::nginx`]). Collisions with synprov's own services and routes are checked where
//! those are known (`render`).

use std::collections::HashSet;
use std::path::{Component, Path};

use super::nginx::Location;
use super::sandbox::synprov::plugin::types;
use super::service::Rules;
use super::{PluginError, yaml};
use crate::inventory::{Grant, PluginSpec};

/// The most a plugin may return in one contribution, all strings together.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// The most files a plugin may return in one contribution. Each is written, recorded with
/// every generation and listed in the plan: a plugin of empty files with short paths went
/// under [`MAX_OUTPUT_BYTES`] with over a hundred thousand of them.
pub const MAX_FILES: usize = 1000;

/// The most services, Nginx locations and health checks, each, a plugin may return in one
/// contribution: a health check costs no byte of output, and each is probed by `verify`.
pub const MAX_ENTRIES: usize = 100;

/// A plugin's contribution to one deployment on one host, checked.
#[derive(Debug, Clone)]
pub struct Contribution {
    pub plugin: String,
    /// What the operator granted the plugin, shown with the plan.
    pub grants: Vec<Grant>,
    /// Its files, their paths under its own directory (`plugins/NAME/...`).
    pub files: Vec<PluginFile>,
    /// Compose services: name and definition (a mapping), relative paths rewritten into
    /// the plugin's directory.
    pub services: Vec<(String, serde_norway::Value)>,
    /// Settings to merge into homeserver.yaml (a mapping).
    pub homeserver: Option<serde_json::Value>,
    pub locations: Vec<Location>,
    pub checks: Vec<PluginCheck>,
}

#[derive(Debug, Clone)]
pub struct PluginFile {
    /// Relative to the deploy directory: `plugins/NAME/` and the plugin's path.
    pub path: String,
    pub contents: String,
    pub mode: Option<u32>,
    pub owner: Option<(u32, u32)>,
    pub used_by: Vec<String>,
}

/// The directory of a plugin's files, relative to the deploy directory: its own, so that
/// nothing it writes can land beside docker-compose.yml (where `compose.yaml` or
/// `docker-compose.override.yml` would change the stack) or in synprov's state.
pub fn directory(plugin: &str) -> String {
    format!("plugins/{plugin}")
}

/// A health check a plugin asks for, on the host's loopback.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginCheck {
    /// The port accepts a TCP connection.
    Tcp { port: u16 },
    /// `GET path` answers 200.
    Http {
        port: u16,
        path: String,
        host_header: Option<String>,
    },
}

/// Checks what the plugin of `spec` returned, and moves its files and mounts into its own
/// directory; the first problem is the error, naming the plugin.
pub fn check(spec: &PluginSpec, raw: types::Contribution) -> Result<Contribution, PluginError> {
    let plugin = spec.name.as_str();
    let bad = |message: String| PluginError::BadOutput {
        plugin: plugin.to_string(),
        message,
    };
    for (count, what, limit) in [
        (raw.files.len(), "files", MAX_FILES),
        (raw.services.len(), "services", MAX_ENTRIES),
        (raw.locations.len(), "Nginx locations", MAX_ENTRIES),
        (raw.health_checks.len(), "health checks", MAX_ENTRIES),
    ] {
        if count > limit {
            return Err(bad(format!(
                "it returned {count} {what}, more than the limit of {limit}"
            )));
        }
    }
    let size = raw
        .files
        .iter()
        .map(|f| f.path.len() + f.contents.len() + f.used_by.iter().map(String::len).sum::<usize>())
        .chain(
            raw.services
                .iter()
                .map(|s| s.name.len() + s.definition.len()),
        )
        .chain(raw.locations.iter().map(|l| l.path.len() + l.body.len()))
        .sum::<usize>()
        + raw.homeserver.len();
    if size > MAX_OUTPUT_BYTES {
        return Err(bad(format!(
            "its output is {:.1} MiB, more than the limit of {} MiB",
            size as f64 / (1 << 20) as f64,
            MAX_OUTPUT_BYTES >> 20
        )));
    }

    let files = check_files(plugin, raw.files).map_err(bad)?;

    let own: Vec<&str> = raw.services.iter().map(|s| s.name.as_str()).collect();
    let services = check_services(spec, &raw.services, &own, &files)?;

    let homeserver = if raw.homeserver.trim().is_empty() {
        None
    } else {
        let value = yaml::parse(&raw.homeserver).map_err(|e| {
            bad(format!(
                "its homeserver.yaml settings are not accepted YAML: {e}"
            ))
        })?;
        if !value.is_mapping() {
            return Err(bad(
                "its homeserver.yaml settings are not a YAML mapping".into()
            ));
        }
        Some(serde_json::to_value(&value).map_err(|e| {
            bad(format!(
                "its homeserver.yaml settings are not plain data (string keys, no tags): {e}"
            ))
        })?)
    };

    let mut locations = Vec::new();
    for location in raw.locations {
        locations.push(
            Location::parse(&location.path, &location.body, &own)
                .map_err(|why| bad(format!("Nginx location {:?} {why}", location.path)))?,
        );
    }
    let mut checks = Vec::new();
    for check in raw.health_checks {
        checks.push(match check {
            types::HealthCheck::Tcp(port) if port > 0 => PluginCheck::Tcp { port },
            types::HealthCheck::Http(http) if http.port > 0 => {
                let header_ok = http
                    .host_header
                    .as_deref()
                    .is_none_or(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()));
                if !http.path.starts_with('/')
                    || !http.path.chars().all(|c| c.is_ascii_graphic())
                    || !header_ok
                {
                    return Err(bad(format!(
                        "HTTP health check {:?} (Host {:?}) is not an absolute path with a plain Host header",
                        http.path, http.host_header
                    )));
                }
                PluginCheck::Http {
                    port: http.port,
                    path: http.path,
                    host_header: http.host_header,
                }
            }
            _ => return Err(bad("a health check has port 0".into())),
        });
    }

    Ok(Contribution {
        plugin: plugin.to_string(),
        grants: spec.allow.clone(),
        files,
        services,
        homeserver,
        locations,
        checks,
    })
}

/// The plugin's services, each held to the capability model with the grants of `spec`,
/// and none writable over the plugin's own `files`.
fn check_services(
    spec: &PluginSpec,
    raw: &[types::Service],
    own: &[&str],
    files: &[PluginFile],
) -> Result<Vec<(String, serde_norway::Value)>, PluginError> {
    let plugin = spec.name.as_str();
    let bad = |message: String| PluginError::BadOutput {
        plugin: plugin.to_string(),
        message,
    };
    let rules = Rules {
        plugin,
        allow: &spec.allow,
        own,
    };
    let mut services: Vec<(String, serde_norway::Value)> = Vec::new();
    for service in raw {
        if !is_service_name(&service.name) {
            return Err(bad(format!(
                "service name {:?} is not a Compose service name (lowercase letters, digits, `-`, `_`, `.`)",
                service.name
            )));
        }
        let mut definition = yaml::parse(&service.definition).map_err(|e| {
            bad(format!(
                "service {} is not accepted YAML: {e}",
                service.name
            ))
        })?;
        if services.iter().any(|(name, _)| name == &service.name) {
            return Err(bad(format!("service {} is returned twice", service.name)));
        }
        let writable = rules.check(&mut definition).map_err(|refusal| {
            let help = match &refusal.grant {
                Some(grant) => format!(
                    "if you trust the plugin with it, grant it in the plugin's [[plugins]] entry: allow = [\"{grant}\"]"
                ),
                None => "synprov never lets a plugin's service do this: ask the plugin's author for a version without it".to_string(),
            };
            PluginError::Capability {
                plugin: plugin.to_string(),
                service: service.name.clone(),
                field: refusal.field,
                why: refusal.why,
                help,
            }
        })?;
        if let Some((mount, file)) = writable.iter().find_map(|mount| {
            let below = |path: &str| {
                path.strip_prefix(mount.source.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            };
            files.iter().find(|f| below(&f.path)).map(|f| (mount, f))
        }) {
            return Err(PluginError::Capability {
                plugin: plugin.to_string(),
                service: service.name.clone(),
                field: mount.field.clone(),
                why: format!(
                    "mounts ./{} writable over the plugin's file {}: the container could put a link there that synprov's next write follows",
                    mount.source, file.path
                ),
                help: "mount that directory read-only (`:ro`), or keep the plugin's files and the service's writable data in separate directories".into(),
            });
        }
        services.push((service.name.clone(), definition));
    }
    Ok(services)
}

/// The plugin's files, each path plain and relative, none twice, none under another's path
/// (`a` and `a/b`), moved under the plugin's directory. Linear in the number of files: a
/// set, not a comparison of every pair.
fn check_files(plugin: &str, raw: Vec<types::File>) -> Result<Vec<PluginFile>, String> {
    let mut seen: HashSet<&str> = HashSet::with_capacity(raw.len());
    for file in &raw {
        check_path(&file.path, 255).map_err(|why| format!("file path {:?} {why}", file.path))?;
        if !seen.insert(&file.path) {
            return Err(format!("file {} is returned twice", file.path));
        }
    }
    for file in &raw {
        let mut parents = file.path.match_indices('/').map(|(at, _)| &file.path[..at]);
        if let Some(parent) = parents.find(|p| seen.contains(p)) {
            return Err(format!(
                "file {parent} is also the directory of its file {}",
                file.path
            ));
        }
    }
    let dir = directory(plugin);
    raw.into_iter()
        .map(|file| {
            if let Some(mode) = file.mode.filter(|m| m & !0o777 != 0) {
                return Err(format!(
                    "file {} has mode {mode:o}: only permission bits (at most 777) are allowed",
                    file.path
                ));
            }
            if is_yaml(&file.path) {
                yaml::parse(&file.contents)
                    .map_err(|e| format!("file {} is not accepted YAML: {e}", file.path))?;
            }
            Ok(PluginFile {
                path: format!("{dir}/{}", file.path),
                contents: file.contents,
                mode: file.mode,
                owner: file.owner,
                used_by: file.used_by,
            })
        })
        .collect()
}

/// A plugin's file path must be plain and relative: it is a path in the plugin's directory
/// (or, read back from a generation record, in the deploy directory), at most `max_len`
/// bytes.
pub(crate) fn check_path(path: &str, max_len: usize) -> Result<(), &'static str> {
    if path.is_empty() || path.len() > max_len {
        return Err("is empty or too long");
    }
    if path.chars().any(|c| c.is_control()) {
        return Err("contains a control character");
    }
    let parsed = Path::new(path);
    if parsed.is_absolute() {
        return Err("is absolute: paths are relative to the plugin's directory");
    }
    if parsed
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
        || path.contains("//")
        || path.ends_with('/')
        || path.split('/').any(|part| part == ".")
    {
        return Err(
            "leaves the plugin's directory or is not a plain relative path (no `..`, `.` or empty parts)",
        );
    }
    Ok(())
}

fn is_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && name.len() <= 63
}

fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside_the_plugins_directory() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "./x",
            "a/./b",
            "a//b",
            "a/",
            "",
            "a\nb",
        ] {
            assert!(check_path(bad, 255).is_err(), "{bad:?} was accepted");
        }
        for good in ["coturn/turnserver.conf", "server.json", "x"] {
            assert!(check_path(good, 255).is_ok(), "{good:?} was refused");
        }
    }

    fn spec() -> PluginSpec {
        PluginSpec {
            name: "p".into(),
            path: "p.wasm".into(),
            hosts: Vec::new(),
            deployments: Vec::new(),
            config: serde_json::Value::Null,
            allow: Vec::new(),
            sha256: None,
        }
    }

    fn contribution() -> types::Contribution {
        types::Contribution {
            files: Vec::new(),
            services: Vec::new(),
            homeserver: String::new(),
            locations: Vec::new(),
            health_checks: Vec::new(),
        }
    }

    fn file(path: &str, contents: &str) -> types::File {
        types::File {
            path: path.into(),
            contents: contents.into(),
            mode: None,
            owner: None,
            used_by: Vec::new(),
        }
    }

    fn refusal(raw: types::Contribution) -> String {
        check(&spec(), raw).unwrap_err().to_string()
    }

    #[test]
    fn files_land_in_the_plugins_own_directory_never_beside_the_compose_file() {
        let mut raw = contribution();
        raw.files.push(file("compose.yaml", "services: {}\n"));
        raw.files
            .push(file("docker-compose.override.yml", "services: {}\n"));
        let checked = check(&spec(), raw).unwrap();
        let paths: Vec<&str> = checked.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "plugins/p/compose.yaml",
                "plugins/p/docker-compose.override.yml"
            ]
        );
    }

    #[test]
    fn a_file_under_another_files_path_is_refused_naming_both() {
        let mut raw = contribution();
        raw.files.push(file("a/b", ""));
        raw.files.push(file("a-b", ""));
        raw.files.push(file("a", ""));
        assert!(
            refusal(raw).contains("plugin `p` returned something synprov refuses: file a is also the directory of its file a/b")
        );
        let mut raw = contribution();
        raw.files.push(file("x", ""));
        raw.files.push(file("x", ""));
        assert!(refusal(raw).contains("file x is returned twice"));
    }

    #[test]
    fn more_files_or_entries_than_a_contribution_may_hold_are_refused_naming_the_limit() {
        let mut raw = contribution();
        raw.files = (0..MAX_FILES).map(|i| file(&i.to_string(), "")).collect();
        assert!(check(&spec(), raw.clone()).is_ok());
        raw.files.push(file("one-more", ""));
        assert_eq!(
            refusal(raw),
            "plugin `p` returned something synprov refuses: it returned 1001 files, more than the limit of 1000"
        );
        let mut raw = contribution();
        raw.health_checks = vec![types::HealthCheck::Tcp(1); MAX_ENTRIES + 1];
        assert!(
            refusal(raw).ends_with("it returned 101 health checks, more than the limit of 100")
        );
    }

    #[test]
    fn more_bytes_than_a_contribution_may_hold_are_refused_naming_the_limit() {
        let mut raw = contribution();
        raw.files = vec![file("a", &"x".repeat(MAX_OUTPUT_BYTES / 2)); 1];
        raw.files.push(file("b", &"x".repeat(MAX_OUTPUT_BYTES / 2)));
        assert!(refusal(raw).ends_with("its output is 1.0 MiB, more than the limit of 1 MiB"));
    }

    #[test]
    fn the_duplicate_check_is_linear_in_the_number_of_files() {
        let raw: Vec<types::File> = (0..160_000)
            .map(|i| file(&format!("{:x}/{:x}", i % 16, i / 16), ""))
            .collect();
        let started = std::time::Instant::now();
        let checked = check_files("p", raw).unwrap();
        assert_eq!(checked.len(), 160_000);
        // Comparing every pair took over a minute; a set takes well under a second.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn yaml_must_parse_where_yaml_is_expected() {
        let mut raw = contribution();
        raw.files.push(file("x.yaml", "a: [1, 2"));
        assert!(refusal(raw).contains("file x.yaml is not accepted YAML"));

        let mut raw = contribution();
        raw.homeserver = "- a list".into();
        assert!(refusal(raw).contains("settings are not a YAML mapping"));

        let mut raw = contribution();
        raw.services.push(types::Service {
            name: "bridge".into(),
            definition: "just text".into(),
        });
        let error = refusal(raw);
        assert!(
            error.contains("plugin `p`, service `bridge`") && error.contains("not a YAML mapping"),
            "{error}"
        );
    }

    /// Eight kilobytes of flat alias fan-out, twenty megabytes once expanded.
    fn alias_bomb() -> String {
        let mut text = format!("image: x\nx-a: &a \"{}\"\nx-b: [", "a".repeat(2000));
        text.push_str(&vec!["*a"; 2000].join(","));
        text.push_str("]\n");
        text
    }

    #[test]
    fn yaml_aliases_and_merge_keys_from_a_plugin_are_refused() {
        let mut raw = contribution();
        raw.services.push(types::Service {
            name: "bomb".into(),
            definition: alias_bomb(),
        });
        let error = refusal(raw);
        assert!(
            error.contains("service bomb is not accepted YAML") && error.contains("alias"),
            "{error}"
        );

        let mut raw = contribution();
        raw.homeserver = "<<: {enable_registration: true}\n".into();
        let error = refusal(raw);
        assert!(error.contains("merge key"), "{error}");

        let mut raw = contribution();
        raw.files.push(file("conf.yml", "a: &x 1\nb: *x\n"));
        let error = refusal(raw);
        assert!(
            error.contains("file conf.yml") && error.contains("alias"),
            "{error}"
        );
    }

    #[test]
    fn a_service_beyond_its_grants_is_refused_naming_plugin_service_and_field() {
        let mut raw = contribution();
        raw.services.push(types::Service {
            name: "relay".into(),
            definition: "image: x\nnetwork_mode: host\n".into(),
        });
        let error = check(&spec(), raw.clone()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "plugin `p`, service `relay`, field `network_mode`: `network_mode: host` shares the host's network namespace, and the plugin is not granted `host-network`"
        );
        let mut granted = spec();
        granted.allow.push(Grant::HostNetwork);
        let checked = check(&granted, raw).unwrap();
        assert_eq!(checked.grants, [Grant::HostNetwork]);
    }

    #[test]
    fn a_writable_mount_over_the_plugins_own_files_is_refused() {
        let mut raw = contribution();
        raw.files.push(file("data/seed.conf", ""));
        raw.services.push(types::Service {
            name: "app".into(),
            definition: "image: x\nvolumes: ['./data:/data']\n".into(),
        });
        let error = check(&spec(), raw.clone()).unwrap_err().to_string();
        assert_eq!(
            error,
            "plugin `p`, service `app`, field `volumes[0]`: mounts ./plugins/p/data writable over the plugin's file plugins/p/data/seed.conf: the container could put a link there that synprov's next write follows"
        );
        raw.services[0].definition =
            "image: x\nvolumes: ['./data:/data:ro', './database:/db']\n".into();
        assert!(check(&spec(), raw).is_ok());
    }

    #[test]
    fn a_location_body_cannot_close_its_block() {
        let location = |path: &str, body: &str| {
            let mut raw = contribution();
            raw.locations.push(types::Location {
                path: path.into(),
                body: body.into(),
            });
            check(&spec(), raw).map(|_| ())
        };
        assert!(location("= /x", "return 200;").is_ok());
        assert!(location("= /x", "return 200; # {\n}\nlocation / { # }").is_err());
        assert!(location("= /x", "} location / { return 404;").is_err());
        assert!(location("= /x {", "return 200;").is_err());
        assert!(location("= /x", "{").is_err());
    }

    #[test]
    fn modes_are_permission_bits_only() {
        let mut raw = contribution();
        raw.files.push(types::File {
            mode: Some(0o4755),
            ..file("x", "")
        });
        assert!(refusal(raw).contains("only permission bits"));
    }

    #[test]
    fn service_names_follow_compose() {
        assert!(is_service_name("coturn"));
        assert!(is_service_name("my-bridge_2"));
        assert!(!is_service_name("Coturn"));
        assert!(!is_service_name("-x"));
        assert!(!is_service_name("a b"));
    }
}
