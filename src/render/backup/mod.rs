//! The files of a deployment's scheduled backup: the script its host runs, the restore
//! drill that proves it, the systemd services that run them and the timers that start the
//! services, restic's wrapper and restic's password.
//!
//! The host needs no controller to back up: the timer starts the service on schedule, the
//! script dumps the database in the db container, stages the signing key and the current
//! generation's record, and runs restic in a container over them and the media store's own
//! files (not the remote media cache nor URL previews), then forgets what the retention no
//! longer keeps. Each run appends its result to the audit log and writes a state file that
//! `status` reads. The drill ([`drill`]) does the same for a restore of the latest snapshot.

pub mod drill;

use super::postgres::{PG_DUMP, as_owner};
use crate::inventory::values::Calendar;
use crate::inventory::{BackupSettings, Deployment, Repository};
use crate::sh;
use crate::shell::{Command, Script};

/// Where the backup's files are written, relative to the deploy directory.
pub const DIR: &str = "backup";

/// restic's password, read by restic from the file (never from a command line).
pub const PASSWORD_FILE: &str = "backup/restic-password";

/// `sh backup/restic.sh ARGS` runs `restic ARGS` on the deployment's repository, in a
/// container of the inventory's image: the backup, the drill, `synprov backups` and
/// `synprov restore` all reach the repository through this one file.
pub const RESTIC: &str = "backup/restic.sh";

/// What the script keeps between runs, relative to the deploy directory: `last` (the state
/// of the last run), `last-good` (of the last run that succeeded), restic's cache, the
/// stage, and `ssh/` (the key and known_hosts of an SFTP repository).
pub const STATE_DIR: &str = ".synprov/backup";

/// The state of the last run, and of the last run that succeeded ([`STATE_DIR`]'s `last`
/// and `last-good`): `key=value` lines, read by `generations::BackupRun`.
pub const LAST: &str = ".synprov/backup/last";
pub const LAST_GOOD: &str = ".synprov/backup/last-good";

/// Where a snapshot is restored (by the drill, or by `synprov restore`), mounted as
/// `/restore` in restic's container: a scratch directory, never the live data.
pub const RESTORED: &str = ".synprov/backup/restore";

/// The SSH key and known_hosts of an SFTP repository, mounted as `/ssh` in restic's
/// container.
pub const SSH_DIR: &str = ".synprov/backup/ssh";

/// What an SFTP repository needs on the deployment's main host beyond its files, done by
/// `apply` (`apply::backup_key`): an SSH key made there, authorised on the repository's
/// host when the inventory has it, and known_hosts for restic's ssh.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The inventory's host that holds the repository: the key is authorised for its user
    /// over synprov's own connection, and its key (as synprov's known_hosts holds it once
    /// connected) goes into restic's known_hosts. `None` for a server outside the
    /// inventory, whose operator authorises the key and whose key the inventory gives.
    pub host: Option<crate::inventory::Host>,
    /// Where restic's ssh connects (known_hosts names it so).
    pub address: String,
    pub port: u16,
    /// The server's key, for a server outside the inventory.
    pub host_key: Option<crate::inventory::values::HostKey>,
    /// The repository's directory, made on an inventory host before the first backup.
    pub path: String,
    /// The image whose `ssh-keygen` makes the key (restic's: it has ssh for SFTP).
    pub image: String,
}

/// The SFTP side of `settings`, when its repository is remote.
pub fn remote(
    hosts: &std::collections::BTreeMap<String, crate::inventory::Host>,
    settings: &BackupSettings,
) -> Option<Remote> {
    let image = settings.image.to_string();
    match &settings.repository {
        Repository::Directory(_) => None,
        Repository::InventoryHost {
            host,
            address,
            port,
            path,
            ..
        } => Some(Remote {
            host: hosts.get(host).cloned(),
            address: address
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: *port,
            host_key: None,
            path: path.to_string(),
            image,
        }),
        Repository::Server {
            target,
            port,
            host_key,
        } => Some(Remote {
            host: None,
            address: target
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: *port,
            host_key: Some(host_key.clone()),
            path: target.path.to_string(),
            image,
        }),
    }
}

/// The systemd unit name of deployment `name`'s backup (`.service` and `.timer`).
pub fn unit(name: &str) -> String {
    format!("synprov-backup-{name}")
}

/// The backup's files for the deployment's main host: (path, contents), the password among
/// them.
pub fn files(
    deployment: &Deployment,
    settings: &BackupSettings,
    password: &str,
) -> Vec<(String, String)> {
    let unit = unit(&deployment.name);
    let drill = drill::unit(&deployment.name);
    vec![
        (
            format!("{DIR}/backup.sh"),
            script(deployment, settings).text().to_string(),
        ),
        (
            RESTIC.to_string(),
            restic_wrapper(deployment, settings).text().to_string(),
        ),
        (
            format!("{DIR}/verify.sh"),
            drill::script(deployment).text().to_string(),
        ),
        (
            format!("{DIR}/{unit}.service"),
            service(deployment, "backup", "backup.sh"),
        ),
        (
            format!("{DIR}/{unit}.timer"),
            timer(deployment, "backup", &settings.schedule, settings),
        ),
        (
            format!("{DIR}/{drill}.service"),
            service(deployment, "restore drill", "verify.sh"),
        ),
        (
            format!("{DIR}/{drill}.timer"),
            timer(
                deployment,
                "restore drill",
                &settings.verify_schedule,
                settings,
            ),
        ),
        (PASSWORD_FILE.to_string(), format!("{password}\n")),
    ]
}

/// A oneshot service running `script`, after Docker, at low CPU and I/O priority beside
/// the homeserver.
fn service(deployment: &Deployment, what: &str, script: &str) -> String {
    format!(
        "# Written by synprov: the {what} of deployment {name}.\n\
         [Unit]\n\
         Description=synprov {what} of {name} ({server})\n\
         Requires=docker.service\n\
         After=docker.service network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart=/bin/sh {dir}/{DIR}/{script}\n\
         Nice=10\n\
         IOSchedulingClass=idle\n",
        name = deployment.name,
        server = deployment.server_name,
        dir = deployment.deploy_dir,
    )
}

/// The schedule; `Persistent` runs a job missed while the host was off at its next boot.
fn timer(
    deployment: &Deployment,
    what: &str,
    schedule: &Calendar,
    settings: &BackupSettings,
) -> String {
    format!(
        "# Written by synprov: when the {what} of deployment {name} runs.\n\
         [Unit]\n\
         Description=synprov {what} of {name} on schedule\n\
         \n\
         [Timer]\n\
         OnCalendar={schedule}\n\
         RandomizedDelaySec={delay}\n\
         Persistent=true\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        name = deployment.name,
        delay = settings.randomized_delay.as_secs(),
    )
}

/// Where restic finds the repository: its `-r`, the `docker run` options that reach it
/// (a mount, or the SSH files and the network) and restic's options for SFTP.
struct Reach {
    repository: String,
    docker: Vec<String>,
    restic: Vec<String>,
    /// A directory on the host to make before the first run.
    make: Option<String>,
}

fn reach(deployment: &Deployment, settings: &BackupSettings) -> Reach {
    let sftp = |user: &str, address: &str, port: u16, path: &str| {
        let ssh_host = address.trim_start_matches('[').trim_end_matches(']');
        Reach {
            repository: format!("sftp:{user}@{address}:{path}"),
            docker: vec![
                "-v".into(),
                format!("{}/{SSH_DIR}:/ssh:ro", deployment.deploy_dir),
            ],
            restic: vec![
                "-o".into(),
                format!(
                    "sftp.command=ssh -i /ssh/id_ed25519 -o UserKnownHostsFile=/ssh/known_hosts \
                     -o StrictHostKeyChecking=yes -o BatchMode=yes -p {port} {user}@{ssh_host} -s sftp"
                ),
            ],
            make: None,
        }
    };
    match &settings.repository {
        Repository::Directory(dir) => Reach {
            repository: "/repository".into(),
            docker: vec![
                "--network".into(),
                "none".into(),
                "-v".into(),
                format!("{dir}:/repository"),
            ],
            restic: Vec::new(),
            make: Some(dir.to_string()),
        },
        Repository::InventoryHost {
            user,
            address,
            port,
            path,
            ..
        } => sftp(user, address, *port, path),
        Repository::Server { target, port, .. } => {
            sftp(&target.user, &target.host, *port, &target.path)
        }
    }
}

/// `backup/restic.sh`: restic in a container of the image, as root (it reads the 0600
/// password and root's media), with the password file, its cache, the stage and the media
/// store read-only, the scratch directory of restores, and what reaches the repository.
fn restic_wrapper(deployment: &Deployment, settings: &BackupSettings) -> Script {
    let reach = reach(deployment, settings);
    let dir = deployment.deploy_dir.to_string();
    let run = reach
        .docker
        .iter()
        .fold(
            Command::new("docker")
                .arg("run")
                .arg("--rm")
                .arg("--hostname")
                .arg(deployment.name.as_str())
                .arg("-e")
                .arg("RESTIC_PASSWORD_FILE=/config/restic-password")
                .arg("-e")
                .arg("RESTIC_CACHE_DIR=/cache")
                .arg("-v")
                .arg(format!("{dir}/{DIR}:/config:ro"))
                .arg("-v")
                .arg(format!("{dir}/{STATE_DIR}/cache:/cache"))
                .arg("-v")
                .arg(format!("{dir}/{STATE_DIR}/stage:/backup:ro"))
                .arg("-v")
                .arg(format!("{dir}/media:/media:ro"))
                .arg("-v")
                .arg(format!("{dir}/{RESTORED}:/restore")),
            |c, a| c.arg(a.as_str()),
        )
        .arg("--")
        .arg(settings.image.to_string())
        .arg("-r")
        .arg(reach.repository.as_str());
    let run = reach.restic.iter().fold(run, |c, a| c.arg(a.as_str()));
    sh!(
        "#!/bin/sh\n\
         # Written by synprov: restic on the repository of deployment {}.\n\
         # `sh backup/restic.sh ARGS` runs `restic ARGS` there.\n\
         exec {} \"$@\"\n",
        deployment.name.as_str(),
        run
    )
}

/// `docker`, a shell function: `docker compose -f` is the legacy `docker-compose -f` where
/// the Compose plugin is missing.
pub(crate) fn compose_fallback() -> Script {
    sh!(
        "# docker compose, or the legacy docker-compose where the plugin is missing.\n\
         docker() {\n\
         \x20   if [ \"$1 $2\" = 'compose -f' ] && ! command docker compose version >/dev/null 2>&1; then\n\
         \x20       shift; command docker-compose \"$@\"\n\
         \x20   else\n\
         \x20       command docker \"$@\"\n\
         \x20   fi\n\
         }\n"
    )
}

/// The start shared by the backup and the drill: the deploy directory entered, the
/// current generation, `docker` (with Compose v1 where v2 is missing), `restic` (the
/// wrapper), and `finish`, which records a run (`$1`: ok or failed, `$2`: what happened)
/// in the audit log and in `STATE_DIR/last_file` (and, when it succeeded, `good_file`),
/// calls the script's own `cleanup`, and ends the script with it.
fn prelude(
    deployment: &Deployment,
    what: &str,
    unit: &str,
    last_file: &str,
    good_file: Option<&str>,
) -> Script {
    let mut s = sh!(
        "#!/bin/sh\n\
         # Written by synprov: the {} of deployment {}, run by {}.service.\n\
         set -u\numask 077\ncd -- {} || exit 1\n",
        what,
        deployment.name.as_str(),
        unit,
        deployment.deploy_dir.to_string()
    );
    s.push(sh!(
        "state={}\n\
         started=$(date -u +%Y-%m-%dT%H:%M:%SZ)\n\
         generation=$(ls -- .synprov/generations 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -n 1)\n\
         snapshot= added= total=\n",
        STATE_DIR
    ));
    s.push(compose_fallback());
    s.push(sh!(
        "restic() {\n\
         \x20   sh {} \"$@\"\n\
         }\n",
        RESTIC
    ));
    let keep_good = match good_file {
        Some(good) => sh!("cp -f -- \"$state/{}\" \"$state/{}\"; ", last_file, good),
        None => sh!(""),
    };
    s.push(sh!(
        "finish() {\n\
         \x20   cleanup\n\
         \x20   host=$(hostname | tr -c 'A-Za-z0-9._\\n-' _)\n\
         \x20   if [ -n \"$generation\" ]; then of=\"generation $generation\"; else of=-; fi\n\
         \x20   printf '%s\\t%s\\t%s\\t%s\\t%s\\n' \"$started\" \"timer@$host\" {} \
         \"$of\" {}\" $1: $2\" >> .synprov/audit.log\n\
         \x20   printf 'result=%s\\nstarted=%s\\nfinished=%s\\ngeneration=%s\\nsnapshot=%s\\nadded=%s\\ntotal=%s\\nmessage=%s\\n' \
         \"$1\" \"$started\" \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\" \"$generation\" \"$snapshot\" \"$added\" \"$total\" \"$2\" \
         > \"$state/{}.new\" && mv -f -- \"$state/{}.new\" \"$state/{}\"\n\
         \x20   if [ \"$1\" = ok ]; then {}exit 0; fi\n\
         \x20   echo {}\" failed: $2\" >&2\n\
         \x20   exit 1\n\
         }\n\
         mkdir -p -m 700 -- \"$state/cache\" || exit 1\n",
        format!("{what} (timer)"),
        what,
        last_file,
        last_file,
        last_file,
        keep_good,
        what
    ));
    s
}

/// The backup script. It stops at the first failure, reports it (audit log, state file,
/// exit status: the service fails) and leaves no stage behind.
fn script(deployment: &Deployment, settings: &BackupSettings) -> Script {
    let dump = drill::db_shell(&format!("exec {}", as_owner(PG_DUMP)));
    // Grouped by host alone (the deployment's name, given to every snapshot), so that the
    // generation's tag never splits the snapshots into groups retention would not prune.
    let forget = Command::new("restic")
        .arg("forget")
        .arg("--prune")
        .arg("--host")
        .arg(deployment.name.as_str())
        .arg("--tag")
        .arg("synprov")
        .arg("--group-by")
        .arg("host")
        .arg("--keep-daily")
        .arg(settings.retention.daily.to_string())
        .arg("--keep-weekly")
        .arg(settings.retention.weekly.to_string())
        .arg("--keep-monthly")
        .arg(settings.retention.monthly.to_string());
    let mut s = prelude(
        deployment,
        "backup",
        &unit(&deployment.name),
        "last",
        Some("last-good"),
    );
    s.push(sh!(
        "stage=\"$state/stage\"\n\
         cleanup() {\n\
         \x20   rm -rf -- \"$stage\"\n\
         }\n\
         rm -rf -- \"$stage\" && mkdir -m 700 -- \"$stage\" || finish failed 'the stage cannot be made'\n\
         [ -n \"$generation\" ] || finish failed 'the deployment has no generation yet: apply it first'\n\
         [ -d media ] || finish failed 'the media store is missing'\n"
    ));
    if let Some(make) = &reach(deployment, settings).make {
        s.push(sh!(
            "mkdir -p -m 700 -- {} || finish failed 'the repository directory cannot be made'\n",
            make.as_str()
        ));
    }
    s.push(sh!(
        "cp -- \".synprov/generations/$generation/record.json\" \"$stage/record.json\" \
         || finish failed \"the record of generation $generation cannot be read\"\n\
         cp -- {} \"$stage/signing.key\" || finish failed 'the signing key cannot be read'\n\
         {} > \"$stage/db.dump\" || finish failed 'pg_dump failed (is the db container running?)'\n\
         restic cat config >/dev/null 2>&1 || restic init >/dev/null \
         || finish failed 'the repository can neither be opened nor made'\n\
         set -- /backup\n\
         for kept in local_content local_thumbnails; do\n\
         \x20   if [ -d \"media/$kept\" ]; then set -- \"$@\" \"/media/$kept\"; fi\n\
         done\n\
         restic backup --json --host {} --tag synprov --tag \"generation-$generation\" \"$@\" > \"$state/backup.json\" \
         || finish failed 'restic backup failed'\n\
         summary=$(grep '\"message_type\":\"summary\"' \"$state/backup.json\")\n\
         snapshot=$(printf '%s' \"$summary\" | sed -n 's/.*\"snapshot_id\":\"\\([0-9a-f]*\\)\".*/\\1/p')\n\
         added=$(printf '%s' \"$summary\" | sed -n 's/.*\"data_added\":\\([0-9]*\\).*/\\1/p')\n\
         total=$(printf '%s' \"$summary\" | sed -n 's/.*\"total_bytes_processed\":\\([0-9]*\\).*/\\1/p')\n\
         {} >/dev/null || finish failed \"snapshot $snapshot was taken, but forgetting old ones failed\"\n\
         finish ok \"snapshot $snapshot, $total bytes, $added added\"\n",
        format!("synapse/{}.signing.key", deployment.server_name),
        dump,
        deployment.name.as_str(),
        forget
    ));
    s
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::inventory::{Inventory, parse};

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF8pSLiigXVDjCu0wJpAUHLAGBExEk8hYHnSmkVrV/W7";

    fn inventory(backup: &str) -> Inventory {
        let text = format!(
            "[hosts.a]\naddress = \"10.0.0.1\"\n\
             [hosts.c]\naddress = \"203.0.113.3\"\nprivate_address = \"10.0.0.3\"\nuser = \"deploy\"\nport = 2200\n\
             [deployments.hs]\nserver_name = \"example.org\"\nhost = \"a\"\ndeploy_dir = \"/opt/synapse/hs\"\n\
             [deployments.hs.backup]\n{backup}"
        );
        parse(Path::new("t.toml"), text).unwrap()
    }

    fn rendered(backup: &str) -> Vec<(String, String)> {
        let inventory = inventory(backup);
        let deployment = &inventory.deployments["hs"];
        files(deployment, deployment.backup.as_ref().unwrap(), "pass")
    }

    fn file<'a>(files: &'a [(String, String)], path: &str) -> &'a str {
        &files.iter().find(|(p, _)| p == path).unwrap().1
    }

    #[test]
    fn the_timer_starts_the_service_on_schedule_with_the_delay() {
        let files = rendered(
            "schedule = \"Mon..Fri 03:15\"\nrandomized_delay = \"45m\"\ndirectory = \"/var/backups/hs\"\n",
        );
        assert_eq!(
            files.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            [
                "backup/backup.sh",
                "backup/restic.sh",
                "backup/verify.sh",
                "backup/synprov-backup-hs.service",
                "backup/synprov-backup-hs.timer",
                "backup/synprov-backup-verify-hs.service",
                "backup/synprov-backup-verify-hs.timer",
                "backup/restic-password"
            ]
        );
        assert_eq!(
            file(&files, "backup/synprov-backup-hs.timer"),
            "# Written by synprov: when the backup of deployment hs runs.\n[Unit]\n\
             Description=synprov backup of hs on schedule\n\n[Timer]\nOnCalendar=Mon..Fri 03:15\n\
             RandomizedDelaySec=2700\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n"
        );
        assert_eq!(
            file(&files, "backup/synprov-backup-hs.service"),
            "# Written by synprov: the backup of deployment hs.\n[Unit]\n\
             Description=synprov backup of hs (example.org)\nRequires=docker.service\n\
             After=docker.service network-online.target\nWants=network-online.target\n\n\
             [Service]\nType=oneshot\nExecStart=/bin/sh /opt/synapse/hs/backup/backup.sh\n\
             Nice=10\nIOSchedulingClass=idle\n"
        );
        assert!(
            file(&files, "backup/synprov-backup-verify-hs.timer").contains("\nOnCalendar=weekly\n"),
            "the restore drill runs weekly by default"
        );
        assert!(
            file(&files, "backup/synprov-backup-verify-hs.service")
                .contains("\nExecStart=/bin/sh /opt/synapse/hs/backup/verify.sh\n")
        );
        assert_eq!(file(&files, "backup/restic-password"), "pass\n");
    }

    #[test]
    fn the_script_to_a_directory_on_the_host() {
        let files = rendered(
            "directory = \"/var/backups/hs\"\n[deployments.hs.backup.retention]\ndaily = 3\nweekly = 2\nmonthly = 1\n",
        );
        insta::assert_snapshot!(file(&files, "backup/backup.sh"));
    }

    #[test]
    fn the_restore_drill_script() {
        let files = rendered("directory = \"/var/backups/hs\"\n");
        insta::assert_snapshot!(file(&files, "backup/verify.sh"));
    }

    #[test]
    fn the_script_to_sftp_reaches_the_server_with_the_known_host_key_only() {
        let files = rendered(&format!(
            "sftp = \"backup@nas.example.org:/srv/restic/hs\"\nport = 2222\nhost_key = \"{KEY}\"\n"
        ));
        let script = file(&files, "backup/restic.sh");
        assert!(
            script.contains(
                " -v /opt/synapse/hs/.synprov/backup/ssh:/ssh:ro -- restic/restic:latest \
                 -r sftp:backup@nas.example.org:/srv/restic/hs -o 'sftp.command=ssh -i /ssh/id_ed25519 \
                 -o UserKnownHostsFile=/ssh/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes \
                 -p 2222 backup@nas.example.org -s sftp' \"$@\"\n"
            ),
            "{script}"
        );
        assert!(!script.contains("--network none"), "{script}");
        let files = rendered("sftp = \"c:/srv/restic/hs\"\n");
        assert!(
            file(&files, "backup/restic.sh").contains(
                "-r sftp:deploy@10.0.0.3:/srv/restic/hs -o 'sftp.command=ssh -i /ssh/id_ed25519 \
                 -o UserKnownHostsFile=/ssh/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes \
                 -p 2200 deploy@10.0.0.3 -s sftp'"
            )
        );
    }

    /// A `docker` for the script to run: it logs its arguments, answers as Compose, pg_dump
    /// and restic would, and fails `restic backup` when `FAIL_BACKUP` is set.
    const FAKE_DOCKER: &str = r#"#!/bin/sh
echo "$*" >> "$DOCKER_LOG"
case "$*" in
  "compose version") exit 0 ;;
  compose*pg_dump*) echo DUMP ;;
  *" backup --json "*)
    [ -z "$FAIL_BACKUP" ] || exit 1
    echo '{"message_type":"status","percent_done":1}'
    echo '{"message_type":"summary","data_added":1024,"total_bytes_processed":4096,"snapshot_id":"0a1b2c3d"}' ;;
esac
"#;

    #[test]
    fn a_run_records_its_result_in_the_audit_log_and_the_state_files() {
        let dir = tempfile::tempdir().unwrap();
        let deploy = dir.path().join("hs");
        let bin = dir.path().join("bin");
        for sub in [
            ".synprov/generations/3",
            "synapse",
            "media/local_content",
            "../bin",
        ] {
            std::fs::create_dir_all(deploy.join(sub)).unwrap();
        }
        std::fs::write(deploy.join(".synprov/generations/3/record.json"), "{}").unwrap();
        std::fs::write(deploy.join("synapse/example.org.signing.key"), "key").unwrap();
        std::fs::write(bin.join("docker"), FAKE_DOCKER).unwrap();
        std::fs::set_permissions(
            bin.join("docker"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let text = format!(
            "[hosts.a]\naddress = \"10.0.0.1\"\n[deployments.hs]\nserver_name = \"example.org\"\n\
             host = \"a\"\ndeploy_dir = \"{}\"\n[deployments.hs.backup]\ndirectory = \"{}\"\n",
            deploy.display(),
            dir.path().join("repository").display()
        );
        let inventory = parse(Path::new("t.toml"), text).unwrap();
        let deployment = &inventory.deployments["hs"];
        let settings = deployment.backup.as_ref().unwrap();
        let script = script(deployment, settings);
        std::fs::create_dir_all(deploy.join(DIR)).unwrap();
        std::fs::write(
            deploy.join(RESTIC),
            restic_wrapper(deployment, settings).text(),
        )
        .unwrap();
        let log = dir.path().join("docker.log");
        let run = |fail: bool| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(script.text())
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .env("DOCKER_LOG", &log)
                .env("FAIL_BACKUP", if fail { "1" } else { "" })
                .status()
                .unwrap()
                .success()
        };
        let read = |path: &str| std::fs::read_to_string(deploy.join(path)).unwrap();

        assert!(run(false));
        let last = crate::generations::BackupRun::parse(&read(LAST)).unwrap();
        assert!(last.ok);
        assert_eq!(
            (
                last.generation,
                last.snapshot.as_deref(),
                last.added,
                last.total
            ),
            (Some(3), Some("0a1b2c3d"), Some(1024), Some(4096))
        );
        assert_eq!(read(LAST_GOOD), read(LAST));
        let entries: Vec<_> = read(".synprov/audit.log")
            .lines()
            .filter_map(crate::generations::AuditEntry::parse)
            .collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].generation, Some(3));
        assert_eq!(entries[0].command, "backup (timer)");
        assert_eq!(
            entries[0].result,
            "backup ok: snapshot 0a1b2c3d, 4096 bytes, 1024 added"
        );
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(
            calls.contains(
                "backup --json --host hs --tag synprov --tag generation-3 /backup /media/local_content\n"
            ),
            "only the media that exist, never the remote cache: {calls}"
        );
        assert!(calls.contains("forget --prune --host hs"), "{calls}");
        assert!(
            !deploy.join(".synprov/backup/stage").exists(),
            "the stage is removed"
        );

        assert!(!run(true), "a failed backup fails the service");
        let last = crate::generations::BackupRun::parse(&read(LAST)).unwrap();
        assert!(!last.ok);
        assert_eq!(last.message, "restic backup failed");
        assert!(
            crate::generations::BackupRun::parse(&read(LAST_GOOD))
                .unwrap()
                .ok
        );
        assert_eq!(read(".synprov/audit.log").lines().count(), 2);
        assert!(!deploy.join(".synprov/backup/stage").exists());
    }

    #[test]
    fn every_script_is_valid_shell() {
        for backup in [
            "directory = \"/var/backups/hs\"\n".to_string(),
            "sftp = \"c:/srv/restic/hs\"\n".to_string(),
            format!("sftp = \"b@[2001:db8::1]:/srv/r\"\nhost_key = \"{KEY}\"\n"),
        ] {
            let files = rendered(&backup);
            for script in ["backup/backup.sh", "backup/restic.sh", "backup/verify.sh"] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("script.sh");
                std::fs::write(&path, file(&files, script)).unwrap();
                let out = std::process::Command::new("sh")
                    .arg("-n")
                    .arg(&path)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{backup} {script}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}
