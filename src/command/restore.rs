//! `synprov restore --host H --deployment D [--snapshot ID]`: a deployment brought back
//! from its backups onto a fresh host that the inventory now names for it. The stack is
//! applied as `apply` does (Docker, images, files, the backup key authorised on the
//! repository's host), then the snapshot is restored ([`synprov::apply::restore`]) and
//! the stack verified. A host where the deployment already has a generation is refused:
//! its database would be replaced.

use std::process::ExitCode;
use std::time::Duration;

use synprov::apply::{restore, rollback};
use synprov::transport::watch::Step;
use synprov::ui::printable;

use crate::cli::HostTarget;

pub fn run(target: &HostTarget, snapshot: Option<&str>) -> miette::Result<ExitCode> {
    let snapshot = match snapshot {
        Some(id) if (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit()) => id,
        Some(id) => {
            return Err(miette::miette!(
                help = "`synprov backups` lists the snapshots with their IDs",
                "`{}` is not a snapshot ID (8 to 64 hexadecimal digits)",
                printable(id)
            ));
        }
        None => "latest",
    };
    let on_host = super::host_deployments(target)?;
    let (name, dir) = on_host.one_deployment()?;
    let deployment = &on_host.inventory.deployments[name];
    if deployment.backup.is_none() {
        return Err(miette::miette!(
            help = "give it the [deployments.NAME.backup] table its backups were made with",
            "deployment `{name}` has no backup table in the inventory, so its repository is not known"
        ));
    }
    let connection = on_host.connect(target)?;
    connection.begin(Step::Facts)?;
    if let Some(generation) = rollback::list(&connection, dir)?.current() {
        return Err(miette::miette!(
            help = "restore onto a fresh host; on this one, `synprov rollback --restore-db` returns to a dump taken before an upgrade",
            "host `{}` already runs `{name}` (generation {}): a restore would replace its database",
            on_host.host.name,
            generation.number
        ));
    }
    drop(connection);
    let applied = super::apply::run(
        &super::only_host(target),
        &super::apply::Flags {
            dry_run: false,
            files_only: false,
            no_backup: true,
            partial: false,
            max_age: None,
        },
    )?;
    if applied != ExitCode::SUCCESS {
        return Ok(applied);
    }
    let connection = on_host.connect(target)?;
    let say = |host: &str, message: &str| println!("[{}] {}", printable(host), printable(message));
    let healthy = restore::restore(
        &connection,
        name,
        dir,
        &deployment.server_name,
        snapshot,
        Duration::from_secs(on_host.inventory.rollout.health_timeout_secs),
        &say,
    )?;
    println!(
        "[{}] {name}: restored from snapshot {snapshot}, {healthy} listener(s) healthy",
        printable(&on_host.host.name)
    );
    Ok(ExitCode::SUCCESS)
}
