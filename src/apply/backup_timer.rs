//! A deployment's backup timer in systemd: its units stay in the deploy directory, where
//! `render::backup` writes them, and are linked into systemd from there (`systemctl link`),
//! so that the generations and the plan see them like every other file. Unlinked (by
//! `systemctl disable`, which removes what `link` made) when the backup table goes.

use crate::plan::{Change, FileChange};
use crate::render::backup::{DIR, unit};
use crate::sh;
use crate::shell::{Command, Script};

/// What an apply does with a deployment's timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerChange {
    /// Its units were written: linked and enabled, the timer restarted on its schedule.
    Install,
    /// Its units go: the timer stopped and disabled, the links removed, before the files.
    Remove,
}

/// What `changes` ask of deployment `name`'s timer, if anything.
pub fn timer_change(name: &str, changes: &[FileChange]) -> Option<TimerChange> {
    let units = [
        format!("{DIR}/{}.service", unit(name)),
        format!("{DIR}/{}.timer", unit(name)),
    ];
    let mut ours = changes.iter().filter(|c| units.contains(&c.path));
    let first = ours.next()?;
    Some(match first.change {
        Change::Delete => TimerChange::Remove,
        Change::Create | Change::Update => TimerChange::Install,
    })
}

/// Links the units of deployment `name` from `dir`, enables the timer and restarts it (a
/// running timer keeps its old schedule until then). A backup running now is left to end.
pub fn install_script(dir: &str, name: &str) -> Script {
    let unit = unit(name);
    sh!(
        "set -e\n{} 2>&1\n{} 2>&1\n{} 2>&1\n{} 2>&1\n",
        Command::new("systemctl")
            .arg("link")
            .arg("--")
            .arg(format!("{dir}/{DIR}/{unit}.service"))
            .arg(format!("{dir}/{DIR}/{unit}.timer")),
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

/// Stops and disables deployment `name`'s timer and service and removes their links; a
/// host where they are not (any more) is fine.
pub fn remove_script(name: &str) -> Script {
    let unit = unit(name);
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
        let other = change("synapse/homeserver.yaml", Change::Update);
        assert_eq!(timer_change("hs", std::slice::from_ref(&other)), None);
        assert_eq!(
            timer_change(
                "hs",
                &[
                    other.clone(),
                    change("backup/synprov-backup-hs.timer", Change::Update)
                ]
            ),
            Some(TimerChange::Install)
        );
        assert_eq!(
            timer_change(
                "hs",
                &[change("backup/synprov-backup-hs.service", Change::Create)]
            ),
            Some(TimerChange::Install)
        );
        assert_eq!(
            timer_change(
                "hs",
                &[change("backup/synprov-backup-hs.timer", Change::Delete)]
            ),
            Some(TimerChange::Remove)
        );
        assert_eq!(
            timer_change(
                "hs",
                &[change("backup/synprov-backup-hs2.timer", Change::Delete)]
            ),
            None,
            "another deployment's units"
        );
        assert_eq!(
            timer_change("hs", &[change("backup/backup.sh", Change::Update)]),
            None,
            "the script is read afresh by every run"
        );
    }

    #[test]
    fn the_units_are_linked_from_the_deploy_directory_and_unlinked_by_disable() {
        assert_eq!(
            install_script("/opt/synapse/hs", "hs").text(),
            "set -e\n\
             systemctl link -- /opt/synapse/hs/backup/synprov-backup-hs.service \
             /opt/synapse/hs/backup/synprov-backup-hs.timer 2>&1\n\
             systemctl daemon-reload 2>&1\n\
             systemctl enable -- synprov-backup-hs.timer 2>&1\n\
             systemctl restart -- synprov-backup-hs.timer 2>&1\n"
        );
        assert_eq!(
            remove_script("hs").text(),
            "systemctl disable --now -- synprov-backup-hs.timer synprov-backup-hs.service 2>&1 || true\n\
             systemctl daemon-reload 2>&1\n"
        );
    }
}
