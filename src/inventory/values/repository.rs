//! Where a remote backup repository lives: an SSH server's account and directory, and the
//! host key that server must show.

use base64::Engine;

use super::{DeployDir, UserName, check_dns_name};

/// `user@host:/path` of an SSH server outside the inventory: restic reaches it over SFTP.
/// The host is a DNS name, an IPv4 address or a bracketed IPv6 address; the path an
/// absolute directory of its own (the grammar of a deploy directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpTarget {
    pub user: UserName,
    pub host: String,
    pub path: DeployDir,
}

impl SftpTarget {
    pub fn parse(text: &str) -> Result<SftpTarget, String> {
        let shape = || "write it as user@host:/directory".to_string();
        let (user, rest) = text.split_once('@').ok_or_else(shape)?;
        let (host, path) = match rest.strip_prefix('[') {
            Some(bracketed) => {
                let (address, path) = bracketed.split_once("]:").ok_or_else(shape)?;
                address
                    .parse::<std::net::Ipv6Addr>()
                    .map_err(|_| format!("`[{address}]` is not an IPv6 address"))?;
                (format!("[{address}]"), path)
            }
            None => {
                let (host, path) = rest.split_once(':').ok_or_else(shape)?;
                if host.parse::<std::net::Ipv4Addr>().is_err() {
                    check_dns_name(host).map_err(|why| format!("host `{host}`: {why}"))?;
                }
                (host.to_string(), path)
            }
        };
        Ok(SftpTarget {
            user: UserName::parse(user).map_err(|why| format!("user `{user}`: {why}"))?,
            host,
            path: DeployDir::parse(path).map_err(|why| format!("directory `{path}`: {why}"))?,
        })
    }
}

/// An SSH host key as a known_hosts line holds it after the host names (`ssh-ed25519
/// AAAA...`): a key type OpenSSH offers and its base64 blob, which names the same type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey(String);

super::checked_string!(HostKey);

/// The key types of OpenSSH's default `HostKeyAlgorithms`, as a blob names them.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

impl HostKey {
    pub fn parse(text: &str) -> Result<HostKey, String> {
        let mut words = text.split_ascii_whitespace();
        let (Some(kind), Some(blob), None) = (words.next(), words.next(), words.next()) else {
            return Err(
                "write the key type and the key, as `ssh-keyscan HOST` prints them after the host name"
                    .into(),
            );
        };
        if !KEY_TYPES.contains(&kind) {
            return Err(format!(
                "`{kind}` is not a host key type (one of {})",
                KEY_TYPES.join(", ")
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| "the key is not base64".to_string())?;
        // The blob starts with its type, as an SSH string: a 4-byte length, then the name.
        let named = bytes
            .get(4..4 + kind.len())
            .filter(|_| bytes[..4] == (kind.len() as u32).to_be_bytes());
        if named != Some(kind.as_bytes()) {
            return Err(format!("the key is not a {kind} key"));
        }
        Ok(HostKey(format!("{kind} {blob}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ed25519 key of OpenSSH's test suite.
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF8pSLiigXVDjCu0wJpAUHLAGBExEk8hYHnSmkVrV/W7";

    #[test]
    fn sftp_targets_name_a_user_a_host_and_a_directory() {
        let target = SftpTarget::parse("backup@nas.example.org:/srv/restic/hs1").unwrap();
        assert_eq!(
            (&*target.user, target.host.as_str(), &*target.path),
            ("backup", "nas.example.org", "/srv/restic/hs1")
        );
        assert_eq!(
            SftpTarget::parse("b@[2001:db8::1]:/srv/r").unwrap().host,
            "[2001:db8::1]"
        );
        for (bad, why) in [
            ("nas.example.org:/srv/r", "user@host:/directory"),
            ("b@nas.example.org", "user@host:/directory"),
            ("b@nas example:/srv/r", "host `nas example`"),
            ("b@nas:srv/r", "not an absolute path"),
            ("b@nas:/srv/r;reboot", "directory `/srv/r;reboot`"),
            ("-oProxyCommand=x@nas:/srv/r", "user `-oProxyCommand=x`"),
            ("b@[nas]:/srv/r", "not an IPv6 address"),
        ] {
            let err = SftpTarget::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn host_keys_are_a_known_type_and_a_blob_of_that_type() {
        assert_eq!(&*HostKey::parse(&format!("  {ED25519} ")).unwrap(), ED25519);
        let blob = ED25519.split(' ').nth(1).unwrap();
        for (bad, why) in [
            (blob.to_string(), "write the key type"),
            (format!("ssh-dss {blob}"), "not a host key type"),
            (format!("ssh-rsa {blob}"), "not a ssh-rsa key"),
            ("ssh-ed25519 !!!".to_string(), "not base64"),
            (format!("{ED25519} comment"), "write the key type"),
        ] {
            let err = HostKey::parse(&bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
