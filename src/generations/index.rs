//! The host's index of the deployments synprov recorded there: one small file per deploy
//! directory under [`INDEX_DIR`], holding the deployment's name and directory. An inventory
//! only says what should be on a host; the index says what is, so that `plan` can name a
//! deployment the inventory no longer has (an orphan, never removed by itself) and
//! `destroy` can find it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use crate::inventory::DeployDir;
use crate::inventory::values::DeploymentName;
use crate::sh;
use crate::shell::Script;

/// Where the index lives on every host.
pub const INDEX_DIR: &str = "/var/lib/synprov/deployments";

/// The directory of [`INDEX_DIR`], synprov's own: neither it nor the index may be a link,
/// and an entry is written only after whatever stood at its temporary name is removed, so
/// that no write goes through a link.
const INDEX_PARENT: &str = "/var/lib/synprov";

/// A deployment as the index names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Indexed {
    pub name: String,
    pub dir: String,
}

/// The index entry of `dir`: named by a hash of the directory, so that no name or path
/// from an inventory becomes a file name.
fn entry(dir: &str) -> String {
    let digest = Sha256::digest(dir.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{INDEX_DIR}/{hex}")
}

/// Adds (or refreshes) the deployment `name` in `dir` to the index, whole or not at all.
/// Best effort: a host where synprov cannot write under `/var/lib` (no root) only loses
/// the naming of orphans.
pub fn register(name: &str, dir: &str) -> Script {
    let entry = entry(dir);
    sh!(
        "{ mkdir -p -m 755 -- {} && [ ! -L {} ] && [ ! -L {} ] && rm -f -- {} && \
         printf '%s\\0%s\\0' {} {} > {} && mv -f -- {} {}; } 2>/dev/null || :\n",
        INDEX_DIR,
        INDEX_PARENT,
        INDEX_DIR,
        format!("{entry}.new"),
        name,
        dir,
        format!("{entry}.new"),
        format!("{entry}.new"),
        entry
    )
}

/// Takes `dir` out of the index (its deployment is gone with its data).
pub fn unregister(dir: &str) -> Script {
    sh!("rm -f -- {}\n", entry(dir))
}

/// Prints an `indexed=` line (base64) for each deployment of the index; nothing when
/// there is none. A fragment of the facts script.
pub fn list() -> Script {
    sh!(
        "[ -L {} ] || for f in {}/*; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && case \"$f\" in *.new) ;; *) echo \"indexed=$(base64 < \"$f\" | tr -d '\\n')\";; esac; done\n",
        INDEX_DIR,
        INDEX_DIR
    )
}

/// Reads the value of an `indexed=` line; `None` for anything that is not a deployment
/// name and a deploy directory as an inventory may give them (the host's file is not
/// trusted to be synprov's: `destroy --purge` removes the directory it names).
pub fn parse(value: &str) -> Option<Indexed> {
    let bytes = STANDARD.decode(value.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.split('\0');
    let (name, dir) = (parts.next()?, parts.next()?);
    if parts.next() != Some("") || parts.next().is_some() {
        return None;
    }
    let name = DeploymentName::parse(name).ok()?;
    let dir = DeployDir::parse(dir).ok().filter(|d| **d == *dir)?;
    Some(Indexed {
        name: name.to_string(),
        dir: dir.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_named_by_its_directory_and_holds_name_and_directory_as_data() {
        let dir = "/opt/x;touch${IFS}/tmp/pwned;'";
        let entry = entry(dir);
        assert!(entry.starts_with("/var/lib/synprov/deployments/") && entry.len() == 45);
        assert_eq!(
            register("$(id)", dir).text(),
            format!(
                "{{ mkdir -p -m 755 -- /var/lib/synprov/deployments && [ ! -L /var/lib/synprov ] && \
                 [ ! -L /var/lib/synprov/deployments ] && rm -f -- {entry}.new && printf '%s\\0%s\\0' '$(id)' \
                 '/opt/x;touch${{IFS}}/tmp/pwned;'\\''' > {entry}.new && mv -f -- {entry}.new {entry}; }} 2>/dev/null || :\n"
            )
        );
        assert_eq!(unregister(dir).text(), format!("rm -f -- {entry}\n"));
    }

    #[test]
    fn what_the_index_holds_is_read_back_and_anything_else_passed_over() {
        let line = |bytes: &[u8]| STANDARD.encode(bytes);
        assert_eq!(
            parse(&line(b"old\0/opt/synapse/old\0")),
            Some(Indexed {
                name: "old".into(),
                dir: "/opt/synapse/old".into()
            })
        );
        for bad in [
            &b"old\0relative\0"[..],
            b"old\0/\0",
            b"old\0/etc\0",
            b"old\0/opt/a/../../etc\0",
            b"$(id)\0/opt/a\0",
            b"\0/opt/a\0",
            b"old\0/opt/a",
            b"old\0/opt/a\0more\0",
            b"\xff\0/opt/a\0",
        ] {
            assert_eq!(parse(&line(bad)), None, "{bad:?}");
        }
        assert_eq!(parse("not base64!"), None);
    }

    #[test]
    fn the_listing_runs_and_prints_each_entry() {
        let script = list().text().replace(INDEX_DIR, "$INDEX");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"old\0/opt/synapse/old\0").unwrap();
        std::fs::write(dir.path().join("b.new"), b"half\0").unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("INDEX", dir.path())
            .output()
            .unwrap();
        let out = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            out.lines()
                .filter_map(|l| parse(l.strip_prefix("indexed=")?))
                .collect::<Vec<_>>(),
            [Indexed {
                name: "old".into(),
                dir: "/opt/synapse/old".into()
            }],
            "{out}"
        );
    }
}
