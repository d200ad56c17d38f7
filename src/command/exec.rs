//! `synprov exec --host NAME PROCESS -- COMMAND...`: a command in the container of one
//! process; its output passed through unchanged (as `ssh HOST COMMAND` does, so that
//! `exec db -- pg_dump` can be redirected to a file), its exit status made synprov's.

use std::process::ExitCode;

use crate::cli::HostTarget;

pub fn run(target: &HostTarget, process: &str, command: &[String]) -> miette::Result<ExitCode> {
    let on_host = super::host_deployments(target)?;
    let deployment = on_host.one_deployment()?;
    let connection = on_host.connect(target)?;
    let status = synprov::ops::exec::exec(
        &connection,
        deployment,
        process,
        command,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )?;
    Ok(super::exit_code(status))
}
