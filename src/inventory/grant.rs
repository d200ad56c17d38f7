//! What an operator may grant a plugin beyond the default (`allow = [...]` in `[[plugins]]`).
//!
//! By default a plugin's Compose services run confined, as synprov's own services do: every
//! capability dropped (`cap_drop: [ALL]`), `no-new-privileges`, process and memory limits,
//! no host namespaces, no devices, no ports below 1024 on the host. A grant lifts exactly one of
//! those limits, so that what a plugin may do to a host is written in the inventory, where
//! the operator reads it, and not decided by the plugin's author.

use std::fmt;

/// One capability an operator grants a plugin. The set is closed: a grant synprov does not
/// know is an error, never a no-op.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grant {
    /// `network_mode: host`: the service shares the host's network stack.
    HostNetwork,
    /// `pid: host`: the service sees (and may signal) every process of the host.
    HostPid,
    /// `ipc: host`: the service shares the host's IPC namespace.
    HostIpc,
    /// `privileged: true`: the service is root on the host in all but name.
    Privileged,
    /// Ports below 1024 published on the host.
    PrivilegedPorts,
    /// One Linux capability in `cap_add` (its name without `CAP_`): the one capability the
    /// service gets back of those all services drop.
    Capability(&'static str),
    /// One device node of the host in `devices` (an absolute path under /dev).
    Device(String),
}

/// The grants without an argument, as the inventory spells them.
const PLAIN: [(&str, Grant); 5] = [
    ("host-network", Grant::HostNetwork),
    ("host-pid", Grant::HostPid),
    ("host-ipc", Grant::HostIpc),
    ("privileged", Grant::Privileged),
    ("privileged-ports", Grant::PrivilegedPorts),
];

/// Every spelling a grant can have, for "did you mean" and the error's help.
pub const SPELLINGS: [&str; 7] = [
    "host-network",
    "host-pid",
    "host-ipc",
    "privileged",
    "privileged-ports",
    "cap:NAME",
    "device:/dev/NAME",
];

/// The Linux capabilities (capabilities(7)), without the `CAP_` prefix.
pub const CAPABILITIES: [&str; 41] = [
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// Why a grant's text is refused, and a close spelling when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantError {
    pub message: String,
    pub suggestion: Option<String>,
}

impl Grant {
    /// A capability's name as Docker accepts it (`net_admin`, `CAP_NET_ADMIN`), in the form
    /// of [`CAPABILITIES`]; None when it is not one.
    pub fn capability(name: &str) -> Option<&'static str> {
        let upper = name.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        CAPABILITIES.iter().copied().find(|c| *c == bare)
    }

    /// Parses a grant as the inventory spells it.
    pub fn parse(text: &str) -> Result<Grant, GrantError> {
        if let Some((_, grant)) = PLAIN.iter().find(|(name, _)| *name == text) {
            return Ok(grant.clone());
        }
        if let Some(name) = text.strip_prefix("cap:") {
            return Grant::capability(name)
                .map(Grant::Capability)
                .ok_or_else(|| {
                    let close =
                        super::error::did_you_mean(&name.to_ascii_uppercase(), &CAPABILITIES);
                    GrantError {
                        message: format!("`{name}` is not a Linux capability"),
                        suggestion: close.map(|c| format!("cap:{c}")),
                    }
                });
        }
        if let Some(path) = text.strip_prefix("device:") {
            return device(path).map(Grant::Device).ok_or_else(|| GrantError {
                message: format!("`{path}` is not a device path under /dev"),
                suggestion: None,
            });
        }
        Err(GrantError {
            message: format!("`{text}` is not a grant synprov knows"),
            suggestion: super::error::did_you_mean(text, &SPELLINGS),
        })
    }
}

/// An absolute, plain path under /dev: no `.`, `..` or empty parts, no odd characters.
fn device(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/dev/")?;
    let plain = rest.split('/').all(|part| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    });
    plain.then(|| path.to_string())
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Capability(name) => write!(f, "cap:{name}"),
            Grant::Device(path) => write!(f, "device:{path}"),
            plain => {
                let name = PLAIN
                    .iter()
                    .find(|(_, g)| g == plain)
                    .map_or("?", |(name, _)| *name);
                f.write_str(name)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grant_reads_back_as_it_is_written() {
        for text in [
            "host-network",
            "host-pid",
            "host-ipc",
            "privileged",
            "privileged-ports",
            "cap:NET_ADMIN",
            "device:/dev/net/tun",
        ] {
            assert_eq!(Grant::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn a_capability_is_named_as_docker_accepts_it() {
        assert_eq!(
            Grant::parse("cap:cap_net_raw"),
            Ok(Grant::Capability("NET_RAW"))
        );
        assert_eq!(Grant::capability("CAP_SYS_ADMIN"), Some("SYS_ADMIN"));
        assert_eq!(Grant::capability("ALL"), None);
    }

    #[test]
    fn an_unknown_grant_is_refused_with_a_close_spelling() {
        let error = Grant::parse("host-netwrok").unwrap_err();
        assert_eq!(error.suggestion.as_deref(), Some("host-network"));
        let error = Grant::parse("cap:NET_ADMN").unwrap_err();
        assert_eq!(error.suggestion.as_deref(), Some("cap:NET_ADMIN"));
        assert!(Grant::parse("everything").is_err());
    }

    #[test]
    fn a_device_grant_names_a_plain_path_under_dev() {
        for bad in [
            "device:/etc/shadow",
            "device:/dev/../etc",
            "device:/dev/",
            "device:/dev//sda",
            "device:dev/sda",
        ] {
            assert!(Grant::parse(bad).is_err(), "{bad}");
        }
    }
}
