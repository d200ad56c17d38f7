//! `synprov destroy --host NAME [--deployment D] [--purge] [--yes]`: each deployment of the
//! host (or the one named) taken down by the library ([`synprov::apply::destroy`]); here,
//! the confirmation `--purge` needs and what is printed.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use synprov::apply::destroy::{self, Destroyed, Options};
use synprov::generations::Origin;
use synprov::transport::Connection;
use synprov::ui::printable;

use crate::cli::HostTarget;

pub fn run(
    target: &HostTarget,
    purge: bool,
    yes: bool,
    files_only: bool,
) -> miette::Result<ExitCode> {
    // An orphan is looked up on the host, over the connection the destroy then uses.
    let (on_host, connected) = match (super::host_deployments(target), &target.deployment) {
        (Ok(on_host), _) => (on_host, None),
        (Err(not_in_inventory), Some(name)) => {
            let (on_host, connection) = orphan(target, name, &not_in_inventory)?;
            (on_host, Some(connection))
        }
        (Err(error), None) => return Err(error),
    };
    if purge && !yes {
        confirm_purge(&on_host.host.name, &on_host.deployments)?;
    }
    let connection = match connected {
        Some(connection) => connection,
        None => on_host.connect(target)?,
    };
    let super::OnHost {
        host, deployments, ..
    } = on_host;
    let options = Options {
        purge,
        files_only,
        origin: Origin::here(if purge { "destroy --purge" } else { "destroy" }, None),
    };
    let report =
        |host: &str, message: &str| println!("[{}] {}", printable(host), printable(message));
    for (name, dir) in &deployments {
        let destroyed = destroy::destroy(&connection, name, dir, &options, &report)?;
        println!(
            "[{}] {}",
            printable(&host.name),
            printable(&summary(name, dir, purge, &destroyed))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The deployment `name` of the host that the inventory no longer has, found in the
/// host's index (see `plan`'s orphans); `not_in_inventory` says why it was looked for.
/// Returns it with the connection it was found over.
fn orphan(
    target: &HostTarget,
    name: &str,
    not_in_inventory: &miette::Report,
) -> miette::Result<(super::OnHost, Connection)> {
    let inventory = super::load_inventory(&target.inventory)?;
    let host = super::host_named(&inventory, &target.host)?;
    let connection = Connection::open(&host, &super::connect_options(target.known_hosts.clone()))?;
    let dirs: Vec<String> = synprov::apply::host_facts(&connection)?
        .indexed
        .into_iter()
        .filter(|i| i.name == name)
        .map(|i| i.dir)
        .collect();
    match dirs.as_slice() {
        [dir] => Ok((
            super::OnHost {
                inventory,
                deployments: vec![(name.to_string(), dir.clone())],
                host,
            },
            connection,
        )),
        others => Err(miette::miette!(
            help = "`synprov plan` names the deployments a host has that the inventory does not",
            "{not_in_inventory}, and the host's index has {} deployment(s) of that name{}",
            others.len(),
            if others.is_empty() {
                String::new()
            } else {
                format!(": {}", printable(&others.join(", ")))
            }
        )),
    }
}

/// What a destroy did, in one line: what was removed and what is kept.
fn summary(name: &str, dir: &str, purge: bool, destroyed: &Destroyed) -> String {
    if destroyed.absent {
        return format!("{name}: nothing deployed in {dir}: nothing to do");
    }
    let down = if destroyed.stack_down {
        "stack down, "
    } else {
        ""
    };
    if purge {
        return format!("{name}: {down}{dir} removed with all its data");
    }
    let kept = if destroyed.kept.is_empty() {
        "nothing".to_string()
    } else {
        destroyed.kept.join(", ")
    };
    format!(
        "{name}: {down}{} file(s), the sockets and logs removed; kept in {dir}: {kept} \
         (`synprov apply` brings the same server back)",
        destroyed.removed_files
    )
}

/// `--purge` deletes what cannot be made again (the database, the signing key): the
/// operator types each deployment's name back on a terminal; with no terminal to ask on,
/// it is refused before anything is touched (`--yes` is the scripted way).
fn confirm_purge(host: &str, deployments: &[(String, String)]) -> miette::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let dirs: Vec<String> = deployments.iter().map(|(_, d)| d.clone()).collect();
        return Err(miette::miette!(
            help = "run it on a terminal to confirm by typing the deployment's name, or add `--yes` where a script means it",
            "--purge would remove {} on {} with its database and media, and there is no terminal to confirm it on: nothing was changed",
            printable(&dirs.join(", ")),
            printable(host)
        ));
    }
    for (name, dir) in deployments {
        eprint!(
            "--purge removes {} on {}: its database, media, signing key, generations and audit log.\n\
             Type the deployment's name ({}) to confirm: ",
            printable(dir),
            printable(host),
            printable(name)
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        stdin
            .lock()
            .read_line(&mut answer)
            .map_err(|e| miette::miette!("cannot read the confirmation: {e}"))?;
        if answer.trim_end_matches(['\n', '\r']) != name {
            return Err(miette::miette!(
                help = "type the name exactly, or leave out --purge to keep the data",
                "`{}` is not `{}`: nothing was changed",
                printable(answer.trim_end()),
                printable(name)
            ));
        }
    }
    Ok(())
}
