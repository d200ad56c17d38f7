//! `synprov status`: every selected host against what it recorded, hosts in parallel (one
//! connection each), printed host by host. Exit 0 when every deployment is as recorded and
//! healthy, 1 otherwise.

use std::process::ExitCode;

use synprov::parallel::each_at_once;
use synprov::status::{self, DeploymentStatus};
use synprov::transport::Connection;
use synprov::ui::{one_line, printable};

use crate::cli::Target;

/// What one host said, or why it could not be asked.
type HostStatus = Result<Vec<DeploymentStatus>, String>;

pub fn run(target: &Target) -> miette::Result<ExitCode> {
    let inventory = super::load_inventory(&target.inventory)?;
    let hosts = inventory.select(&target.limit).map_err(|message| {
        miette::miette!(help = "`synprov check` lists the hosts", "{message}")
    })?;
    let mut options = super::connect_options(target.known_hosts.clone());
    options.deadlines = inventory.rollout.deadlines.clone();
    let parallel = target.parallel.unwrap_or(inventory.rollout.parallel).max(1) as usize;
    // In the order of their names, as `select` gives them.
    let results: Vec<(String, HostStatus)> = each_at_once(&hosts, parallel, |name| {
        let deployments = super::deployments_on(&inventory, name, None);
        let status = Connection::open(&inventory.hosts[name], &options)
            .map_err(|e| super::failed(e.into()))
            .and_then(|connection| {
                status::host_status(&connection, &deployments).map_err(|e| super::failed(e.into()))
            });
        (name.clone(), status)
    });
    let ok = results
        .iter()
        .all(|(_, s)| s.as_ref().is_ok_and(|d| d.iter().all(DeploymentStatus::ok)));
    for (host, status) in &results {
        if target.json {
            let value = match status {
                Ok(deployments) => serde_json::json!({ "host": host, "deployments": deployments }),
                Err(error) => serde_json::json!({ "host": host, "error": error }),
            };
            println!("{}", synprov::ui::json_line(&value));
        } else {
            print!("{}", show(host, status));
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn show(host: &str, status: &HostStatus) -> String {
    let mut out = String::new();
    let deployments = match status {
        Ok(deployments) => deployments,
        Err(error) => {
            return format!(
                "host {}: cannot be checked\n  {}\n",
                printable(host),
                one_line(error.lines().next().unwrap_or_default())
            );
        }
    };
    out.push_str(&format!("host {}:\n", printable(host)));
    for d in deployments {
        let generation = d
            .generation
            .as_ref()
            .map_or("no generation".to_string(), |g| {
                format!(
                    "generation {} of {} by {} ({})",
                    g.number,
                    one_line(&g.at),
                    one_line(&g.by),
                    one_line(&g.command)
                )
            });
        let verdict = if d.ok() {
            format!("ok, {} check(s) healthy", d.healthy)
        } else {
            format!("{} problem(s)", d.problems.len())
        };
        out.push_str(&format!(
            "  {} ({}): {generation}: {verdict}\n",
            printable(&d.deployment),
            printable(&d.dir)
        ));
        for problem in &d.problems {
            out.push_str(&format!("    ! {}\n", one_line(problem)));
        }
    }
    out
}
