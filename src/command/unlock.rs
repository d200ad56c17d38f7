//! `synprov unlock --host NAME [--deployment D]`: each deployment of the host (or the one
//! named) has its lock file removed by the library ([`synprov::apply::unlock`]) when no run
//! holds it; here, what is printed. A lock still held is refused, naming its holder, and
//! makes the exit status 1; the other deployments are still seen to.

use std::process::ExitCode;

use synprov::apply::unlock::{self, Unlocked};
use synprov::generations::Origin;
use synprov::transport::{LOCK_FILE, lock};
use synprov::ui::{printable, printable_report};

use crate::cli::HostTarget;

pub fn run(target: &HostTarget) -> miette::Result<ExitCode> {
    let on_host = super::host_deployments(target)?;
    let connection = on_host.connect(target)?;
    let origin = Origin::here("unlock", None);
    let mut code = ExitCode::SUCCESS;
    for (name, dir) in &on_host.deployments {
        match unlock::unlock(&connection, dir, &origin) {
            Ok(unlocked) => println!(
                "[{}] {}",
                printable(&on_host.host.name),
                printable(&summary(name, dir, &unlocked))
            ),
            Err(error) => {
                let report = format!("{:?}", miette::Report::new(error));
                eprintln!("{}", printable_report(&report));
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

/// What an unlock did, in one line.
fn summary(name: &str, dir: &str, unlocked: &Unlocked) -> String {
    match unlocked {
        Unlocked::NoLock => format!("{name}: no lock in {dir}: nothing to do"),
        Unlocked::Removed(record) => format!(
            "{name}: no run held the lock: removed {dir}/{LOCK_FILE}, left by {}",
            lock::describe(record.as_ref(), chrono::Utc::now())
        ),
    }
}
