//! `unlock`: removes a deployment's lock file whose run is gone, e.g. after its host crashed
//! with the record still in it. The host releases the lock itself when a run ends or loses
//! its connection; what can outlive the run is only its record, which would otherwise be read
//! as nobody's. A lock a run still holds is never taken from it.

use super::ApplyError;
use crate::generations::{Origin, scripts};
use crate::transport::{Connection, LockRecord, Unlocking, lock};

/// What `unlock` did in one deploy directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlocked {
    /// There was no lock file: nothing to do.
    NoLock,
    /// No run held the lock: its file was removed, with the record it had, if readable.
    Removed(Option<LockRecord>),
}

/// Removes the lock file of the deployment in `dir` if no run holds its lock, and records
/// that in the audit log as `origin`'s; fails naming the holder, changing nothing, if a run
/// holds it.
pub fn unlock(connection: &Connection, dir: &str, origin: &Origin) -> Result<Unlocked, ApplyError> {
    let record = match connection.unlock(dir)? {
        Unlocking::Absent => return Ok(Unlocked::NoLock),
        Unlocking::Held(record) => {
            return Err(ApplyError::locked(
                connection.host_name(),
                dir,
                record.as_ref(),
            ));
        }
        Unlocking::Removed(record) => record,
    };
    let result = format!(
        "ok: removed the lock of {}",
        lock::describe(record.as_ref(), chrono::Utc::now())
    );
    connection.run_script(&scripts::audit(dir, &origin.entry(None, &result)))?;
    Ok(Unlocked::Removed(record))
}
