//! Where a deployment lives on its hosts.

use super::checked_string;

/// An absolute, normalised directory (no `//`, `.`, `..` or trailing `/`) of letters,
/// digits, `.`, `_`, `-` and `/`, not a system directory nor one that holds other things
/// (synprov writes, replaces and, with `destroy`, removes what is inside).
///
/// Normalising makes two spellings of one directory compare equal, so two deployments can
/// never share one by writing it differently.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeployDir(String);

checked_string!(DeployDir);

/// Directories of the system, refused with everything below them.
const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/run",
    "/var/lock",
    "/var/lib/docker",
    "/var/lib/dpkg",
    "/var/lib/apt",
    "/var/lib/systemd",
];

/// Directories that hold other things: refused themselves, fine as parents.
const SHARED_DIRS: &[&str] = &[
    "/",
    "/home",
    "/media",
    "/mnt",
    "/opt",
    "/root",
    "/srv",
    "/tmp",
    "/var",
    "/var/lib",
    "/var/tmp",
    "/var/log",
    "/var/cache",
    "/var/opt",
    "/usr/local",
];

/// The longest deploy directory: the socket paths inside it must stay under the 108 bytes
/// of a UNIX socket address.
const MAX_LEN: usize = 48;

impl DeployDir {
    pub fn parse(text: &str) -> Result<DeployDir, String> {
        if !text.starts_with('/') {
            return Err("it is not an absolute path".into());
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-')))
        {
            return Err(format!(
                "it holds {c:?}: only letters, digits, `.`, `_`, `-` and `/` are allowed"
            ));
        }
        let mut parts = Vec::new();
        for part in text.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err("it climbs with `..`".into()),
                p if p.starts_with('-') => {
                    return Err(format!("its part `{p}` starts with `-`"));
                }
                p => parts.push(p),
            }
        }
        let normal = format!("/{}", parts.join("/"));
        if normal.len() > MAX_LEN {
            return Err(format!(
                "it is {} bytes long, more than {MAX_LEN} (socket paths inside it must stay short)",
                normal.len()
            ));
        }
        if SHARED_DIRS.contains(&normal.as_str()) {
            return Err(format!(
                "`{normal}` holds other things; give a directory of its own below it"
            ));
        }
        if let Some(tree) = SYSTEM_TREES
            .iter()
            .find(|t| normal == **t || normal.starts_with(&format!("{t}/")))
        {
            return Err(format!("it is inside the system directory `{tree}`"));
        }
        Ok(DeployDir(normal))
    }

    /// The default for a deployment: `/opt/synapse/NAME` (a deployment name is always a
    /// valid path part).
    pub fn default_for(deployment: &str) -> Result<DeployDir, String> {
        DeployDir::parse(&format!("/opt/synapse/{deployment}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_directory_normalise_to_one_value() {
        for spelling in [
            "/opt/s/a",
            "/opt/s//a",
            "/opt/s/./a",
            "/opt/s/a/",
            "//opt/s/a",
        ] {
            assert_eq!(
                &*DeployDir::parse(spelling).unwrap(),
                "/opt/s/a",
                "{spelling}"
            );
        }
    }

    #[test]
    fn system_and_shared_directories_and_shell_syntax_are_refused() {
        for bad in [
            "/etc",
            "/.",
            "/",
            "/opt",
            "/etc/synapse",
            "/usr/lib/x",
            "/var/lib/docker/volumes/x",
            "relative/dir",
            "/opt/x;touch${IFS}/tmp/pwned;",
            "/opt/it's",
            "/opt/a b",
            "/opt/a\nb",
            "/opt/../etc",
            "/opt/-rf",
            "/opt/$(id)",
            "/opt/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(DeployDir::parse(bad).is_err(), "{bad:?} was accepted");
        }
        for good in [
            "/opt/synapse/example",
            "/srv/matrix",
            "/home/matrix/hs1",
            "/data/hs-1.a_b",
        ] {
            assert_eq!(&*DeployDir::parse(good).unwrap(), good);
        }
    }
}
