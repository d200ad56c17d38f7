//! `synprov backup`, `synprov backup verify` and `synprov backups`: a deployment's backup
//! or restore drill now, and its snapshots. The host runs them ([`synprov::ops::backups`]);
//! here, what is printed.

use std::io::Write;
use std::process::ExitCode;

use synprov::ops::backups::{self, Job};
use synprov::ui::{one_line, printable};

use crate::cli::HostTarget;

/// The host's deployments that have backups (of those `--deployment` names).
fn with_backups(target: &HostTarget) -> miette::Result<super::OnHost> {
    let mut on_host = super::host_deployments(target)?;
    let inventory = &on_host.inventory;
    on_host
        .deployments
        .retain(|(name, _)| inventory.deployments[name].backup.is_some());
    if on_host.deployments.is_empty() {
        return Err(miette::miette!(
            help = "give the deployment a [deployments.NAME.backup] table (docs/backups.md), then apply",
            "no deployment of host `{}` has backups",
            on_host.host.name
        ));
    }
    Ok(on_host)
}

/// A backup (or the restore drill) of each deployment now: a progress line, then the
/// result. Exit 1 when one failed.
pub fn run(target: &HostTarget, job: Job) -> miette::Result<ExitCode> {
    let on_host = with_backups(target)?;
    let connection = on_host.connect(target)?;
    let host = printable(&on_host.host.name).into_owned();
    let mut code = ExitCode::SUCCESS;
    for (name, dir) in &on_host.deployments {
        print!("[{host}] {name}: {}...", job.doing());
        let _ = std::io::stdout().flush();
        let run = backups::run(&connection, name, dir, job)?;
        let verdict = if run.ok { "ok" } else { "FAILED" };
        let took = (run.finished - run.started).num_seconds();
        println!(" {verdict} in {took}s");
        println!("[{host}] {name}: {}", one_line(&run.message));
        if !run.ok {
            code = ExitCode::FAILURE;
        }
    }
    Ok(code)
}

/// The snapshots of each deployment: ID, time, size, generation.
pub fn list(target: &HostTarget) -> miette::Result<ExitCode> {
    let on_host = with_backups(target)?;
    let connection = on_host.connect(target)?;
    for (name, dir) in &on_host.deployments {
        let snapshots = backups::snapshots(&connection, name, dir)?;
        println!("{} ({} snapshot(s)):", printable(name), snapshots.len());
        if !snapshots.is_empty() {
            println!(
                "  {:<8}  {:<23}  {:>12}  generation",
                "snapshot", "time", "bytes"
            );
        }
        for s in &snapshots {
            println!(
                "  {:<8}  {:<23}  {:>12}  {}",
                s.id,
                s.time.format("%Y-%m-%d %H:%M:%S UTC"),
                s.size.map_or("?".into(), |n| n.to_string()),
                s.generation.map_or("-".into(), |n| n.to_string())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
