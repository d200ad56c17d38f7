//! `synprov apply`: plan, carry it out and verify, host by host in the batches `[rollout]`
//! sets, several hosts at once; optionally roll back a host that fails its health check.

use std::process::ExitCode;
use std::time::Duration;

use synprov::apply::{self, Options};
use synprov::rollout::Status;
use synprov::transport::Connection;
use synprov::ui;

use crate::cli::Target;

pub fn run(target: &Target, files_only: bool) -> miette::Result<ExitCode> {
    let loaded = super::load(target)?;
    let timeout = Duration::from_secs(loaded.inventory.rollout.health_timeout_secs);
    let options = Options {
        files_only,
        health_timeout: timeout,
    };
    let color = ui::progress::Mode::choose(target.json) == ui::progress::Mode::Live;
    let work = |host: &str, step: &dyn Fn(String)| {
        let (connection, prepared, files) = super::connect_and_prepare(&loaded, host, step)?;
        step(
            ui::plan::show(&files, &prepared, color)
                .trim_end()
                .to_string(),
        );
        let report = |_: &str, message: &str| step(message.to_string());
        let unchanged = prepared.plan.deployments.iter().map(|d| d.unchanged).sum();
        match apply::apply(
            &connection,
            &loaded.inventory.hosts[host],
            &loaded.inventory,
            &files,
            &prepared,
            &options,
            &report,
        ) {
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
                step("unhealthy: rolling back".into());
                let rolled = rollback(&connection, &loaded, timeout, &report);
                Err(format!("{error}; {rolled}"))
            }
            Err(error) => Err(super::failed(error.into())),
        }
    };
    let results = super::roll_out(&loaded, target, true, &work);
    let ok = results
        .iter()
        .all(|r| matches!(r.status, Status::Done { .. }));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn rollback(
    connection: &Connection,
    loaded: &super::Loaded,
    timeout: Duration,
    report: apply::Report,
) -> String {
    match apply::rollback(connection, &loaded.inventory, timeout, report) {
        Ok(healthy) => format!("rolled back, {healthy} listener(s) healthy"),
        Err(error) => format!("the rollback failed too: {error}"),
    }
}
