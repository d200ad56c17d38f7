//! The `synprov` binary: parses arguments and runs one command.

mod cli;
mod command;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: a fleet's render allocates and frees millions of small strings on every core.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Reports read by a program (not a terminal) keep each message on one line.
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let _ = miette::set_hook(Box::new(|_| {
            Box::new(miette::MietteHandlerOpts::new().width(1000).build())
        }));
    }
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Check { inventory } => command::check::run(&inventory),
        cli::Command::Render {
            inventory,
            out,
            host,
            roles,
        } => command::render::run(&inventory, &out, host.as_deref(), roles.as_deref()),
        cli::Command::Plan {
            target,
            out,
            files_only,
        } => command::plan::run(&target, out.as_deref(), files_only),
        cli::Command::Show { plan, json } => command::show::run(&plan, json),
        cli::Command::Apply {
            target,
            dry_run,
            files_only,
            no_backup,
            partial,
            max_age,
        } => command::apply::run(
            &target,
            &command::apply::Flags {
                dry_run,
                files_only,
                no_backup,
                partial,
                max_age: max_age.map(Into::into),
            },
        ),
        cli::Command::Backup {
            action: Some(cli::BackupCommand::Verify { target }),
            ..
        } => command::backup::run(&target, synprov::ops::backups::Job::Drill),
        cli::Command::Backup {
            target: Some(target),
            ..
        } => command::backup::run(&target, synprov::ops::backups::Job::Backup),
        cli::Command::Backup { .. } => Err(miette::miette!(
            help = "synprov backup INVENTORY --host HOST, or synprov backup verify INVENTORY --host HOST",
            "give the inventory and the host"
        )),
        cli::Command::Backups { target } => command::backup::list(&target),
        cli::Command::Import { target } => command::import::run(&target),
        cli::Command::Restore { target, snapshot } => {
            command::restore::run(&target, snapshot.as_deref())
        }
        cli::Command::Plugins { action } => command::plugins::run(action),
        cli::Command::Rollback {
            target,
            to,
            restore_db,
        } => command::rollback::run(&target, to, restore_db),
        cli::Command::History { target } => command::history::run(&target),
        cli::Command::Destroy {
            target,
            purge,
            yes,
            files_only,
        } => command::destroy::run(&target, purge, yes, files_only),
        cli::Command::Status { target } => command::status::run(&target),
        cli::Command::Unlock { target } => command::unlock::run(&target),
        cli::Command::Logs {
            target,
            processes,
            since,
            tail,
            follow,
        } => command::logs::run(
            &target,
            &synprov::ops::logs::Request {
                names: processes,
                since,
                tail,
                follow,
            },
        ),
        cli::Command::Exec {
            target,
            service,
            process,
            command,
        } => {
            let process = service.or(process).unwrap_or_default();
            command::exec::run(&target, &process, &command)
        }
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{}", synprov::ui::printable_report(&format!("{report:?}")));
            ExitCode::FAILURE
        }
    }
}
