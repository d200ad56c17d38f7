//! What a plugin returned, checked on its own before rendering uses it: sizes, paths that
//! stay inside the deploy directory, names, YAML that parses, Nginx blocks that stay blocks.
//! Collisions with synprov's own files and services are checked where those are known
//! (`render`).

use std::path::{Component, Path};

use super::PluginError;
use super::sandbox::synprov::plugin::types;

/// The most a plugin may return in one contribution, all strings together.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// A plugin's contribution to one deployment on one host, checked.
#[derive(Debug, Clone)]
pub struct Contribution {
    pub plugin: String,
    pub files: Vec<PluginFile>,
    /// Compose services: name and definition (a mapping).
    pub services: Vec<(String, serde_norway::Value)>,
    /// Settings to merge into homeserver.yaml (a mapping).
    pub homeserver: Option<serde_json::Value>,
    /// Nginx locations: what follows `location`, and the block's directives.
    pub locations: Vec<(String, String)>,
    pub checks: Vec<PluginCheck>,
}

#[derive(Debug, Clone)]
pub struct PluginFile {
    pub path: String,
    pub contents: String,
    pub mode: Option<u32>,
    pub owner: Option<(u32, u32)>,
    pub used_by: Vec<String>,
}

/// A health check a plugin asks for, on the host's loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
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

pub fn check(plugin: &str, raw: types::Contribution) -> Result<Contribution, PluginError> {
    let bad = |message: String| PluginError::BadOutput {
        plugin: plugin.to_string(),
        message,
    };
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

    let mut files = Vec::new();
    for file in raw.files {
        check_path(&file.path).map_err(|why| bad(format!("file path {:?} {why}", file.path)))?;
        if let Some(mode) = file.mode.filter(|m| m & !0o777 != 0) {
            return Err(bad(format!(
                "file {} has mode {mode:o}: only permission bits (at most 777) are allowed",
                file.path
            )));
        }
        if is_yaml(&file.path) {
            parse_yaml(&file.contents)
                .map_err(|e| bad(format!("file {} is not valid YAML: {e}", file.path)))?;
        }
        if files.iter().any(|f: &PluginFile| f.path == file.path) {
            return Err(bad(format!("file {} is returned twice", file.path)));
        }
        files.push(PluginFile {
            path: file.path,
            contents: file.contents,
            mode: file.mode,
            owner: file.owner,
            used_by: file.used_by,
        });
    }

    let mut services = Vec::new();
    for service in raw.services {
        if !is_service_name(&service.name) {
            return Err(bad(format!(
                "service name {:?} is not a Compose service name (lowercase letters, digits, `-`, `_`, `.`)",
                service.name
            )));
        }
        let definition = parse_yaml(&service.definition)
            .map_err(|e| bad(format!("service {} is not valid YAML: {e}", service.name)))?;
        if !definition.is_mapping() {
            return Err(bad(format!(
                "service {} is not a YAML mapping",
                service.name
            )));
        }
        if services.iter().any(|(name, _)| name == &service.name) {
            return Err(bad(format!("service {} is returned twice", service.name)));
        }
        services.push((service.name, definition));
    }

    let homeserver = if raw.homeserver.trim().is_empty() {
        None
    } else {
        let value: serde_json::Value = serde_norway::from_str(&raw.homeserver).map_err(|e| {
            bad(format!(
                "its homeserver.yaml settings are not valid YAML: {e}"
            ))
        })?;
        if !value.is_object() {
            return Err(bad(
                "its homeserver.yaml settings are not a YAML mapping".into()
            ));
        }
        Some(value)
    };

    let mut locations = Vec::new();
    for location in raw.locations {
        check_location(&location.path, &location.body)
            .map_err(|why| bad(format!("Nginx location {:?} {why}", location.path)))?;
        locations.push((location.path, location.body));
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
        files,
        services,
        homeserver,
        locations,
        checks,
    })
}

/// A plugin's file must stay inside the deploy directory and out of synprov's own state.
fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.len() > 255 {
        return Err("is empty or too long");
    }
    if path.chars().any(|c| c.is_control()) {
        return Err("contains a control character");
    }
    let parsed = Path::new(path);
    if parsed.is_absolute() {
        return Err("is absolute: paths are relative to the deploy directory");
    }
    if parsed
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
        || path.contains("//")
        || path.ends_with('/')
    {
        return Err(
            "leaves the deploy directory or is not a plain relative path (no `..`, `.` or empty parts)",
        );
    }
    if path.starts_with(".synprov") {
        return Err("is inside .synprov, synprov's own state");
    }
    Ok(())
}

fn check_location(path: &str, body: &str) -> Result<(), &'static str> {
    if path.trim().is_empty() || path.contains(['{', '}', ';', '\n', '\r', '#']) {
        return Err("is empty or holds `{`, `}`, `;`, `#` or a line break");
    }
    let mut depth = 0i32;
    for c in body.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return Err("has a body that closes its block (unbalanced `}`)");
        }
    }
    if depth != 0 {
        return Err("has a body with unbalanced braces");
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

fn parse_yaml(text: &str) -> Result<serde_norway::Value, serde_norway::Error> {
    serde_norway::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_stay_inside_the_deploy_directory() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "./x",
            "a//b",
            "a/",
            "",
            ".synprov/manifest",
            "a\nb",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["coturn/turnserver.conf", "well-known/server.json", "x"] {
            assert!(check_path(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn a_location_body_cannot_close_its_block() {
        assert!(check_location("= /x", "return 200;").is_ok());
        assert!(check_location("= /x", "if ($a) { return 200; }").is_ok());
        assert!(check_location("= /x", "} location / { return 404;").is_err());
        assert!(check_location("= /x {", "return 200;").is_err());
        assert!(check_location("= /x", "{").is_err());
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

    fn refusal(raw: types::Contribution) -> String {
        check("p", raw).unwrap_err().to_string()
    }

    #[test]
    fn yaml_must_parse_where_yaml_is_expected() {
        let mut raw = contribution();
        raw.files.push(types::File {
            path: "x.yaml".into(),
            contents: "a: [1, 2".into(),
            mode: None,
            owner: None,
            used_by: Vec::new(),
        });
        assert!(refusal(raw).contains("file x.yaml is not valid YAML"));

        let mut raw = contribution();
        raw.homeserver = "- a list".into();
        assert!(refusal(raw).contains("settings are not a YAML mapping"));

        let mut raw = contribution();
        raw.services.push(types::Service {
            name: "bridge".into(),
            definition: "just text".into(),
        });
        assert!(refusal(raw).contains("service bridge is not a YAML mapping"));
    }

    #[test]
    fn modes_are_permission_bits_only() {
        let mut raw = contribution();
        raw.files.push(types::File {
            path: "x".into(),
            contents: String::new(),
            mode: Some(0o4755),
            owner: None,
            used_by: Vec::new(),
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
