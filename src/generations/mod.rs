//! Generations: what each apply that changed a deployment leaves on its host, as Nix does.
//!
//! A generation is a directory `DEPLOY_DIR/.synprov/generations/N` (N counts from 1; the
//! highest is the current one) holding `record.json` ([`Record`]: the files by hash, the
//! services' health targets, the plugin grants, who applied it, when, with which synprov),
//! `files/` (a copy of every file as it was), `images` (the ID of each image, read on the
//! host) and, before an upgrade, `db.dump`. It is built under `generations/.new` and
//! renamed into place after the stack was verified healthy: complete or absent.
//!
//! `status`, `history` and `rollback` read what the host recorded, not the inventory: the
//! host is the truth about the host.

pub mod acme_run;
pub mod audit;
mod backup_run;
pub mod index;
pub mod record;
pub mod scripts;

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use miette::Diagnostic;
use thiserror::Error;

pub use acme_run::AcmeRun;
pub use audit::{AuditEntry, Origin};
pub use backup_run::{BackupRun, MAX_STATE_BYTES};

use crate::host_data::{AUDIT_LINES, GENERATIONS as MAX_GENERATIONS, IMAGE_LINES, Refused};
pub use record::Record;

/// The generations of a deployment, relative to its deploy directory.
pub const GENERATIONS: &str = ".synprov/generations";

/// The audit log of a deployment, relative to its deploy directory: one line per command
/// that changed it or tried to.
pub const AUDIT_LOG: &str = ".synprov/audit.log";

/// The Postgres dump taken before an upgrade, inside the generation it was taken from.
pub const DUMP: &str = "db.dump";

#[derive(Debug, Error, Diagnostic)]
pub enum GenerationError {
    #[error("{host}: {deployment} has no generation {number} (kept: {kept})")]
    #[diagnostic(help("`synprov history --host {host}` lists the kept generations"))]
    Missing {
        host: String,
        deployment: String,
        number: u32,
        kept: String,
    },

    #[error("{host}: {deployment} has no generation to go back to")]
    #[diagnostic(help(
        "a generation is recorded by each apply that changes the deployment; `synprov history --host {host}` lists them"
    ))]
    NoneBefore { host: String, deployment: String },

    #[error("{host}: generation {number} of {deployment} has no database dump")]
    #[diagnostic(help(
        "a dump is taken before an upgrade from a generation; `synprov history --host {host}` shows which have one"
    ))]
    NoDump {
        host: String,
        deployment: String,
        number: u32,
    },

    #[error("{host}: generation {number} of {deployment} cannot be read: {why}")]
    #[diagnostic(help(
        "the record on the host (DEPLOY_DIR/.synprov/generations/{number}) was changed or written by a newer synprov"
    ))]
    Unreadable {
        host: String,
        deployment: String,
        number: u32,
        why: String,
    },
}

/// One generation as read back from a host.
#[derive(Debug, Clone)]
pub struct Generation {
    pub number: u32,
    /// `Err` when the record does not parse (its reason): listed, never used.
    pub record: Result<Record, String>,
    /// Image ID by reference, as the host had them when the generation was recorded.
    pub images: BTreeMap<String, String>,
    /// A Postgres dump was taken beside this generation (before an upgrade from it).
    pub dump: bool,
}

impl Generation {
    /// Its record, or why it cannot be used.
    pub fn usable(&self, host: &str, deployment: &str) -> Result<&Record, GenerationError> {
        self.record
            .as_ref()
            .map_err(|why| GenerationError::Unreadable {
                host: host.into(),
                deployment: deployment.into(),
                number: self.number,
                why: why.clone(),
            })
    }
}

/// What [`scripts::list`] found in a deployment's directory.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Oldest first.
    pub generations: Vec<Generation>,
    pub audit: Vec<AuditEntry>,
    /// The last apply wrote files but did not finish (bring up, verify, record): the host
    /// is not on its current generation.
    pub pending: bool,
    /// The last run of the scheduled backup, and the last that succeeded.
    pub backup_last: Option<BackupRun>,
    pub backup_good: Option<BackupRun>,
    /// The last restore drill (`synprov backup verify`, or its timer).
    pub verify_last: Option<BackupRun>,
    /// The last attempt of an ACME deployment's certificate renewal.
    pub acme_last: Option<AcmeRun>,
}

impl Listing {
    pub fn current(&self) -> Option<&Generation> {
        self.generations.last()
    }

    /// Generation `number`, or by default the one before the current one: a usable
    /// record, or the reason why there is none.
    pub fn target(
        &self,
        host: &str,
        deployment: &str,
        number: Option<u32>,
    ) -> Result<(u32, &Record), GenerationError> {
        let found = match number {
            Some(n) => self.generations.iter().find(|g| g.number == n),
            None => self.generations.iter().rev().nth(1),
        };
        let Some(generation) = found else {
            return Err(match number {
                Some(number) => GenerationError::Missing {
                    host: host.into(),
                    deployment: deployment.into(),
                    number,
                    kept: self.numbers(),
                },
                None => GenerationError::NoneBefore {
                    host: host.into(),
                    deployment: deployment.into(),
                },
            });
        };
        Ok((generation.number, generation.usable(host, deployment)?))
    }

    fn numbers(&self) -> String {
        let numbers: Vec<String> = self
            .generations
            .iter()
            .map(|g| g.number.to_string())
            .collect();
        if numbers.is_empty() {
            "none".into()
        } else {
            numbers.join(", ")
        }
    }
}

/// Reads [`scripts::list`]'s output for the deployment in `dir`. Every value is the
/// host's, so nothing is trusted: a record that does not parse (or names a path or a
/// socket outside `dir`), or whose images list is longer than [`IMAGE_LINES`], is kept as
/// its error; an image line that is not an image ID and a reference is dropped; only the
/// last [`AUDIT_LINES`] lines of the audit log are kept. More than [`MAX_GENERATIONS`]
/// generations are refused: synprov keeps far fewer.
pub fn parse_listing(dir: &str, output: &str) -> Result<Listing, Refused> {
    let mut listing = Listing::default();
    let mut records: BTreeMap<u32, (String, String, bool)> = BTreeMap::new();
    let mut audit = String::new();
    let (mut backup_last, mut backup_good, mut verify_last) =
        (String::new(), String::new(), String::new());
    let mut acme_last = String::new();
    let mut current = None;
    for line in output.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "generation" => {
                current = value.trim().parse::<u32>().ok();
                if let Some(n) = current {
                    records.entry(n).or_default();
                }
                if records.len() > MAX_GENERATIONS {
                    return Err(Refused::new(
                        "",
                        GENERATIONS,
                        &format!("{} generations", records.len()),
                        &format!("is more than the {MAX_GENERATIONS} synprov may keep"),
                    ));
                }
            }
            "record" | "images" | "dump" => {
                let Some(entry) = current.and_then(|n| records.get_mut(&n)) else {
                    continue;
                };
                match key {
                    "record" => entry.0.push_str(value.trim()),
                    "images" => entry.1.push_str(value.trim()),
                    _ => entry.2 = true,
                }
            }
            "audit" => audit.push_str(value.trim()),
            "backup_last" => backup_last.push_str(value.trim()),
            "backup_good" => backup_good.push_str(value.trim()),
            "verify_last" => verify_last.push_str(value.trim()),
            "acme_last" => acme_last.push_str(value.trim()),
            "pending" => listing.pending = true,
            _ => {}
        }
    }
    let decode = |text: &str| {
        STANDARD
            .decode(text)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    };
    for (number, (record, images, dump)) in records {
        let images = decode(&images).unwrap_or_default();
        let record = decode(&record)
            .map_err(|e| e.to_string())
            .and_then(|json| Record::parse(&json, dir))
            // The reason may quote the host's text (serde's messages do): escaped as it
            // enters the error that shows it.
            .map_err(|why| crate::text::one_line(&why).into_owned())
            .and_then(|record| match images.lines().count() {
                n if n > IMAGE_LINES => Err(format!(
                    "its images list has {n} lines, more than the {IMAGE_LINES} synprov reads"
                )),
                _ => Ok(record),
            });
        let images = images
            .lines()
            .take(IMAGE_LINES)
            .filter_map(|line| {
                let (id, reference) = line.split_once(' ')?;
                let id_ok = crate::facts::is_image_id(id);
                let reference = crate::inventory::ImageRef::parse(reference.trim()).ok()?;
                id_ok.then(|| (reference.to_string(), id.to_string()))
            })
            .collect();
        listing.generations.push(Generation {
            number,
            record,
            images,
            dump,
        });
    }
    listing.backup_last = decode(&backup_last).ok().and_then(|t| BackupRun::parse(&t));
    listing.backup_good = decode(&backup_good).ok().and_then(|t| BackupRun::parse(&t));
    listing.verify_last = decode(&verify_last).ok().and_then(|t| BackupRun::parse(&t));
    listing.acme_last = decode(&acme_last).ok().and_then(|t| AcmeRun::parse(&t));
    let audit = decode(&audit).unwrap_or_default();
    let lines: Vec<&str> = audit.lines().collect();
    listing.audit = lines[lines.len().saturating_sub(AUDIT_LINES)..]
        .iter()
        .filter_map(|line| AuditEntry::parse(line))
        .collect();
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the listing script on `dir` with this machine's shell, as a host would.
    fn listing_of(dir: &std::path::Path) -> Listing {
        let dir = dir.to_str().unwrap();
        parse_listing(dir, &crate::shell::run_here(&scripts::list(dir))).unwrap()
    }

    #[test]
    fn the_listing_carries_the_last_backup_and_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".synprov/backup");
        std::fs::create_dir_all(&state).unwrap();
        let run = |result: &str, at: &str| {
            format!(
                "result={result}\nstarted={at}\nfinished={at}\ngeneration=2\nsnapshot=\nadded=\ntotal=\nmessage=m\n"
            )
        };
        std::fs::write(state.join("last"), run("failed", "2026-12-07T03:00:00Z")).unwrap();
        let listing = listing_of(dir.path());
        assert!(!listing.backup_last.as_ref().unwrap().ok);
        assert_eq!(listing.backup_good, None);

        std::fs::write(state.join("last-good"), run("ok", "2026-12-06T03:00:00Z")).unwrap();
        let good = listing_of(dir.path()).backup_good.unwrap();
        assert!(good.ok && good.generation == Some(2));
        assert_eq!(good.started.to_rfc3339(), "2026-12-06T03:00:00+00:00");

        assert_eq!(listing_of(dir.path()).verify_last, None);
        std::fs::write(
            state.join("verify-last"),
            run("failed", "2026-12-07T04:00:00Z"),
        )
        .unwrap();
        let drill = listing_of(dir.path()).verify_last.unwrap();
        assert!(!drill.ok && drill.message == "m");
    }
}
