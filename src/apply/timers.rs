//! A deployment's systemd timers (its backup, its certificate's renewal): their units stay
//! in the deploy directory, where `render` writes them, and are linked into systemd from
//! there (`systemctl link`), so that the generations and the plan see them like every other
//! file. Unlinked (by `systemctl disable`, which removes what `link` made) when their table
//! goes, or the deployment is destroyed.

use crate::plan::{Change, FileChange};
use crate::render::{acme, backup};
use crate::sh;
use crate::shell::{Command, Script};

/// One timer of a deployment and the service it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// What it does, for the progress lines.
    pub what: &'static str,
    /// The directory of its units, relative to the deploy directory.
    pub dir: &'static str,
    /// Its units' name, without `.service` or `.timer`.
    pub unit: String,
}

/// What an apply does with a deployment's timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerChange {
    /// Its units were written: linked and enabled, the timer restarted on its schedule.
    Install,
    /// Its units go: the timer stopped and disabled, the links removed, before the files.
    Remove,
}

impl Timer {
    /// Every timer deployment `name` may have.
    pub fn all(name: &str) -> [Timer; 3] {
        [Timer::backup(name), Timer::drill(name), Timer::acme(name)]
    }

    pub fn backup(name: &str) -> Timer {
        Timer {
            what: "backup",
            dir: backup::DIR,
            unit: backup::unit(name),
        }
    }

    pub fn drill(name: &str) -> Timer {
        Timer {
            what: "restore drill",
            dir: backup::DIR,
            unit: backup::drill::unit(name),
        }
    }

    pub fn acme(name: &str) -> Timer {
        Timer {
            what: "certificate renewal",
            dir: acme::ACME,
            unit: acme::unit(name),
        }
    }

    /// The timer's service, as `systemctl start` names it.
    pub fn service(&self) -> String {
        format!("{}.service", self.unit)
    }

    /// What `changes` ask of this timer, if anything.
    pub fn change(&self, changes: &[FileChange]) -> Option<TimerChange> {
        let units = [
            format!("{}/{}.service", self.dir, self.unit),
            format!("{}/{}.timer", self.dir, self.unit),
        ];
        let first = changes.iter().find(|c| units.contains(&c.path))?;
        Some(match first.change {
            Change::Delete => TimerChange::Remove,
            Change::Create | Change::Update => TimerChange::Install,
        })
    }

    /// Links the units from the deploy directory `dir`, enables the timer and restarts it
    /// (a running timer keeps its old schedule until then). A service running now is left
    /// to end.
    pub fn install_script(&self, dir: &str) -> Script {
        let unit = &self.unit;
        sh!(
            "set -e\n{} 2>&1\n{} 2>&1\n{} 2>&1\n{} 2>&1\n",
            Command::new("systemctl")
                .arg("link")
                .arg("--")
                .arg(format!("{dir}/{}/{unit}.service", self.dir))
                .arg(format!("{dir}/{}/{unit}.timer", self.dir)),
            Command::new("systemctl").arg("daemon-reload"),
            Command::new("systemctl")
                .arg("enable")
                .arg("--")
                .arg(format!("{unit}.timer")),
            Command::new("systemctl")
                .arg("restart")
                .arg("--")
                .arg(format!("{unit}.timer"))
        )
    }

    /// Stops and disables the timer and service and removes their links; a host where
    /// they are not (any more) is fine.
    pub fn remove_script(&self) -> Script {
        let unit = &self.unit;
        sh!(
            "{} 2>&1 || true\n{} 2>&1\n",
            Command::new("systemctl")
                .arg("disable")
                .arg("--now")
                .arg("--")
                .arg(format!("{unit}.timer"))
                .arg(format!("{unit}.service")),
            Command::new("systemctl").arg("daemon-reload")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, change: Change) -> FileChange {
        FileChange {
            path: path.into(),
            change,
        }
    }

    #[test]
    fn the_timer_follows_its_units() {
        let backup = Timer::backup("hs");
        let other = change("synapse/homeserver.yaml", Change::Update);
        assert_eq!(backup.change(std::slice::from_ref(&other)), None);
        assert_eq!(
            backup.change(&[
                other.clone(),
                change("backup/synprov-backup-hs.timer", Change::Update)
            ]),
            Some(TimerChange::Install)
        );
        assert_eq!(
            backup.change(&[change("backup/synprov-backup-hs.service", Change::Create)]),
            Some(TimerChange::Install)
        );
        assert_eq!(
            backup.change(&[change("backup/synprov-backup-hs.timer", Change::Delete)]),
            Some(TimerChange::Remove)
        );
        assert_eq!(
            backup.change(&[change("backup/synprov-backup-hs2.timer", Change::Delete)]),
            None,
            "another deployment's units"
        );
        assert_eq!(
            backup.change(&[change("backup/backup.sh", Change::Update)]),
            None,
            "the script is read afresh by every run"
        );
        assert_eq!(
            Timer::acme("hs").change(&[change("acme/synprov-acme-hs.timer", Change::Create)]),
            Some(TimerChange::Install)
        );
        assert_eq!(
            Timer::acme("hs").change(&[change("backup/synprov-backup-hs.timer", Change::Create)]),
            None,
            "the other timer's units"
        );
    }

    #[test]
    fn the_units_are_linked_from_the_deploy_directory_and_unlinked_by_disable() {
        assert_eq!(
            Timer::backup("hs").install_script("/opt/synapse/hs").text(),
            "set -e\n\
             systemctl link -- /opt/synapse/hs/backup/synprov-backup-hs.service \
             /opt/synapse/hs/backup/synprov-backup-hs.timer 2>&1\n\
             systemctl daemon-reload 2>&1\n\
             systemctl enable -- synprov-backup-hs.timer 2>&1\n\
             systemctl restart -- synprov-backup-hs.timer 2>&1\n"
        );
        assert_eq!(
            Timer::acme("hs").remove_script().text(),
            "systemctl disable --now -- synprov-acme-hs.timer synprov-acme-hs.service 2>&1 || true\n\
             systemctl daemon-reload 2>&1\n"
        );
    }
}
