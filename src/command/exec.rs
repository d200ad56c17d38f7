//! `synprov exec --limit HOSTS PROCESS -- COMMAND...`: a command in the container of one
//! process of each deployment of the hosts named. On a single deployment, its output passed
//! through unchanged (as `ssh HOST COMMAND` does, so that `exec db -- pg_dump` can be
//! redirected to a file) and its exit status made synprov's. On several, the hosts run it
//! at once; each one's output is shown whole under its name, then a recap of the statuses.

use std::io::Write;
use std::process::ExitCode;

use synprov::ui::lines::PrintableLines;
use synprov::ui::printable;

use crate::cli::HostsTarget;

/// One deployment the command runs on.
struct On {
    host: synprov::inventory::Host,
    deployment: (String, String),
}

/// What the command did on one deployment: its exit status, or why it did not run.
struct Ran {
    status: Result<i32, String>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

pub fn run(target: &HostsTarget, process: &str, command: &[String]) -> miette::Result<ExitCode> {
    let inventory = super::load_inventory(&target.inventory)?;
    let hosts = inventory.select(&target.limit).map_err(|message| {
        miette::miette!(help = "`synprov check` lists the hosts", "{message}")
    })?;
    let on: Vec<On> = hosts
        .iter()
        .flat_map(|name| {
            let host = inventory.hosts[name].clone();
            super::deployments_on(&inventory, name, target.deployment.as_deref())
                .into_iter()
                .map(move |deployment| On {
                    host: host.clone(),
                    deployment,
                })
        })
        .collect();
    let options = super::connect_options(target.known_hosts.clone());
    match on.as_slice() {
        [] => Err(miette::miette!(
            help = "`synprov check` lists the deployments of each host",
            "no deployment{} on {}",
            target
                .deployment
                .as_ref()
                .map(|d| format!(" named `{}`", printable(d)))
                .unwrap_or_default(),
            target.limit.join(", ")
        )),
        [one] => {
            let connection = synprov::transport::Connection::open(&one.host, &options)?;
            let status = synprov::ops::exec::exec(
                &connection,
                (&one.deployment.0, &one.deployment.1),
                process,
                command,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )?;
            Ok(super::exit_code(status))
        }
        several => {
            let parallel = target.parallel.unwrap_or(inventory.rollout.parallel).max(1) as usize;
            let ran = synprov::parallel::each_at_once(several, parallel, |on| {
                let mut ran = Ran {
                    status: Ok(0),
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                };
                ran.status = synprov::transport::Connection::open(&on.host, &options)
                    .map_err(|e| e.to_string())
                    .and_then(|connection| {
                        synprov::ops::exec::exec(
                            &connection,
                            (&on.deployment.0, &on.deployment.1),
                            process,
                            command,
                            &mut ran.stdout,
                            &mut ran.stderr,
                        )
                        .map_err(|e| e.to_string())
                    });
                ran
            });
            Ok(show(several, &ran))
        }
    }
}

/// Each deployment's output under a `== host/deployment ==` line, then the recap; 0 when
/// the command exited 0 everywhere.
fn show(on: &[On], ran: &[Ran]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let name = |on: &On| {
        format!(
            "{}/{}",
            printable(&on.host.name),
            printable(&on.deployment.0)
        )
    };
    for (on, ran) in on.iter().zip(ran) {
        let _ = writeln!(out, "== {} ==", name(on));
        for bytes in [&ran.stdout, &ran.stderr] {
            let mut lines = PrintableLines::new(&mut out);
            let _ = lines.write_all(bytes);
            let _ = lines.finish();
        }
    }
    let width = on.iter().map(|on| name(on).len()).max().unwrap_or(0).max(4);
    let _ = writeln!(out, "\n{:width$}  exit", "host");
    let mut all_zero = true;
    for (on, ran) in on.iter().zip(ran) {
        let status = match &ran.status {
            Ok(code) => code.to_string(),
            Err(why) => format!("failed: {}", printable(why.lines().next().unwrap_or(""))),
        };
        all_zero &= matches!(ran.status, Ok(0));
        let _ = writeln!(out, "{:width$}  {status}", name(on));
    }
    if all_zero {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
