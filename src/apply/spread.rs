//! An upgrade of Synapse in a deployment spread over several hosts, in the order Synapse
//! requires across all of them. The rollout applies main's host before the hosts of its
//! workers (they need its Postgres and Redis), so each host alone would keep its workers
//! running on the old image while main migrates the database. Before the rollout, then:
//! every host of the deployment checks the new config with the new image (nothing is
//! touched if one refuses), then the workers on the other hosts stop. The rollout does the
//! rest: main's host stops its own workers and upgrades main first; the other hosts start
//! their workers on the new image once it is healthy.

use super::{ApplyError, Prepared, Report, check_config, install, lock, step, synapse_workers};
use crate::facts::Compose;
use crate::generations::Origin;
use crate::render::HostFiles;
use crate::transport::Connection;

/// Of `spread` (deployments spread over several hosts), those whose Synapse image changes
/// on this host, as its plan says.
pub fn upgrading<'a>(prepared: &'a Prepared, spread: &[String]) -> Vec<&'a str> {
    (prepared.plan.deployments.iter())
        .filter(|d| d.upgrade.is_some() && spread.contains(&d.deployment))
        .map(|d| d.deployment.as_str())
        .collect()
}

/// Sends the images this host lacks and runs Synapse's config check with the new image on
/// the new files of each of `spread` upgrading here. Touches no process; returns the
/// deployments checked.
pub fn check(
    connection: &Connection,
    files: &HostFiles,
    prepared: &Prepared,
    spread: &[String],
    report: Report,
) -> Result<Vec<String>, ApplyError> {
    let upgrading = upgrading(prepared, spread);
    if upgrading.is_empty() {
        return Ok(Vec::new());
    }
    install(connection, files, prepared, report)?;
    for (plan, files) in prepared.plan.deployments.iter().zip(&files.deployments) {
        if let Some(upgrade) = &plan.upgrade
            && upgrading.contains(&plan.deployment.as_str())
        {
            check_config(connection, files, plan, upgrade, report)?;
        }
    }
    Ok(upgrading.into_iter().map(str::to_string).collect())
}

/// Stops the Synapse workers of `deployments` on this host, a host of their workers only,
/// each under its deployment's lock: they start again on the new image when the rollout
/// reaches this host, after main. Returns how many were stopped.
pub fn stop_workers(
    connection: &Connection,
    files: &HostFiles,
    compose: &Compose,
    deployments: &[String],
    origin: &Origin,
    report: Report,
) -> Result<usize, ApplyError> {
    let mut stopped = 0;
    for files in (files.deployments.iter()).filter(|d| deployments.contains(&d.deployment)) {
        let workers = synapse_workers(files);
        if workers.is_empty() {
            continue;
        }
        let _lock = lock(connection, &files.deploy_dir, origin)?;
        report(
            connection.host_name(),
            &format!(
                "{}: stopping the workers until main runs the new image: {}",
                files.deployment,
                workers.join(", ")
            ),
        );
        step(
            connection,
            "stopping the workers",
            &super::upgrade::stop_script(&files.deploy_dir, compose, &workers),
        )?;
        stopped += workers.len();
    }
    Ok(stopped)
}
