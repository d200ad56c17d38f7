//! Names from the inventory that become names elsewhere: directories, Compose projects,
//! container names, log lines, user accounts.

use super::checked_string;

/// A host (or plugin, or group) name: 1 to 63 letters, digits, `.`, `_` and `-`, starting
/// with a letter or digit. It names a directory of `synprov render --out`, so `.`, `..` and
/// anything with a `/` are out, and an option-like `-x` is too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

checked_string!(HostName);

impl HostName {
    pub fn parse(text: &str) -> Result<HostName, String> {
        label(text, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
        })?;
        Ok(HostName(text.to_string()))
    }
}

/// A deployment name: it is the Compose project name, so Compose's grammar (lowercase
/// letters, digits, `_` and `-`, starting with a letter or digit), at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeploymentName(String);

checked_string!(DeploymentName);

impl DeploymentName {
    pub fn parse(text: &str) -> Result<DeploymentName, String> {
        label(text, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-')
        })?;
        Ok(DeploymentName(text.to_string()))
    }
}

/// A login name on the hosts, as POSIX and Debian's `adduser` allow it: it is offered to
/// sshd and appears in `sudo` and `chown` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

checked_string!(UserName);

impl UserName {
    pub fn parse(text: &str) -> Result<UserName, String> {
        let mut chars = text.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        if !first_ok
            || text.len() > 32
            || !chars
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        {
            return Err(
                "a user name has 1 to 32 lowercase letters, digits, `_` and `-`, and starts with a letter or `_`"
                    .into(),
            );
        }
        Ok(UserName(text.to_string()))
    }

    /// The default login.
    pub fn root() -> UserName {
        UserName("root".into())
    }
}

/// A DNS name as RFC 1123 allows it.
pub fn check_dns_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 253 {
        return Err("a DNS name has 1 to 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("every dot-separated part needs 1 to 63 characters");
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("only letters, digits, `-` and `.` are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a part cannot start or end with `-`");
        }
    }
    Ok(())
}

/// A Matrix server name: a DNS name, an IPv4 address or a bracketed IPv6 address, with an
/// optional port (Matrix specification, appendix "Server name"); also the host and port of
/// a URL. The port is digits only (Rust's parser would take `+443`).
pub fn check_server_name(name: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = name.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs a closing `]`")?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| "not a valid IPv6 address")?;
        if !after.is_empty() && !after.starts_with(':') {
            return Err("only a `:PORT` may follow the `]` of an IPv6 address");
        }
        (None, after.strip_prefix(':'))
    } else {
        match name.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(name), None),
        }
    };
    if let Some(port) = port {
        port.parse::<u16>()
            .ok()
            .filter(|p| *p > 0 && port.chars().all(|c| c.is_ascii_digit()))
            .ok_or("the port must be a number from 1 to 65535")?;
    }
    host.map_or(Ok(()), check_host)
}

/// A host as a URL or a resolver reads it: an IPv4 address in dotted-quad form, or a DNS
/// name whose last label is not a number. A name whose last label is numeric (`1.2.3`,
/// `123`, `foo.0x7f`) is read as an IPv4 address by URL parsers (which make `1.2.3` into
/// `1.2.0.3`) and `inet_aton`, and as a name by DNS: its readers would disagree on what it
/// is, so it is refused.
pub fn check_host(name: &str) -> Result<(), &'static str> {
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    check_dns_name(name)?;
    let last = name.rsplit('.').next().unwrap_or_default();
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|digits| digits.chars().all(|c| c.is_ascii_hexdigit()));
    if hex || last.chars().all(|c| c.is_ascii_digit()) {
        return Err(
            "its last part is a number, but it is not an IPv4 address (four numbers 0-255 joined by dots): URL parsers would read it as an address, DNS as a name",
        );
    }
    Ok(())
}

/// 1 to 63 characters allowed by `allowed`, the first a letter or digit.
fn label(text: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if text.is_empty() || text.len() > 63 {
        return Err("it needs 1 to 63 characters".into());
    }
    if !text.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("it must start with a letter or a digit".into());
    }
    match text.chars().find(|c| !allowed(*c)) {
        Some(c) => Err(format!("{c:?} is not allowed in it")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_compose_or_a_file_system_refuse_are_refused() {
        for bad in [
            "",
            "..",
            ".",
            "-x",
            "_x",
            "a/b",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(HostName::parse(bad).is_err(), "host {bad:?}");
        }
        for bad in ["-x", "_x", "Upper", "a.b", "", "a b"] {
            assert!(DeploymentName::parse(bad).is_err(), "deployment {bad:?}");
        }
        assert!(HostName::parse("web-1.eu_2").is_ok());
        assert!(DeploymentName::parse("hs_1-a").is_ok());
    }

    #[test]
    fn server_names_follow_the_matrix_grammar() {
        for good in [
            "example.org",
            "matrix.example.org:8448",
            "1.2.3.4",
            "[::1]:8448",
            "localhost",
        ] {
            assert_eq!(check_server_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "exa mple.org",
            "-bad.org",
            "example.org:",
            "example.org:99999",
            "example.org:+443",
            "a..b",
            "ex_ample.org",
            "[::1",
            "[::1]/../../x",
            "[::1]x",
            "1.2.3",
            "123",
            "123:8448",
            "1.2.3.4.5",
        ] {
            assert!(check_server_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_host_of_numeric_labels_is_an_ipv4_address_or_refused() {
        for good in [
            "1.2.3.4",
            "example.org",
            "1.example",
            "0x.example",
            "a1",
            "xn--bcher-kva.example",
        ] {
            assert_eq!(check_host(good), Ok(()), "{good}");
        }
        for bad in [
            "1.2.3",
            "123",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.2.3.4",
            "example.123",
            "0x7f",
            "a.0X1F",
            "0x7f.0.0.1",
        ] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_names_follow_posix() {
        for bad in ["", "Root", "-x", "a b", "a;id", "1abc", "a'b"] {
            assert!(UserName::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["root", "deploy", "_synprov", "a-b_1"] {
            assert!(UserName::parse(good).is_ok(), "{good:?}");
        }
    }
}
