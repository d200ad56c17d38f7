//! A deployment's backups on demand: a backup or a restore drill now (by starting the very
//! service its timer starts, so that a run by hand and a scheduled one are the same run),
//! and the list of its snapshots. What the host prints is read as hostile: bounded, and
//! parsed into typed values.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::OpsError;
use crate::apply::ApplyError;
use crate::confine;
use crate::generations::BackupRun;
use crate::generations::MAX_STATE_BYTES;
use crate::render::backup::{self, LAST, RESTIC, drill};
use crate::sh;
use crate::shell::{Command, Script};
use crate::transport::watch::Step;
use crate::transport::{Connection, OutputLimit};

/// What runs on the host: the backup, or the restore drill of its latest snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Backup,
    Drill,
}

impl Job {
    fn unit(self, deployment: &str) -> String {
        match self {
            Job::Backup => backup::unit(deployment),
            Job::Drill => drill::unit(deployment),
        }
    }

    fn state(self) -> &'static str {
        match self {
            Job::Backup => LAST,
            Job::Drill => drill::VERIFY_LAST,
        }
    }

    /// In the progress line: `backing up`, `restore drill of`.
    pub fn doing(self) -> &'static str {
        match self {
            Job::Backup => "backing up",
            Job::Drill => "restoring the latest snapshot into a scratch database and directory",
        }
    }
}

/// The exit status of a script on a deployment without backups.
const NO_BACKUP: i32 = 3;

/// The first lines of a script on a deployment's backup: the deploy directory entered
/// and checked, and a deployment whose files have no backup refused.
fn on_backup(dir: &str) -> Script {
    let mut s = confine::enter(dir);
    s.push(sh!(
        "{} || { echo 'no backup is configured here' >&2; exit {}; }\n",
        confine::regular(RESTIC),
        NO_BACKUP.to_string()
    ));
    s
}

/// Starts the job's service and waits for it (a oneshot service: `systemctl start`
/// returns when it has ended), then prints `since=` (the host's time before) and the job's
/// state file.
fn run_script(dir: &str, deployment: &str, job: Job) -> Script {
    let mut s = on_backup(dir);
    s.push(sh!(
        "echo \"since=$(date -u +%Y-%m-%dT%H:%M:%SZ)\"\n{} >&2\n{} && head -c {} -- {}\nexit 0\n",
        Command::new("systemctl")
            .arg("start")
            .arg("--")
            .arg(format!("{}.service", job.unit(deployment))),
        confine::regular(job.state()),
        MAX_STATE_BYTES.to_string(),
        job.state()
    ));
    s
}

/// Runs `job` of deployment `name` (in `dir`) now and returns its result, as its state
/// file records it.
pub fn run(
    connection: &Connection,
    name: &str,
    dir: &str,
    job: Job,
) -> Result<BackupRun, OpsError> {
    connection.begin(Step::Backup)?;
    let output = connection.run_script_within(
        &run_script(dir, name, job),
        OutputLimit::stdout(2 * MAX_STATE_BYTES),
    )?;
    connection.end_step();
    let host = connection.host_name();
    refused(host, name, &output)?;
    let said = output.stdout_text();
    let since = said
        .lines()
        .find_map(|l| l.strip_prefix("since="))
        .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| t.to_utc());
    let run = BackupRun::parse(&said);
    match (since, run) {
        (Some(since), Some(run)) if run.started >= since => Ok(run),
        _ => Err(ApplyError::Step {
            host: host.to_string(),
            step: format!("{} of {name}", job.doing()),
            tail: format!(
                "the service recorded no run: {}",
                crate::text::last_line(&output.tail(5))
            ),
        }
        .into()),
    }
}

/// A script that failed before it started anything: the deployment has no backup, or the
/// guard refused.
fn refused(host: &str, name: &str, output: &crate::transport::ExecOutput) -> Result<(), OpsError> {
    if output.success() {
        return Ok(());
    }
    Err(ApplyError::Step {
        host: host.to_string(),
        step: format!("reading the backups of {name}"),
        tail: if output.status == NO_BACKUP {
            "no backup is configured for it on this host: give it a [deployments.NAME.backup] table and apply".into()
        } else {
            output.tail(20)
        },
    }
    .into())
}

/// One snapshot of a deployment's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub time: DateTime<Utc>,
    /// The generation that was current when it was taken (its `generation-N` tag).
    pub generation: Option<u32>,
    /// What a restore of it writes, in bytes (`restic stats`).
    pub size: Option<u64>,
}

/// The most snapshots read: retention keeps far fewer.
const MAX_SNAPSHOTS: usize = 5000;

/// restic's `snapshots --json` entry, as much of it as is used.
#[derive(Deserialize)]
struct RawSnapshot {
    time: String,
    short_id: String,
    #[serde(default)]
    tags: Vec<String>,
}

fn is_short_id(id: &str) -> bool {
    id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads `restic snapshots --json`: entries whose ID or time is not restic's are dropped.
fn parse_snapshots(text: &str) -> Result<Vec<Snapshot>, String> {
    let raw: Vec<RawSnapshot> = serde_json::from_str(text.trim())
        .map_err(|e| format!("restic's list of snapshots is not JSON: {e}"))?;
    Ok(raw
        .into_iter()
        .take(MAX_SNAPSHOTS)
        .filter(|s| is_short_id(&s.short_id))
        .filter_map(|s| {
            Some(Snapshot {
                time: DateTime::parse_from_rfc3339(&s.time).ok()?.to_utc(),
                generation: (s.tags.iter())
                    .find_map(|t| t.strip_prefix("generation-")?.parse().ok()),
                id: s.short_id,
                size: None,
            })
        })
        .collect())
}

/// Reads `restic stats --json`'s lines, one per snapshot: their restore sizes.
fn parse_sizes(text: &str) -> Vec<Option<u64>> {
    #[derive(Deserialize)]
    struct Stats {
        total_size: u64,
    }
    text.lines()
        .map(|line| {
            serde_json::from_str::<Stats>(line)
                .ok()
                .map(|s| s.total_size)
        })
        .collect()
}

/// The snapshots of deployment `name` (in `dir`), oldest first, with their sizes.
pub fn snapshots(
    connection: &Connection,
    name: &str,
    dir: &str,
) -> Result<Vec<Snapshot>, OpsError> {
    let host = connection.host_name();
    connection.begin(Step::Backup)?;
    let mut s = on_backup(dir);
    s.push(sh!(
        "{}\n",
        Command::new("sh")
            .arg(RESTIC)
            .arg("snapshots")
            .arg("--json")
            .arg("--host")
            .arg(name)
            .arg("--tag")
            .arg("synprov")
    ));
    let output = connection.run_script_within(&s, OutputLimit::stdout(8 << 20))?;
    refused(host, name, &output)?;
    let failed = |why: String| -> OpsError {
        ApplyError::Step {
            host: host.to_string(),
            step: format!("listing the snapshots of {name}"),
            tail: why,
        }
        .into()
    };
    let mut snapshots = parse_snapshots(&output.stdout_text()).map_err(failed)?;
    if !snapshots.is_empty() {
        let mut s = on_backup(dir);
        for snapshot in &snapshots {
            s.push(sh!(
                "{} || echo\n",
                Command::new("sh")
                    .arg(RESTIC)
                    .arg("stats")
                    .arg("--json")
                    .arg(snapshot.id.as_str())
            ));
        }
        let output = connection.run_script_within(&s, OutputLimit::stdout(1 << 20))?;
        refused(host, name, &output)?;
        for (snapshot, size) in snapshots.iter_mut().zip(parse_sizes(&output.stdout_text())) {
            snapshot.size = size;
        }
    }
    connection.end_step();
    Ok(snapshots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_starts_the_service_its_timer_starts() {
        let text = run_script("/opt/synapse/hs", "hs", Job::Drill)
            .text()
            .to_string();
        assert!(
            text.ends_with(
                "synprov_regular backup/restic.sh || { echo 'no backup is configured here' >&2; exit 3; }\n\
                 echo \"since=$(date -u +%Y-%m-%dT%H:%M:%SZ)\"\n\
                 systemctl start -- synprov-backup-verify-hs.service >&2\n\
                 synprov_regular .synprov/backup/verify-last && head -c 4096 -- .synprov/backup/verify-last\nexit 0\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn restic_snapshots_are_read_as_hostile_json() {
        let text = r#"[{"time":"2026-12-07T08:34:37.96038064Z","tree":"63","paths":["/backup"],"hostname":"hs","tags":["synprov","generation-4"],"id":"86f0730fdd31075172074e7e770b99f0b2e78ec320b228ed827c0eb139319606","short_id":"86f0730f"},
            {"time":"yesterday","short_id":"0a1b2c3d","tags":[]},
            {"time":"2026-12-07T09:00:00Z","short_id":"$(reboot)","tags":[]},
            {"time":"2026-12-07T09:00:00Z","short_id":"0a1b2c3d","tags":["generation-x"]}]"#;
        let snapshots = parse_snapshots(text).unwrap();
        assert_eq!(
            snapshots,
            [
                Snapshot {
                    id: "86f0730f".into(),
                    time: DateTime::parse_from_rfc3339("2026-12-07T08:34:37.96038064Z")
                        .unwrap()
                        .to_utc(),
                    generation: Some(4),
                    size: None,
                },
                Snapshot {
                    id: "0a1b2c3d".into(),
                    time: DateTime::parse_from_rfc3339("2026-12-07T09:00:00Z")
                        .unwrap()
                        .to_utc(),
                    generation: None,
                    size: None,
                }
            ]
        );
        assert!(parse_snapshots("Fatal: wrong password").is_err());
        assert_eq!(
            parse_sizes("{\"total_size\":100006,\"total_file_count\":4}\n\nnot json\n"),
            [Some(100006), None, None]
        );
    }
}
