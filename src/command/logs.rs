//! `synprov logs --host NAME [PROCESS...]`: what the containers of a deployment printed,
//! streamed as it arrives; on a terminal with control characters escaped.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use synprov::ops::logs::{self, Request};
use synprov::ui::lines::PrintableLines;

use crate::cli::HostTarget;

pub fn run(target: &HostTarget, request: &Request) -> miette::Result<ExitCode> {
    let on_host = super::host_deployments(target)?;
    let deployment = on_host.one_deployment()?;
    let connection = on_host.connect(target)?;
    let mut err = std::io::stderr().lock();
    let stdout = std::io::stdout();
    let status = if stdout.is_terminal() {
        let mut out = PrintableLines::new(stdout.lock());
        let mut err = PrintableLines::new(&mut err);
        let status = logs::logs(&connection, deployment, request, &mut out, &mut err)?;
        out.finish().and_then(|()| err.finish()).ok();
        status
    } else {
        let mut out = stdout.lock();
        let status = logs::logs(&connection, deployment, request, &mut out, &mut err)?;
        out.flush().ok();
        status
    };
    Ok(super::exit_code(status))
}
