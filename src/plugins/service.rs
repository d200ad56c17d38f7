//! A plugin's Compose service, held to the capability model.
//!
//! The WebAssembly sandbox protects the machine synprov runs on; a service definition is
//! what a plugin can do to the hosts it is applied to. So a definition is read as an
//! allow-list: every key must be one synprov understands, and by default the service runs
//! confined: no host namespaces, no privileges, added capabilities or devices, no ports
//! below 1024 on the host, and no bind mount outside the plugin's own directory
//! (`plugins/NAME/` under the deploy directory). What a plugin needs beyond that, the
//! operator grants in its `[[plugins]]` entry ([`Grant`]).
//!
//! Relative paths in a definition (`./data:/data`, `env_file: app.env`) are the plugin's
//! own directory, as its file paths are: they are rewritten to `./plugins/NAME/...`.

mod mounts;

use serde_norway::{Mapping, Value};

pub use mounts::WritableMount;

use crate::inventory::Grant;

/// What the service may do: whose it is, what was granted, and its sibling services.
pub struct Rules<'a> {
    pub plugin: &'a str,
    pub allow: &'a [Grant],
    /// The plugin's own services: the only ones `network_mode: service:X` may join.
    pub own: &'a [&'a str],
}

/// Why a service definition is refused: the field, what is wrong, and the grant that would
/// allow it (None when nothing can).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub why: String,
    pub grant: Option<Grant>,
}

/// The keys a plugin's service may set.
pub const KEYS: [&str; 37] = [
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "restart",
    "user",
    "working_dir",
    "hostname",
    "stop_signal",
    "stop_grace_period",
    "platform",
    "shm_size",
    "mem_limit",
    "mem_reservation",
    "cpus",
    "pids_limit",
    "init",
    "read_only",
    "tty",
    "stdin_open",
    "expose",
    "ports",
    "volumes",
    "tmpfs",
    "depends_on",
    "healthcheck",
    "ulimits",
    "network_mode",
    "pid",
    "ipc",
    "privileged",
    "cap_add",
    "cap_drop",
    "devices",
    "security_opt",
    "extra_hosts",
];

/// Keys that are refused whatever is granted, and why.
const NEVER: [(&str, &str); 13] = [
    (
        "build",
        "builds an image on the host from files synprov does not check",
    ),
    (
        "extends",
        "pulls in a service definition synprov does not see",
    ),
    ("volumes_from", "mounts the volumes of another service"),
    ("userns_mode", "leaves Docker's user namespace settings"),
    ("uts", "shares the host's UTS namespace"),
    ("cgroup", "shares the host's cgroup namespace"),
    ("cgroup_parent", "moves the container into another cgroup"),
    (
        "configs",
        "reads files declared outside the plugin's directory",
    ),
    (
        "secrets",
        "reads files declared outside the plugin's directory",
    ),
    ("sysctls", "changes kernel parameters"),
    (
        "container_name",
        "fixes a container name, which collides across deployments",
    ),
    ("networks", "joins networks other than the deployment's"),
    ("profiles", "hides the service from `docker compose up`"),
];

fn refuse(field: impl Into<String>, why: impl Into<String>) -> Refusal {
    Refusal {
        field: field.into(),
        why: why.into(),
        grant: None,
    }
}

impl Rules<'_> {
    fn need(&self, grant: Grant, field: impl Into<String>, why: &str) -> Result<(), Refusal> {
        if self.allow.contains(&grant) {
            return Ok(());
        }
        Err(Refusal {
            field: field.into(),
            why: format!("{why}, and the plugin is not granted `{grant}`"),
            grant: Some(grant),
        })
    }

    /// Checks `definition` and rewrites its relative paths into the plugin's directory;
    /// returns the bind mounts the container may write to.
    pub fn check(&self, definition: &mut Value) -> Result<Vec<WritableMount>, Refusal> {
        no_interpolation("", definition)?;
        let Value::Mapping(map) = definition else {
            return Err(refuse("definition", "is not a YAML mapping"));
        };
        if !map.contains_key("image") {
            return Err(refuse(
                "image",
                "is missing: a plugin's service runs an image",
            ));
        }
        let mut writable = Vec::new();
        for (key, value) in map.iter_mut() {
            let Some(key) = key.as_str() else {
                return Err(refuse(format!("{key:?}"), "a key is not a string"));
            };
            if key == "volumes" {
                writable = self.volumes(value)?;
            } else {
                self.field(key, value)?;
            }
        }
        Ok(writable)
    }

    fn field(&self, key: &str, value: &mut Value) -> Result<(), Refusal> {
        if let Some((_, why)) = NEVER.iter().find(|(k, _)| *k == key) {
            return Err(refuse(
                key,
                format!("{why}: a plugin's service may not set it"),
            ));
        }
        let shape = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(refuse(key, format!("is not {what}")))
            }
        };
        match key {
            "image" => shape(
                value
                    .as_str()
                    .is_some_and(|s| crate::inventory::ImageRef::parse(s).is_ok()),
                "an image reference (the OCI grammar: `name[:tag][@digest]`)",
            ),
            "command" | "entrypoint" | "tmpfs" => shape(
                value.is_string() || strings(value),
                "a string or a list of strings",
            ),
            "environment" | "extra_hosts" => shape(
                strings(value)
                    || value.as_mapping().is_some_and(|m| {
                        m.iter()
                            .all(|(k, v)| k.is_string() && (is_scalar(v) || v.is_null()))
                    }),
                "a list of strings or a mapping of names to plain values",
            ),
            "restart" => shape(
                value.as_str().is_some_and(|s| {
                    matches!(s, "no" | "always" | "on-failure" | "unless-stopped")
                        || s.strip_prefix("on-failure:")
                            .is_some_and(|n| n.parse::<u32>().is_ok())
                }),
                "one of no, always, on-failure[:N], unless-stopped",
            ),
            "expose" | "cap_drop" => shape(
                value.as_sequence().is_some_and(|s| s.iter().all(is_scalar)),
                "a list",
            ),
            "depends_on" => shape(
                strings(value)
                    || value.as_mapping().is_some_and(|m| {
                        m.iter().all(|(k, v)| {
                            k.is_string()
                                && v.as_mapping().is_some_and(|o| {
                                    plain_keys(o, &["condition", "restart", "required"])
                                })
                        })
                    }),
                "a list of services or a mapping of services to conditions",
            ),
            "healthcheck" => shape(
                value.as_mapping().is_some_and(|m| {
                    m.iter().all(|(k, v)| {
                        k.as_str().is_some_and(|k| {
                            [
                                "test",
                                "interval",
                                "timeout",
                                "retries",
                                "start_period",
                                "start_interval",
                                "disable",
                            ]
                            .contains(&k)
                        }) && (is_scalar(v) || strings(v))
                    })
                }),
                "a healthcheck (test, interval, timeout, retries, start_period, start_interval, disable)",
            ),
            "ulimits" => shape(
                value.as_mapping().is_some_and(|m| {
                    m.iter().all(|(k, v)| {
                        k.is_string()
                            && (v.is_number()
                                || v.as_mapping()
                                    .is_some_and(|o| plain_keys(o, &["soft", "hard"])))
                    })
                }),
                "a mapping of limits to numbers or soft/hard pairs",
            ),
            "env_file" => self.env_files(value),
            "ports" => self.ports(value),
            "network_mode" => self.namespace(key, value, Grant::HostNetwork, &["none", "bridge"]),
            "pid" => self.namespace(key, value, Grant::HostPid, &[]),
            "ipc" => self.namespace(
                key,
                value,
                Grant::HostIpc,
                &["none", "private", "shareable"],
            ),
            "privileged" => match value.as_bool() {
                Some(false) => Ok(()),
                Some(true) => self.need(
                    Grant::Privileged,
                    key,
                    "`privileged: true` makes the container root on the host",
                ),
                None => shape(false, "true or false"),
            },
            "cap_add" => self.capabilities(value),
            "devices" => self.devices(value),
            "security_opt" => {
                let list = value
                    .as_sequence()
                    .ok_or_else(|| refuse(key, "is not a list"))?;
                for (i, option) in list.iter().enumerate() {
                    if !matches!(
                        option.as_str(),
                        Some("no-new-privileges" | "no-new-privileges:true")
                    ) {
                        return Err(refuse(
                            format!("security_opt[{i}]"),
                            format!(
                                "{} may weaken the container's confinement: only `no-new-privileges` is allowed",
                                show(option)
                            ),
                        ));
                    }
                }
                Ok(())
            }
            other if KEYS.contains(&other) => shape(is_scalar(value), "a plain value"),
            other => Err(refuse(
                other,
                format!(
                    "is not a Compose key synprov lets a plugin's service set (allowed: {})",
                    KEYS.join(", ")
                ),
            )),
        }
    }

    /// `network_mode`, `pid`, `ipc`: the host's namespace only when granted, another
    /// service's only when it is the plugin's own.
    fn namespace(
        &self,
        key: &str,
        value: &Value,
        grant: Grant,
        plain: &[&str],
    ) -> Result<(), Refusal> {
        let mode = value
            .as_str()
            .ok_or_else(|| refuse(key, "is not a string"))?;
        if mode == "host" {
            let what = match grant {
                Grant::HostNetwork => "network",
                Grant::HostPid => "process",
                _ => "IPC",
            };
            return self.need(
                grant,
                key,
                &format!("`{key}: host` shares the host's {what} namespace"),
            );
        }
        if plain.contains(&mode) {
            return Ok(());
        }
        if let Some(service) = mode.strip_prefix("service:")
            && self.own.contains(&service)
        {
            return Ok(());
        }
        Err(refuse(
            key,
            format!(
                "`{key}: {mode}` joins a namespace that is not the plugin's: only `host` (when granted), another service of the same plugin (`service:NAME`){} are allowed",
                if plain.is_empty() {
                    String::new()
                } else {
                    format!(" or {}", plain.join(", "))
                }
            ),
        ))
    }

    fn capabilities(&self, value: &Value) -> Result<(), Refusal> {
        let list = value
            .as_sequence()
            .ok_or_else(|| refuse("cap_add", "is not a list"))?;
        for (i, name) in list.iter().enumerate() {
            let field = format!("cap_add[{i}]");
            let text = name.as_str().unwrap_or_default();
            if text.eq_ignore_ascii_case("ALL") || text.eq_ignore_ascii_case("CAP_ALL") {
                self.need(
                    Grant::Privileged,
                    &field,
                    "`cap_add: ALL` gives the container every capability",
                )?;
                continue;
            }
            let cap = Grant::capability(text).ok_or_else(|| {
                refuse(&field, format!("{} is not a Linux capability", show(name)))
            })?;
            self.need(
                Grant::Capability(cap),
                &field,
                &format!("`cap_add: {text}` adds a capability"),
            )?;
        }
        Ok(())
    }

    fn devices(&self, value: &Value) -> Result<(), Refusal> {
        let list = value
            .as_sequence()
            .ok_or_else(|| refuse("devices", "is not a list"))?;
        for (i, device) in list.iter().enumerate() {
            let field = format!("devices[{i}]");
            let text = device
                .as_str()
                .ok_or_else(|| refuse(&field, "is not a string (`/dev/HOST[:/dev/CONTAINER]`)"))?;
            let host = text.split(':').next().unwrap_or_default();
            let grant = Grant::parse(&format!("device:{host}"))
                .map_err(|_| refuse(&field, format!("`{text}` is not a device under /dev")))?;
            self.need(
                grant,
                &field,
                &format!("`{text}` gives the container a device of the host"),
            )?;
        }
        Ok(())
    }

    fn ports(&self, value: &Value) -> Result<(), Refusal> {
        let list = value
            .as_sequence()
            .ok_or_else(|| refuse("ports", "is not a list"))?;
        for (i, port) in list.iter().enumerate() {
            let field = format!("ports[{i}]");
            let published = match port {
                Value::Number(_) => None,
                Value::String(text) => short_port(text).ok_or_else(|| {
                    refuse(
                        &field,
                        format!(
                            "`{text}` is not a port mapping (`[IP:]HOST:CONTAINER[/PROTOCOL]`)"
                        ),
                    )
                })?,
                Value::Mapping(map) => {
                    if !plain_keys(
                        map,
                        &[
                            "target",
                            "published",
                            "host_ip",
                            "protocol",
                            "mode",
                            "name",
                            "app_protocol",
                        ],
                    ) {
                        return Err(refuse(
                            &field,
                            "is not a port mapping Compose's long syntax allows",
                        ));
                    }
                    match map.get("published") {
                        None => None,
                        Some(Value::Number(n)) => {
                            let p = n
                                .as_u64()
                                .and_then(|p| u16::try_from(p).ok())
                                .ok_or_else(|| refuse(&field, "publishes a port out of range"))?;
                            Some((p, p))
                        }
                        Some(Value::String(s)) => Some(port_range(s).ok_or_else(|| {
                            refuse(&field, format!("publishes `{s}`, not a port or range"))
                        })?),
                        Some(_) => {
                            return Err(refuse(&field, "publishes something that is not a port"));
                        }
                    }
                }
                _ => return Err(refuse(&field, "is not a port mapping")),
            };
            if let Some((low, high)) = published
                && low < 1024
                && high >= 1
            {
                self.need(
                    Grant::PrivilegedPorts,
                    &field,
                    &format!("it publishes port {} on the host, below 1024", low.max(1)),
                )?;
            }
        }
        Ok(())
    }
}

/// Compose interpolates `$NAME` and `${NAME}` everywhere in the file: every `$` must be
/// written `$$` (a literal `$`).
fn no_interpolation(field: &str, value: &Value) -> Result<(), Refusal> {
    let check = |field: &str, text: &str| {
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            if rest[at + 1..].starts_with('$') {
                rest = &rest[at + 2..];
            } else {
                return Err(refuse(
                    field,
                    format!(
                        "holds `{}`, which Compose would interpolate: write `$$` for a literal `$`",
                        text.escape_debug()
                    ),
                ));
            }
        }
        Ok(())
    };
    let child = |key: &str| {
        if field.is_empty() {
            key.to_string()
        } else {
            format!("{field}.{key}")
        }
    };
    match value {
        Value::String(text) => check(field, text),
        Value::Sequence(list) => list
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| no_interpolation(&format!("{field}[{i}]"), v)),
        Value::Mapping(map) => map.iter().try_for_each(|(k, v)| {
            let key = k.as_str().unwrap_or_default();
            check(&child(key), key)?;
            no_interpolation(&child(key), v)
        }),
        Value::Tagged(tagged) => Err(refuse(
            field,
            format!(
                "has the tag `{}`: a plugin's service may not use YAML tags",
                tagged.tag
            ),
        )),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn strings(value: &Value) -> bool {
    value
        .as_sequence()
        .is_some_and(|s| s.iter().all(Value::is_string))
}

/// Every key of `map` is one of `keys`, and every value plain.
fn plain_keys(map: &Mapping, keys: &[&str]) -> bool {
    map.iter().all(|(k, v)| {
        k.as_str().is_some_and(|k| keys.contains(&k)) && (is_scalar(v) || v.is_null())
    })
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("`{s}`"),
        other => format!(
            "`{}`",
            serde_norway::to_string(other)
                .unwrap_or_default()
                .trim_end()
        ),
    }
}

/// The host ports a short-syntax mapping publishes (`Some(None)` when it publishes none: a
/// container port only, or a random host port); None when the text is not a mapping.
fn short_port(text: &str) -> Option<Option<(u16, u16)>> {
    let mapping = match text.rsplit_once('/') {
        Some((mapping, "tcp" | "udp" | "sctp")) => mapping,
        Some(_) => return None,
        None => text,
    };
    let Some((rest, container)) = mapping.rsplit_once(':') else {
        port_range(mapping)?;
        return Some(None);
    };
    port_range(container)?;
    let host = match rest.rsplit_once(':') {
        Some((ip, host)) => {
            ip.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .ok()?;
            host
        }
        None => rest,
    };
    if host.is_empty() {
        return Some(None);
    }
    port_range(host).map(Some)
}

fn port_range(text: &str) -> Option<(u16, u16)> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let (low, high) = (low.parse::<u16>().ok()?, high.parse::<u16>().ok()?);
    (low <= high).then_some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(definition: &str, allow: &[Grant]) -> Result<Value, Refusal> {
        let mut value: Value = serde_norway::from_str(definition).unwrap();
        Rules {
            plugin: "p",
            allow,
            own: &["p-db"],
        }
        .check(&mut value)?;
        Ok(value)
    }

    fn refused(definition: &str) -> Refusal {
        check(definition, &[]).unwrap_err()
    }

    #[test]
    fn each_capability_is_refused_by_default_and_allowed_by_its_grant() {
        let cases = [
            ("network_mode: host", "network_mode", Grant::HostNetwork),
            ("pid: host", "pid", Grant::HostPid),
            ("ipc: host", "ipc", Grant::HostIpc),
            ("privileged: true", "privileged", Grant::Privileged),
            ("cap_add: [ALL]", "cap_add[0]", Grant::Privileged),
            (
                "cap_add: [cap_net_admin]",
                "cap_add[0]",
                Grant::Capability("NET_ADMIN"),
            ),
            (
                "devices: ['/dev/net/tun:/dev/net/tun']",
                "devices[0]",
                Grant::Device("/dev/net/tun".into()),
            ),
            ("ports: ['80:80']", "ports[0]", Grant::PrivilegedPorts),
            (
                "ports: ['127.0.0.1:53:53/udp']",
                "ports[0]",
                Grant::PrivilegedPorts,
            ),
            (
                "ports: ['[::1]:1-2000:1-2000']",
                "ports[0]",
                Grant::PrivilegedPorts,
            ),
            (
                "ports: [{target: 80, published: 443}]",
                "ports[0]",
                Grant::PrivilegedPorts,
            ),
        ];
        for (text, field, grant) in cases {
            let definition = format!("image: x\n{text}\n");
            let refusal = refused(&definition);
            assert_eq!(refusal.field, field, "{text}");
            assert_eq!(refusal.grant.as_ref(), Some(&grant), "{text}");
            assert!(
                check(&definition, std::slice::from_ref(&grant)).is_ok(),
                "{text} with {grant}"
            );
        }
    }

    #[test]
    fn what_no_grant_allows_is_refused_naming_the_field() {
        let cases = [
            (
                "volumes: ['/:/host']",
                "volumes[0]",
                "outside the plugin's own directory",
            ),
            (
                "volumes: ['/var/run/docker.sock:/s']",
                "volumes[0]",
                "Docker socket",
            ),
            ("volumes: ['./../..:/up']", "volumes[0]", "outside"),
            ("volumes: ['pgsql:/data']", "volumes[0]", "named volume"),
            (
                "volumes: [{type: bind, source: /etc, target: /etc}]",
                "volumes[0]",
                "outside",
            ),
            ("volumes: ['./x:/x:rshared']", "volumes[0]", "mode"),
            (
                "network_mode: 'container:abc'",
                "network_mode",
                "not the plugin's",
            ),
            (
                "network_mode: 'service:synapse'",
                "network_mode",
                "not the plugin's",
            ),
            ("pid: 'service:db'", "pid", "not the plugin's"),
            (
                "security_opt: ['seccomp:unconfined']",
                "security_opt[0]",
                "confinement",
            ),
            (
                "security_opt: ['apparmor=unconfined']",
                "security_opt[0]",
                "confinement",
            ),
            ("userns_mode: host", "userns_mode", "may not set it"),
            ("build: .", "build", "may not set it"),
            (
                "extends: {file: /etc/x.yml, service: a}",
                "extends",
                "may not set it",
            ),
            (
                "env_file: /etc/shadow",
                "env_file",
                "not a file in the plugin's own directory",
            ),
            ("env_file: ['../.synapse.env']", "env_file[0]", "not a file"),
            ("configs: [a]", "configs", "may not set it"),
            ("secrets: [a]", "secrets", "may not set it"),
            (
                "labels: {a: b}",
                "labels",
                "is not a Compose key synprov lets",
            ),
            (
                "cap_add: [EVERYTHING]",
                "cap_add[0]",
                "not a Linux capability",
            ),
            (
                "environment: {A: '${HOME}'}",
                "environment.A",
                "interpolate",
            ),
            ("command: !reset []", "command", "tag"),
        ];
        for (text, field, why) in cases {
            let refusal = refused(&format!("image: x\n{text}\n"));
            assert_eq!(refusal.field, field, "{text}: {refusal:?}");
            assert!(refusal.why.contains(why), "{text}: {}", refusal.why);
        }
        assert_eq!(refused("command: [a]").field, "image");
    }

    #[test]
    fn what_the_confined_default_allows_passes() {
        let value = check(
            "image: x\nnetwork_mode: 'service:p-db'\nenvironment: {PRICE: '$$5'}\nports: ['8448:8448', '127.0.0.1::80', '[::1]:1024-1030:80-86/udp', 9000]\ncap_drop: [ALL]\nsecurity_opt: [no-new-privileges]\nrestart: unless-stopped\n",
            &[],
        )
        .unwrap();
        assert_eq!(value["environment"]["PRICE"].as_str(), Some("$$5"));
    }
}
