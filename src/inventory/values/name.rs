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
    fn user_names_follow_posix() {
        for bad in ["", "Root", "-x", "a b", "a;id", "1abc", "a'b"] {
            assert!(UserName::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["root", "deploy", "_synprov", "a-b_1"] {
            assert!(UserName::parse(good).is_ok(), "{good:?}");
        }
    }
}
