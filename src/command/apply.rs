//! `synprov apply`: plan, carry it out and verify, host by host in the batches `[rollout]`
//! sets, several hosts at once; optionally roll back a host that fails its health check.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use synprov::apply::rollback::{self, To};
use synprov::apply::{self, ApplyError, Options};
use synprov::generations::Origin;
use synprov::render::HostFiles;
use synprov::rollout::Failure;
use synprov::transport::Connection;
use synprov::ui;

use crate::cli::Target;

pub fn run(target: &Target, files_only: bool, no_backup: bool) -> miette::Result<ExitCode> {
    let loaded = Arc::new(super::load(target)?);
    let options = Options {
        files_only,
        health_timeout: Duration::from_secs(loaded.inventory.rollout.health_timeout_secs),
        origin: Origin::here("apply", Some(loaded.inventory_sha256.clone())),
        keep_generations: loaded.inventory.rollout.keep_generations,
        backup: !no_backup,
        restore_db: Default::default(),
    };
    let color = ui::progress::Mode::choose(target.json) == ui::progress::Mode::Live;
    let shared = Arc::clone(&loaded);
    let work = move |host: &str, step: &dyn Fn(String)| {
        let loaded = &shared;
        let (connection, prepared, files) = super::connect_and_prepare(loaded, host, step)?;
        step(
            ui::plan::show(&files, &prepared, color)
                .trim_end()
                .to_string(),
        );
        let report = |_: &str, message: &str| step(message.to_string());
        let unchanged = prepared.plan.deployments.iter().map(|d| d.unchanged).sum();
        match apply::apply(&connection, &files, &prepared, &options, &report) {
            Ok(outcome) => {
                step(format!(
                    "{} change(s) applied, {} listener(s) healthy",
                    outcome.changes, outcome.healthy
                ));
                Ok((outcome.changes, unchanged))
            }
            Err(error)
                if error.left_unhealthy() && loaded.inventory.rollout.rollback_on_failure =>
            {
                apply::audit_failure(&connection, &files, &options.origin, &error);
                step("unhealthy: rolling back".into());
                let rolled = roll_back(&connection, &files, &options, &report);
                Err(Failure::Error(format!("{error}; {rolled}")))
            }
            Err(error) => {
                apply::audit_failure(&connection, &files, &options.origin, &error);
                Err(super::failure(error.into()))
            }
        }
    };
    let results = super::roll_out(&loaded, target, true, Arc::new(work));
    Ok(super::rollout_exit(&loaded, &results, ExitCode::SUCCESS))
}

/// Puts each deployment of `files` back on its current generation: what ran before this
/// apply.
fn roll_back(
    connection: &Connection,
    files: &HostFiles,
    options: &Options,
    report: apply::Report,
) -> String {
    let deployments: Vec<(String, String)> = files
        .deployments
        .iter()
        .map(|d| (d.deployment.clone(), d.deploy_dir.clone()))
        .collect();
    let options = Options {
        origin: Origin {
            command: "rollback (after a failed apply)".into(),
            ..options.origin.clone()
        },
        // The dump beside the current generation is what ran before: never overwritten.
        backup: false,
        ..options.clone()
    };
    let rolled = rollback::prepare_rollback(
        connection,
        files.docker_source,
        &deployments,
        To::Current,
        false,
    )
    .and_then(|(files, prepared, _)| apply::apply(connection, &files, &prepared, &options, report));
    match rolled {
        Ok(outcome) => format!("rolled back, {} listener(s) healthy", outcome.healthy),
        Err(error @ ApplyError::Generation(_)) => format!("no rollback: {error}"),
        Err(error) => format!("the rollback failed too: {error}"),
    }
}
