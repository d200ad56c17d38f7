//! `synprov status`: every selected host against what it recorded, hosts in parallel (one
//! connection each), printed host by host. Exit 0 when every deployment is as recorded and
//! healthy, 1 otherwise.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use synprov::generations::BackupRun;
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
            print!("{}", show(host, status, &inventory));
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn show(host: &str, status: &HostStatus, inventory: &synprov::inventory::Inventory) -> String {
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
        if let Some(good) = &d.backup_good {
            out.push_str(&format!(
                "    {}\n",
                printable(&last_good_backup(good, Utc::now()))
            ));
        }
        if let Some(drill) = d.verify_last.as_ref().filter(|run| run.ok) {
            out.push_str(&format!(
                "    last restore drill: {}: {}\n",
                drill.finished.format("%Y-%m-%d %H:%M:%S UTC"),
                one_line(&drill.message)
            ));
        }
        let settings = (inventory.deployments.get(&d.deployment)).and_then(|d| d.backup.as_ref());
        if let Some(warning) = settings.and_then(|s| stale(s, d.backup_good.as_ref(), Utc::now())) {
            out.push_str(&format!("    warning: {warning}\n"));
        }
        if let Some(run) = &d.acme_last {
            out.push_str(&format!("    {}\n", printable(&run.summary(Utc::now()))));
        }
        for problem in &d.problems {
            out.push_str(&format!("    ! {}\n", one_line(problem)));
        }
    }
    out
}

/// A warning when the scheduled backup has not succeeded for two periods of its schedule
/// (or never): a timer that stopped, a repository out of reach, a full disk.
fn stale(
    settings: &synprov::inventory::BackupSettings,
    good: Option<&BackupRun>,
    now: DateTime<Utc>,
) -> Option<String> {
    let Some(good) = good else {
        return Some("no backup has succeeded yet (`synprov backup` takes one now)".into());
    };
    let age = (now - good.finished).to_std().unwrap_or_default();
    (age > 2 * settings.schedule.period()).then(|| {
        format!(
            "the last good backup is older than two periods of its schedule ({})",
            &*settings.schedule
        )
    })
}

/// `last good backup: TIME (AGE ago), snapshot ID, N bytes`.
fn last_good_backup(run: &BackupRun, now: DateTime<Utc>) -> String {
    let age = (now - run.finished).to_std().unwrap_or_default();
    // Whole minutes: seconds would only make the line longer.
    let age = humantime::format_duration(std::time::Duration::from_secs(age.as_secs() / 60 * 60));
    let mut line = format!(
        "last good backup: {} ({age} ago)",
        run.finished.format("%Y-%m-%d %H:%M:%S UTC")
    );
    if let Some(snapshot) = &run.snapshot {
        line.push_str(&format!(", snapshot {snapshot}"));
    }
    if let Some(total) = run.total {
        line.push_str(&format!(", {total} bytes"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_older_than_two_periods_is_a_warning() {
        let inventory = synprov::inventory::parse(
            std::path::Path::new("t.toml"),
            "[hosts.a]\naddress = \"10.0.0.1\"\n[deployments.hs]\nserver_name = \"example.org\"\n\
             host = \"a\"\n[deployments.hs.backup]\nschedule = \"*-*-* 03:00\"\ndirectory = \"/var/backups/hs\"\n"
                .into(),
        )
        .unwrap();
        let settings = inventory.deployments["hs"].backup.as_ref().unwrap();
        let run = BackupRun::parse(
            "result=ok\nstarted=2026-12-07T03:00:00Z\nfinished=2026-12-07T03:01:00Z\n\
             generation=3\nsnapshot=0a1b2c3d\nadded=10\ntotal=2048\nmessage=m\n",
        )
        .unwrap();
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().to_utc();
        assert_eq!(
            stale(settings, Some(&run), at("2026-12-09T03:01:00Z")),
            None
        );
        assert_eq!(
            stale(settings, Some(&run), at("2026-12-09T03:02:00Z")).as_deref(),
            Some("the last good backup is older than two periods of its schedule (*-*-* 03:00)")
        );
        assert!(stale(settings, None, at("2026-12-07T03:00:00Z")).is_some());
    }

    #[test]
    fn the_last_good_backup_shows_its_age_and_snapshot() {
        let run = BackupRun::parse(
            "result=ok\nstarted=2026-12-07T03:00:00Z\nfinished=2026-12-07T03:01:00Z\n\
             generation=3\nsnapshot=0a1b2c3d\nadded=10\ntotal=2048\nmessage=m\n",
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2026-12-08T05:31:59Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            last_good_backup(&run, now),
            "last good backup: 2026-12-07 03:01:00 UTC (1day 2h 30m ago), snapshot 0a1b2c3d, 2048 bytes"
        );
    }
}
