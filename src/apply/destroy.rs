//! `destroy`: a deployment's stack brought down and what synprov wrote removed, but its
//! data kept (the database, the media, the signing key, the generations and the audit log),
//! so that a later apply brings the same server back with its users and rooms. Purged, the
//! whole deploy directory goes, data and Compose volumes included.
//!
//! What is removed is what synprov knows it wrote: the files the host's manifest lists and
//! the directories it created for processes (sockets, logs, Redis'). Anything else in the
//! deploy directory stays as it was, so that a manifest edited on the host, or a plugin's
//! data, never makes destroy delete what it cannot name.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::timers::Timer;
use super::{ApplyError, Report, compose, rollback, step};
use crate::confine;
use crate::facts::{Compose, MANIFEST, PENDING};
use crate::gather::{nul_paths, words};
use crate::generations::{AUDIT_LOG, GENERATIONS, Origin, scripts};
use crate::sh;
use crate::shell::{Command, Script};
use crate::transport::Connection;

/// What destroy keeps besides the files an apply writes only when missing (the signing
/// key), relative to the deploy directory: Postgres' data, the media store, the
/// generations (so `rollback` and `history` still work), the audit log, and an ACME
/// deployment's account and certificates (the CA's rate limits make them worth keeping).
pub const KEPT_DATA: [&str; 6] = [
    "pgsql",
    "media",
    GENERATIONS,
    AUDIT_LOG,
    crate::render::acme::STATE,
    crate::render::acme::TLS,
];

/// Directories synprov creates for processes that hold nothing worth keeping once the stack
/// is down: the sockets (with Twisted's `.sock.lock` files), the processes' logs (Nginx's
/// included), Redis' (Synapse uses it for replication only) and Redis' configuration.
pub const SCRATCH_DIRS: [&str; 4] = ["sockets", "logs", "redis", "redis-conf"];

/// What [`survey_script`] found in a deploy directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// The directory exists.
    pub present: bool,
    /// The paths synprov wrote last, as its manifest lists them.
    pub manifest: Vec<String>,
}

/// Prints `present=yes` when `dir` exists, then its manifest as `manifest=` lines of base64
/// (NUL-terminated paths). Prints nothing for a directory that does not exist.
pub fn survey_script(dir: &str) -> Script {
    let mut s = sh!("umask 077\n");
    s.push(confine::enter_if_present(dir));
    s.push(sh!(
        "echo present=yes\nif {}; then ",
        confine::regular(MANIFEST)
    ));
    s.push(nul_paths(MANIFEST));
    s.push(sh!(" | base64 | sed 's/^/manifest=/'; fi\nexit 0\n"));
    s
}

/// Reads [`survey_script`]'s output; lines that are not its own are skipped.
pub fn parse_survey(output: &str) -> Survey {
    let mut encoded = String::new();
    let mut present = false;
    for line in output.lines() {
        if line.trim() == "present=yes" {
            present = true;
        } else if let Some(data) = line.strip_prefix("manifest=") {
            encoded.push_str(data.trim());
        }
    }
    Survey {
        present,
        manifest: words(&STANDARD.decode(encoded).unwrap_or_default()),
    }
}

/// The manifest's files split into those destroy removes and those it keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    pub remove: Vec<String>,
    /// Files written only when missing (`keep_existing`): the signing key.
    pub keep: Vec<String>,
}

/// Splits `manifest`: a file in `keep_existing`, or any signing key (whatever the record
/// says: a lost key cannot be made again), is kept. A path that would reach outside the
/// deploy directory or into the kept data is neither: the manifest is the host's and is
/// not trusted to name what to delete.
pub fn removal(manifest: &[String], keep_existing: &BTreeSet<String>) -> Removal {
    let mut out = Removal::default();
    for path in manifest {
        if !crate::host_data::ManagedPath::parse(path).is_ok_and(|p| !p.in_data()) {
            continue;
        }
        if keep_existing.contains(path) || path.ends_with(".signing.key") {
            out.keep.push(path.clone());
        } else {
            out.remove.push(path.clone());
        }
    }
    out
}

impl Removal {
    /// What a destroy keeps that may be there: the [`KEPT_DATA`], then the kept files.
    pub fn kept_candidates(&self) -> Vec<String> {
        (KEPT_DATA.iter().map(|d| d.to_string()))
            .chain(self.keep.iter().cloned())
            .collect()
    }
}

/// Every directory above the paths of `files`, deepest first.
fn parents(files: &[String]) -> Vec<String> {
    let mut dirs: BTreeSet<&str> = BTreeSet::new();
    for file in files {
        let mut path = file.as_str();
        while let Some((parent, _)) = path.rsplit_once('/') {
            dirs.insert(parent);
            path = parent;
        }
    }
    let mut dirs: Vec<String> = dirs.into_iter().map(String::from).collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    dirs
}

/// Removes, in the deploy directory `dir` (with the stack down), the files of `removal`,
/// the [`SCRATCH_DIRS`], the manifest and the pending mark, then the directories the files
/// leave empty. Prints `kept=N` for each of `kept` (the [`KEPT_DATA`] and kept files) that
/// is there, then `synprov-destroyed`. Every file is checked by [`crate::confine`]'s guard
/// before anything is removed; the scratch directories, the containers', are removed with
/// `rm -rf`, which removes a link itself, never what it points to.
pub fn remove_script(dir: &str, removal: &Removal, kept: &[String]) -> Script {
    let files =
        (removal.remove.iter()).fold(Command::new("rm").arg("-f").arg("--"), |rm, f| rm.arg(f));
    let scratch = (SCRATCH_DIRS.iter().copied().chain([MANIFEST, PENDING]))
        .fold(Command::new("rm").arg("-rf").arg("--"), Command::arg);
    let mut s = sh!("set -e\numask 077\n");
    s.push(confine::enter(dir));
    s.push(confine::dir(".synprov"));
    for file in &removal.remove {
        s.push(confine::file(file));
    }
    s.push(sh!("{}\n{}\n", files, scratch));
    let dirs = parents(&removal.remove);
    if !dirs.is_empty() {
        let rmdir = dirs
            .into_iter()
            .fold(Command::new("rmdir").arg("--"), Command::arg);
        s.push(sh!("{} 2>/dev/null || :\n", rmdir));
    }
    for (index, path) in kept.iter().enumerate() {
        s.push(sh!(
            "if [ -e {} ]; then echo {}; fi\n",
            path,
            format!("kept={index}")
        ));
    }
    s.push(sh!("echo synprov-destroyed\n"));
    s
}

/// Removes the deploy directory `dir` and everything in it (with the stack down), and its
/// entry of the host's index: nothing of the deployment is left to name.
pub fn purge_script(dir: &str) -> Script {
    let mut s = sh!("set -e\ncd /\nrm -rf -- {}\n", dir);
    s.push(crate::generations::index::unregister(dir));
    s.push(sh!("echo synprov-purged\n"));
    s
}

/// Settings of one destroy.
#[derive(Debug, Clone)]
pub struct Options {
    /// Remove the whole deploy directory, data included, and the stack's volumes.
    pub purge: bool,
    /// Leave Docker alone (a host deployed with `apply --files-only`): files only.
    pub files_only: bool,
    /// Who destroys, recorded in the audit log (unless purged: there is no log left).
    pub origin: Origin,
}

/// How a destroy ended in one deploy directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destroyed {
    /// Nothing was there: nothing was done.
    pub absent: bool,
    /// The Compose stack was brought down (not with `files_only`, nor without Compose).
    pub stack_down: bool,
    /// Files of the manifest removed.
    pub removed_files: usize,
    /// What is still there, relative to the deploy directory (empty when purged).
    pub kept: Vec<String>,
}

/// Destroys the deployment in `dir` on the host, under its lock: the stack down, then
/// synprov's files removed and the data kept, or (`purge`) the whole directory removed.
/// Appends the outcome to the audit log, a failure included, unless purged.
pub fn destroy(
    connection: &Connection,
    deployment: &str,
    dir: &str,
    options: &Options,
    report: Report,
) -> Result<Destroyed, ApplyError> {
    let survey = || -> Result<Survey, ApplyError> {
        Ok(parse_survey(&step(
            connection,
            "looking at the deploy directory",
            &survey_script(dir),
        )?))
    };
    // Looked at before the lock, which would create the directory.
    if !survey()?.present {
        return Ok(Destroyed {
            absent: true,
            ..Destroyed::default()
        });
    }
    let _lock = super::lock(connection, dir, &options.origin)?;
    // Read again under the lock: an apply that ended just before may have changed it.
    let result = survey()
        .and_then(|survey| destroy_locked(connection, deployment, dir, &survey, options, report));
    if !options.purge {
        let outcome = match &result {
            Ok(_) => "ok: data kept".to_string(),
            Err(error) => error.audit_result(),
        };
        // Best effort, like any failure's line: the connection may be what failed.
        let audited =
            connection.run_script(&scripts::audit(dir, &options.origin.entry(None, &outcome)));
        if result.is_ok() {
            audited?;
        }
    }
    result
}

fn destroy_locked(
    connection: &Connection,
    deployment: &str,
    dir: &str,
    survey: &Survey,
    options: &Options,
    report: Report,
) -> Result<Destroyed, ApplyError> {
    let host = connection.host_name();
    // A timer whose units go would start a service that is no longer there.
    for timer in Timer::all(deployment).into_iter().filter(|t| {
        survey
            .manifest
            .contains(&format!("{}/{}.timer", t.dir, t.unit))
    }) {
        report(
            host,
            &format!("{deployment}: removing the {} timer", timer.what),
        );
        step(
            connection,
            &format!("removing the {} timer", timer.what),
            &timer.remove_script(),
        )?;
    }
    let mut stack_down = false;
    if !options.files_only {
        let facts = super::host_facts(connection)?;
        if facts.compose == Compose::Missing {
            report(
                host,
                &format!("{deployment}: no Compose on the host: no stack to bring down"),
            );
        } else {
            report(host, &format!("{deployment}: bringing the stack down"));
            step(
                connection,
                "bringing the stack down",
                &compose::down_script(dir, &facts.compose, options.purge),
            )?;
            stack_down = true;
        }
    }
    if options.purge {
        report(host, &format!("{deployment}: removing {dir}"));
        step(
            connection,
            "removing the deploy directory",
            &purge_script(dir),
        )?;
        return Ok(Destroyed {
            stack_down,
            removed_files: survey.manifest.len(),
            ..Destroyed::default()
        });
    }
    // The files the current generation says an apply writes only when missing.
    let listing = rollback::list(connection, dir)?;
    let keep_existing: BTreeSet<String> = (listing.current())
        .and_then(|g| g.record.as_ref().ok())
        .map(|record| {
            (record.files.iter())
                .filter(|f| f.keep_existing)
                .map(|f| f.path.clone())
                .collect()
        })
        .unwrap_or_default();
    let removal = removal(&survey.manifest, &keep_existing);
    let candidates = removal.kept_candidates();
    report(
        host,
        &format!(
            "{deployment}: removing {} file(s), sockets and logs",
            removal.remove.len()
        ),
    );
    let said = step(
        connection,
        "removing synprov's files",
        &remove_script(dir, &removal, &candidates),
    )?;
    let kept = said
        .lines()
        .filter_map(|l| l.strip_prefix("kept=")?.trim().parse::<usize>().ok())
        .filter_map(|i| candidates.get(i).cloned())
        .collect();
    Ok(Destroyed {
        absent: false,
        stack_down,
        removed_files: removal.remove.len(),
        kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "/opt/x;touch${IFS}/tmp/pwned;'";
    const QUOTED: &str = "'/opt/x;touch${IFS}/tmp/pwned;'\\'''";

    #[test]
    fn the_survey_reads_the_manifest_whichever_way_it_was_written() {
        assert_eq!(
            survey_script(HOSTILE).text(),
            format!(
                "umask 077\n{enter}echo present=yes\n\
                 if synprov_regular .synprov/manifest; then {{ if tr -d '\\000' < .synprov/manifest \
                 | cmp -s - .synprov/manifest; then tr '\\n' '\\000' < .synprov/manifest; \
                 else cat < .synprov/manifest; fi; }} | base64 | sed 's/^/manifest=/'; fi\nexit 0\n",
                enter = confine::enter_if_present(HOSTILE).text()
            )
        );
        let listed = STANDARD.encode(b"a.yaml\0sub/$(x)\nb\0");
        let (head, tail) = listed.split_at(8);
        assert_eq!(
            parse_survey(&format!(
                "noise\npresent=yes\nmanifest={head}\nmanifest={tail}\n"
            )),
            Survey {
                present: true,
                manifest: vec!["a.yaml".into(), "sub/$(x)\nb".into()]
            }
        );
        assert_eq!(parse_survey(""), Survey::default());
    }

    #[test]
    fn the_signing_key_and_the_data_are_kept_and_no_path_reaches_outside() {
        let manifest: Vec<String> = [
            "docker-compose.yml",
            "synapse/homeserver.yaml",
            "synapse/example.org.signing.key",
            "synapse/kept-by-record",
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "pgsql/PG_VERSION",
            "media/x",
            ".synprov/generations/1/record.json",
            "",
        ]
        .map(String::from)
        .to_vec();
        let kept_by_record: BTreeSet<String> = ["synapse/kept-by-record".to_string()].into();
        assert_eq!(
            removal(&manifest, &kept_by_record),
            Removal {
                remove: vec![
                    "docker-compose.yml".into(),
                    "synapse/homeserver.yaml".into()
                ],
                keep: vec![
                    "synapse/example.org.signing.key".into(),
                    "synapse/kept-by-record".into()
                ],
            }
        );
    }

    #[test]
    fn the_remove_script_quotes_every_value_and_empties_only_what_it_removed() {
        let removal = Removal {
            remove: vec![
                "synapse/workers/rooms1.yaml".into(),
                "nginx/nginx.conf".into(),
                "a b/$(id)/-rf;'".into(),
            ],
            keep: vec!["synapse/example.org.signing.key".into()],
        };
        let kept = [
            "pgsql".to_string(),
            "synapse/$(id)'.signing.key".to_string(),
        ];
        assert_eq!(
            remove_script(HOSTILE, &removal, &kept).text(),
            format!(
                "set -e\numask 077\n{enter}synprov_dir .synprov\n\
                 synprov_path f synapse/workers/rooms1.yaml 'regular file'\n\
                 synprov_path f nginx/nginx.conf 'regular file'\n\
                 synprov_path f 'a b/$(id)/-rf;'\\''' 'regular file'\n\
                 rm -f -- synapse/workers/rooms1.yaml nginx/nginx.conf 'a b/$(id)/-rf;'\\'''\n\
                 rm -rf -- sockets logs redis redis-conf .synprov/manifest .synprov/pending\n\
                 rmdir -- 'a b/$(id)' synapse/workers 'a b' nginx synapse 2>/dev/null || :\n\
                 if [ -e pgsql ]; then echo 'kept=0'; fi\n\
                 if [ -e 'synapse/$(id)'\\''.signing.key' ]; then echo 'kept=1'; fi\n\
                 echo synprov-destroyed\n",
                enter = confine::enter(HOSTILE).text()
            )
        );
    }

    #[test]
    fn the_purge_script_removes_the_deploy_directory_as_one_word() {
        assert_eq!(
            purge_script(HOSTILE).text(),
            format!(
                "set -e\ncd /\nrm -rf -- {QUOTED}\n{}echo synprov-purged\n",
                crate::generations::index::unregister(HOSTILE).text()
            )
        );
    }

    #[test]
    fn run_in_a_directory_the_remove_script_keeps_the_data_and_nothing_of_synprovs() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("d;$(touch M)");
        let write = |path: &str| {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        };
        let manifest = [
            "docker-compose.yml",
            "synapse/homeserver.yaml",
            "synapse/workers/rooms1.yaml",
            "synapse/example.org.signing.key",
            "nginx/nginx.conf",
        ];
        let data = [
            "pgsql/PG_VERSION",
            "media/local_content/ab/cd",
            ".synprov/generations/1/record.json",
            ".synprov/audit.log",
            "acme/state/lego/accounts/key",
            "tls/certificate.pem",
            "plugin-data/kept",
        ];
        let scratch = [
            "sockets/synapse_inbound_main.sock",
            "sockets/synapse_inbound_main.sock.lock",
            "logs/main/homeserver.log",
            "logs/nginx/access.log",
            "redis/dump.rdb",
            ".synprov/manifest",
            ".synprov/pending",
        ];
        for path in manifest.iter().chain(&data).chain(&scratch) {
            write(path);
        }
        std::fs::create_dir_all(dir.join("pgsql/pg_tblspc")).unwrap();
        let manifest: Vec<String> = manifest.map(String::from).to_vec();
        let removal = removal(&manifest, &BTreeSet::new());
        let kept = removal.kept_candidates();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(remove_script(dir.to_str().unwrap(), &removal, &kept).text())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            said,
            "kept=0\nkept=1\nkept=2\nkept=3\nkept=4\nkept=5\nkept=6\nsynprov-destroyed\n"
        );
        let mut left: Vec<String> = walk(&dir);
        left.sort();
        assert_eq!(
            left,
            [
                ".synprov/audit.log",
                ".synprov/generations/1/record.json",
                "acme/state/lego/accounts/key",
                "media/local_content/ab/cd",
                "pgsql/PG_VERSION",
                "pgsql/pg_tblspc/",
                "plugin-data/kept",
                "synapse/example.org.signing.key",
                "tls/certificate.pem",
            ]
        );
        assert!(!base.path().join("M").exists() && !dir.join("M").exists());
    }

    /// Every file under `dir`, and every empty directory (with a trailing `/`), relative.
    fn walk(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let entries: Vec<_> = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            if entries.is_empty() && d != dir {
                out.push(format!("{}/", d.strip_prefix(dir).unwrap().display()));
            }
            for path in entries {
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out
    }
}
