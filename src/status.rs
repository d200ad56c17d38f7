//! Status: each deployment of a host against the generation it recorded. The files (by
//! hash), the image IDs, the health of every recorded listener and plugin check, the state
//! of every container: what differs is named. Read-only, over one connection.

use std::time::Duration;

use serde::Serialize;

use crate::apply::rollback::list;
use crate::apply::{ApplyError, compose, unhealthy_services};
use crate::gather::{self, DeploymentQuery};
use crate::generations::{AcmeRun, BackupRun, Generation, Record};
use crate::transport::Connection;
use crate::transport::watch::Step;
use crate::verify;

/// What a deployment is, against its current generation.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentStatus {
    pub deployment: String,
    pub dir: String,
    /// The current generation: number, when, by whom, with which command.
    pub generation: Option<Current>,
    /// Health checks that answered.
    pub healthy: usize,
    /// What is not as recorded or not healthy, one sentence each.
    pub problems: Vec<String>,
    /// The last run of the scheduled backup, and the last that succeeded.
    pub backup_last: Option<BackupRun>,
    pub backup_good: Option<BackupRun>,
    /// The last restore drill.
    pub verify_last: Option<BackupRun>,
    /// The last attempt of the certificate renewal (ACME deployments).
    pub acme_last: Option<AcmeRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Current {
    pub number: u32,
    pub at: String,
    pub by: String,
    pub command: String,
}

impl DeploymentStatus {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A deployment's listing as read before the facts: its current generation and record,
/// when both are readable, and whether an apply was left unfinished.
struct Found<'a> {
    name: &'a str,
    dir: &'a str,
    current: Option<(Generation, Record)>,
    /// The current generation's record cannot be used: why.
    unreadable: Option<String>,
    pending: bool,
    backup_last: Option<BackupRun>,
    backup_good: Option<BackupRun>,
    verify_last: Option<BackupRun>,
    acme_last: Option<AcmeRun>,
}

/// The status of each deployment (name and directory) of the host.
pub fn host_status(
    connection: &Connection,
    deployments: &[(String, String)],
) -> Result<Vec<DeploymentStatus>, ApplyError> {
    // Every read is bounded as the facts of a plan are: a host whose script never ends
    // (a FIFO planted as a record) fails at the deadline.
    connection.begin(Step::Facts)?;
    let mut found = Vec::new();
    for (name, dir) in deployments {
        let listing = list(connection, dir)?;
        found.push(Found {
            name,
            dir,
            current: listing
                .current()
                .and_then(|g| Some((g.clone(), g.record.clone().ok()?))),
            unreadable: (listing.current()).and_then(|g| {
                let why = g.record.as_ref().err()?;
                Some(format!("generation {} cannot be used: {why}", g.number))
            }),
            pending: listing.pending,
            backup_last: listing.backup_last,
            backup_good: listing.backup_good,
            verify_last: listing.verify_last,
            acme_last: listing.acme_last,
        });
    }
    let queries: Vec<DeploymentQuery> = found
        .iter()
        .map(|found| DeploymentQuery {
            name: found.name,
            dir: found.dir,
            paths: found
                .current
                .iter()
                .flat_map(|(_, r)| r.files.iter().map(|f| f.path.as_str()))
                .collect(),
            main_image: false,
        })
        .collect();
    let mut images: Vec<String> = found
        .iter()
        .flat_map(|found| {
            found
                .current
                .iter()
                .flat_map(|(g, _)| g.images.keys().cloned())
        })
        .collect();
    images.sort();
    images.dedup();
    let facts = gather::gather(connection, &queries, &images)?;
    connection.begin(Step::Health(Duration::ZERO))?;

    let mut out = Vec::new();
    for Found {
        name,
        dir,
        current,
        unreadable,
        pending,
        backup_last,
        backup_good,
        verify_last,
        acme_last,
    } in found
    {
        let mut status = DeploymentStatus {
            deployment: name.to_string(),
            dir: dir.to_string(),
            generation: None,
            healthy: 0,
            problems: Vec::new(),
            backup_last,
            backup_good,
            verify_last,
            acme_last,
        };
        if let Some(run) = &status.acme_last {
            let unit = crate::render::acme::unit(name);
            status
                .problems
                .extend(run.problems(&unit, chrono::Utc::now()));
        }
        if let Some(run) = status.backup_last.as_ref().filter(|run| !run.ok) {
            status.problems.push(format!(
                "the last backup, started {}, failed: {} (`journalctl -u synprov-backup-{name}` on the host tells more)",
                run.started.format("%Y-%m-%d %H:%M:%S UTC"),
                run.message
            ));
        }
        if let Some(run) = status.verify_last.as_ref().filter(|run| !run.ok) {
            status.problems.push(format!(
                "the last restore drill, started {}, failed: {}",
                run.started.format("%Y-%m-%d %H:%M:%S UTC"),
                run.message
            ));
        }
        let Some((generation, record)) = current else {
            status.problems.push(unreadable.unwrap_or_else(|| {
                "no generation recorded here (an apply that changes the deployment records one)"
                    .into()
            }));
            out.push(status);
            continue;
        };
        status.generation = Some(Current {
            number: generation.number,
            at: record.origin.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            by: record.origin.who(),
            command: record.origin.command.clone(),
        });
        if pending {
            status.problems.push(format!(
                "the last apply did not finish: files differ from generation {}",
                generation.number
            ));
        }
        let hashes = facts
            .deployments
            .get(name)
            .map(|d| d.hashes.clone())
            .unwrap_or_default();
        for file in &record.files {
            match hashes.get(&file.path) {
                None => status.problems.push(format!("{} is missing", file.path)),
                Some(hash) if *hash != file.sha256 => status.problems.push(format!(
                    "{} was changed since generation {}",
                    file.path, generation.number
                )),
                Some(_) => {}
            }
        }
        for (image, recorded) in &generation.images {
            match facts.images.get(image) {
                Some(id) if id == recorded => {}
                Some(id) => status.problems.push(format!(
                    "image {image} is now {id}, generation {} ran {recorded}",
                    generation.number
                )),
                None => status
                    .problems
                    .push(format!("image {image} is no longer on the host")),
            }
        }
        for target in &record.health {
            match verify::check(connection, target) {
                Ok(()) => status.healthy += 1,
                Err(error) => status.problems.push(format!(
                    "{} is unhealthy: {error} at {}",
                    target.process,
                    target.host_location()
                )),
            }
        }
        let containers = connection
            .run_script(&compose::status_script(dir, &facts.compose))?
            .stdout_text();
        for service in unhealthy_services(&containers) {
            status
                .problems
                .push(format!("container of {service} is not running healthy"));
        }
        out.push(status);
    }
    Ok(out)
}
