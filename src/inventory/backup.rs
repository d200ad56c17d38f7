//! `[deployments.NAME.backup]`: when a deployment's data is backed up on its host, how many
//! snapshots are kept, and where they go.

use std::time::Duration;

use super::values::{Calendar, DeployDir, HostKey, ImageRef, SftpTarget, UserName};

/// A deployment's scheduled backups, validated.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// When the host's timer starts a backup (`OnCalendar=`).
    pub schedule: Calendar,
    /// When the host's timer starts a restore drill of the latest snapshot
    /// (`synprov backup verify`): a backup never restored is a backup hoped for.
    pub verify_schedule: Calendar,
    /// Up to this much later, at random (`RandomizedDelaySec=`): hosts sharing one
    /// repository server do not all write to it at the same second.
    pub randomized_delay: Duration,
    pub retention: Retention,
    pub repository: Repository,
    /// The image restic runs from on the host (its entrypoint is `restic`, as the official
    /// `restic/restic` image's is).
    pub image: ImageRef,
}

/// How many snapshots `restic forget` keeps: the last one of each of so many days, weeks
/// and months. At least one of them is not zero, so a backup never forgets everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

/// Where the snapshots are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repository {
    /// A directory on the deployment's own host (outside its deploy directory): survives a
    /// broken deployment, not a lost disk.
    Directory(DeployDir),
    /// A directory on another host of the inventory, over SFTP as that host's user, at its
    /// private address when it has one.
    InventoryHost {
        host: String,
        user: UserName,
        address: String,
        port: u16,
        path: DeployDir,
    },
    /// A directory on any SSH server, over SFTP, which must show `host_key`.
    Server {
        target: SftpTarget,
        port: u16,
        host_key: HostKey,
    },
}
