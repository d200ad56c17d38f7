//! `[deployments.NAME.backup]`: the schedule, the delay, the retention and the repository,
//! each checked where it is written.

use std::ops::RangeInclusive;
use std::time::Duration;

use toml::Spanned;

use super::{Checker, suggestion};
use crate::inventory::raw::RawBackup;
use crate::inventory::values::{Calendar, DeployDir, HostKey, ImageRef, SftpTarget};
use crate::inventory::{BackupSettings, Host, InventoryError, Repository, Retention};

/// Bounds of `randomized_delay`: up to a day, the longest period that makes sense to spread.
const DELAY: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(86_400);

/// restic's official image.
const DEFAULT_IMAGE: &str = "restic/restic:latest";

/// Most snapshots kept per period: ten years of days.
const MAX_KEEP: u32 = 3650;

impl Checker<'_> {
    /// The deployment's backup settings, `None` without a `backup` table. `deploy_dir` is
    /// the deployment's own: a repository inside it would go with a `destroy`.
    pub(super) fn backup(
        &self,
        raw: &Option<Spanned<RawBackup>>,
        deploy_dir: &DeployDir,
        hosts: &std::collections::BTreeMap<String, Host>,
    ) -> Result<Option<BackupSettings>, InventoryError> {
        let Some(table) = raw else {
            return Ok(None);
        };
        let raw = table.get_ref();
        let calendar = |value: &Option<Spanned<String>>, key, default| {
            match value {
            Some(schedule) => self.parsed(
                schedule,
                key,
                Calendar::parse,
                "give a systemd calendar expression, e.g. \"daily\", \"*-*-* 03:00:00\" or \"Mon..Fri 04:30\"",
            ),
            None => Ok(default),
        }
        };
        let schedule = calendar(&raw.schedule, "schedule", Calendar::daily())?;
        let verify_schedule =
            calendar(&raw.verify_schedule, "verify_schedule", Calendar::weekly())?;
        let randomized_delay = match &raw.randomized_delay {
            Some(delay) => self.parsed(
                delay,
                "randomized_delay",
                |text| {
                    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
                    if DELAY.contains(&duration) {
                        Ok(duration)
                    } else {
                        Err("it lies between 0s and 24h".into())
                    }
                },
                "give a duration, e.g. `randomized_delay = \"30m\"`",
            )?,
            None => Duration::from_secs(30 * 60),
        };
        let keep = |value, key, default| {
            self.bounded(
                value,
                key,
                0..=MAX_KEEP,
                default,
                "give how many snapshots of that period to keep",
            )
        };
        let retention = Retention {
            daily: keep(&raw.retention.daily, "daily", 7)?,
            weekly: keep(&raw.retention.weekly, "weekly", 4)?,
            monthly: keep(&raw.retention.monthly, "monthly", 12)?,
        };
        if retention
            == (Retention {
                daily: 0,
                weekly: 0,
                monthly: 0,
            })
        {
            let value = (raw.retention.daily.as_ref())
                .or(raw.retention.weekly.as_ref())
                .or(raw.retention.monthly.as_ref());
            let message = "a retention of 0 daily, 0 weekly and 0 monthly snapshots keeps none";
            let help = "keep at least one snapshot of one period, e.g. `daily = 7`";
            return Err(match value {
                Some(value) => self.at(value, message, "keeps nothing", help),
                None => self.at(table, message, "keeps nothing", help),
            });
        }
        Ok(Some(BackupSettings {
            schedule,
            verify_schedule,
            randomized_delay,
            retention,
            repository: self.repository(table, deploy_dir, hosts)?,
            image: match &raw.image {
                Some(image) => self.parsed(
                    image,
                    "image",
                    ImageRef::parse,
                    "give an image whose entrypoint is restic, e.g. \"restic/restic:0.18.0\"",
                )?,
                None => ImageRef::builtin(DEFAULT_IMAGE),
            },
        }))
    }

    fn repository(
        &self,
        table: &Spanned<RawBackup>,
        deploy_dir: &DeployDir,
        hosts: &std::collections::BTreeMap<String, Host>,
    ) -> Result<Repository, InventoryError> {
        let raw = table.get_ref();
        let directory_help = "give an absolute directory of its own, e.g. \"/var/backups/synprov\"";
        let repository = match (&raw.directory, &raw.sftp) {
            (Some(directory), None) => {
                let dir = self.parsed(directory, "directory", DeployDir::parse, directory_help)?;
                let inside = format!("{deploy_dir}/");
                if *dir == **deploy_dir
                    || dir.starts_with(&inside)
                    || deploy_dir.starts_with(&format!("{dir}/"))
                {
                    return Err(self.at(
                        directory,
                        format!("the backup directory {dir} overlaps the deploy_dir {deploy_dir}"),
                        "overlaps the deployment",
                        "choose a directory outside the deployment: `synprov destroy` removes the deploy_dir and all inside it",
                    ));
                }
                Repository::Directory(dir)
            }
            (None, Some(sftp)) if !sftp.get_ref().contains('@') => {
                let (host, path) = sftp.get_ref().split_once(':').ok_or_else(|| {
                    self.at(
                        sftp,
                        format!("invalid sftp {:?}: write HOST:/directory for a host of the inventory, or user@host:/directory for another SSH server", sftp.get_ref()),
                        "invalid sftp",
                        "e.g. sftp = \"backups:/srv/restic/hs1\"",
                    )
                })?;
                let Some(target) = hosts.get(host) else {
                    let known: Vec<&str> = hosts.keys().map(String::as_str).collect();
                    return Err(self.at(
                        sftp,
                        format!("sftp names host `{host}`, which the inventory does not define"),
                        "undefined host",
                        format!(
                            "{}; for an SSH server outside the inventory write user@host:/directory and its `host_key`",
                            suggestion("host", host, &known)
                        ),
                    ));
                };
                let path = DeployDir::parse(path).map_err(|why| {
                    self.at(
                        sftp,
                        format!("invalid sftp directory {path:?}: {why}"),
                        "invalid directory",
                        directory_help,
                    )
                })?;
                Repository::InventoryHost {
                    host: host.to_string(),
                    user: target.user.clone(),
                    address: target
                        .private_address
                        .clone()
                        .unwrap_or_else(|| target.address.clone()),
                    port: target.port,
                    path,
                }
            }
            (None, Some(sftp)) => {
                let target = self.parsed(
                    sftp,
                    "sftp",
                    SftpTarget::parse,
                    "e.g. sftp = \"backup@nas.example.org:/srv/restic/hs1\"",
                )?;
                let Some(host_key) = &raw.host_key else {
                    return Err(self.at(
                        sftp,
                        format!("the SSH server {} needs its `host_key`", target.host),
                        "host key missing",
                        "add host_key = \"ssh-ed25519 AAAA...\" as `ssh-keyscan HOST` prints it (after the host name), checked against the server's own",
                    ));
                };
                let host_key = self.parsed(
                    host_key,
                    "host_key",
                    HostKey::parse,
                    "give the key as `ssh-keyscan HOST` prints it after the host name, e.g. \"ssh-ed25519 AAAA...\"",
                )?;
                let port = raw.port.as_ref().map_or(22, |p| *p.get_ref());
                return Ok(Repository::Server {
                    target,
                    port,
                    host_key,
                });
            }
            (Some(_), Some(sftp)) => {
                return Err(self.at(
                    sftp,
                    "a backup has one repository: `directory` and `sftp` are both given",
                    "second repository",
                    "keep one of them",
                ));
            }
            (None, None) => {
                return Err(self.at(
                    table,
                    "a backup needs a repository",
                    "no repository",
                    "add `directory = \"/var/backups/synprov\"` (on the host) or `sftp = \"HOST:/directory\"` (another host of the inventory) or `sftp = \"user@host:/directory\"` with its `host_key`",
                ));
            }
        };
        // `host_key` and `port` are for a server outside the inventory only.
        if let Some(extra) = raw
            .host_key
            .as_ref()
            .map(|k| k.span())
            .or(raw.port.as_ref().map(|p| p.span()))
        {
            return Err(self.source.error(
                extra,
                "`host_key` and `port` belong to an `sftp = \"user@host:/directory\"` outside the inventory",
                "not used here",
                "remove it: a directory on the host needs none, and a host of the inventory is reached with its own settings and known host key",
            ));
        }
        Ok(repository)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::inventory::parse;
    use crate::inventory::values::UserName;

    fn backup(table: &str) -> BackupSettings {
        let text = format!(
            "[hosts.a]\naddress = \"10.0.0.1\"\n[hosts.c]\naddress = \"10.0.0.3\"\n\
             [deployments.d]\nserver_name = \"example.org\"\nhost = \"a\"\n\
             [deployments.d.backup]\n{table}"
        );
        let inventory = parse(Path::new("t.toml"), text).unwrap();
        inventory.deployments["d"].backup.clone().unwrap()
    }

    #[test]
    fn a_backup_table_becomes_typed_settings_with_defaults() {
        let settings = backup("directory = \"/var/backups/d\"\n");
        assert_eq!(&*settings.schedule, "daily");
        assert_eq!(settings.randomized_delay, Duration::from_secs(1800));
        assert_eq!(
            settings.retention,
            Retention {
                daily: 7,
                weekly: 4,
                monthly: 12
            }
        );
        assert_eq!(
            settings.repository,
            Repository::Directory(DeployDir::parse("/var/backups/d").unwrap())
        );

        let settings = backup(
            "schedule = \"Mon..Fri 04:30\"\nrandomized_delay = \"2h\"\nsftp = \"c:/srv/restic/d\"\n\
             [deployments.d.backup.retention]\ndaily = 3\nweekly = 0\n",
        );
        assert_eq!(&*settings.schedule, "Mon..Fri 04:30");
        assert_eq!(settings.randomized_delay, Duration::from_secs(7200));
        assert_eq!(
            settings.retention,
            Retention {
                daily: 3,
                weekly: 0,
                monthly: 12
            }
        );
        assert_eq!(
            settings.repository,
            Repository::InventoryHost {
                host: "c".into(),
                user: UserName::parse("root").unwrap(),
                address: "10.0.0.3".into(),
                port: 22,
                path: DeployDir::parse("/srv/restic/d").unwrap()
            }
        );

        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF8pSLiigXVDjCu0wJpAUHLAGBExEk8hYHnSmkVrV/W7";
        let settings = backup(&format!(
            "sftp = \"backup@nas.example.org:/srv/r\"\nport = 2222\nhost_key = \"{key}\"\n"
        ));
        assert_eq!(
            settings.repository,
            Repository::Server {
                target: SftpTarget::parse("backup@nas.example.org:/srv/r").unwrap(),
                port: 2222,
                host_key: HostKey::parse(key).unwrap(),
            }
        );
    }

    #[test]
    fn a_deployment_without_a_backup_table_takes_none() {
        let text = "[hosts.a]\naddress = \"10.0.0.1\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"a\"\n";
        let inventory = parse(Path::new("t.toml"), text.into()).unwrap();
        assert!(inventory.deployments["d"].backup.is_none());
    }
}
