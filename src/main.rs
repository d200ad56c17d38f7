//! The `synprov` binary: parses arguments and runs one command.

mod cli;
mod command;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Check { inventory } => command::check::run(&inventory),
        cli::Command::Render { inventory, out, host, roles } => command::render::run(&inventory, &out, host.as_deref(), roles.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::FAILURE
        }
    }
}
