//! `synprov rollback --host NAME [--to N]`: each deployment of the host (or the one named)
//! goes back to a generation the host kept, read from the host alone; only what differs is
//! written and recreated, the stack verified and the result recorded as a new generation.

use std::process::ExitCode;
use std::time::Duration;

use synprov::apply::rollback::{self, To};
use synprov::apply::{self, Options};
use synprov::generations::Origin;
use synprov::saved_plan::SavedHost;
use synprov::ui::printable;

use crate::cli::HostTarget;

pub fn run(target: &HostTarget, to: Option<u32>, restore_db: bool) -> miette::Result<ExitCode> {
    let on_host = super::host_deployments(target)?;
    let connection = on_host.connect(target)?;
    let super::OnHost {
        inventory,
        host,
        deployments,
    } = on_host;
    let mut command = match to {
        Some(n) => format!("rollback --to {n}"),
        None => "rollback".to_string(),
    };
    if restore_db {
        command.push_str(" --restore-db");
    }
    let to = to.map_or(To::Default, To::Number);
    let (files, prepared, numbers) = rollback::prepare_rollback(
        &connection,
        host.docker_source,
        &deployments,
        to,
        restore_db,
    )?;
    for ((name, _), number) in deployments.iter().zip(&numbers) {
        println!(
            "[{}] {}: back to generation {number}",
            printable(&host.name),
            printable(name)
        );
    }
    // The dump of each generation gone back to, checked there by `prepare_rollback`.
    let restore = if restore_db {
        deployments
            .iter()
            .map(|(name, _)| name.clone())
            .zip(numbers.iter().copied())
            .collect()
    } else {
        std::collections::BTreeMap::new()
    };
    let record = SavedHost::of(&files, &prepared, false);
    print!(
        "{}",
        synprov::ui::plan::show(&record, Some((&files, &prepared)), false)
    );
    let options = Options {
        files_only: false,
        health_timeout: Duration::from_secs(inventory.rollout.health_timeout_secs),
        origin: Origin::here(&command, None),
        keep_generations: inventory.rollout.keep_generations,
        backup: false,
        restore_db: restore,
    };
    let report =
        |host: &str, message: &str| println!("[{}] {}", printable(host), printable(message));
    match apply::apply(&connection, &files, &prepared, &options, &report) {
        Ok(outcome) => {
            println!(
                "[{}] rolled back; {} listener(s) healthy",
                printable(&host.name),
                outcome.healthy
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            apply::audit_failure(&connection, &files, &options.origin, &error);
            Err(error.into())
        }
    }
}
