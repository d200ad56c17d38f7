//! `synprov plan` (and `apply --dry-run`): what would change on each host. Changes nothing.

use std::process::ExitCode;

use synprov::ui;

use crate::cli::Target;

/// Exit status when changes are pending.
pub const PENDING: u8 = 2;

pub fn run(target: &Target) -> miette::Result<ExitCode> {
    let loaded = super::load(target)?;
    let mut pending = false;
    let mut failed = false;
    for files in &loaded.hosts {
        match super::connect_and_prepare(&loaded, files) {
            Ok((_, prepared)) => {
                print!("{}", ui::plan::show(files, &prepared, ui::color()));
                pending |= prepared.plan.change_count() > 0;
            }
            Err(report) => {
                eprintln!("{report:?}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else if pending {
        ExitCode::from(PENDING)
    } else {
        ExitCode::SUCCESS
    })
}
