//! What the host's backup script says of a run (`.synprov/backup/last` and `last-good`,
//! written by `render::backup`'s script): read as hostile text into typed values, since
//! anything on the host can write those files.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::host_data::StateFile;

/// The most of a state file read: its eight short lines fit many times over.
pub const MAX_STATE_BYTES: usize = 4096;

/// The longest message kept, in characters.
const MAX_MESSAGE: usize = 200;

/// One run of the backup script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupRun {
    pub ok: bool,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// The generation current when it ran.
    pub generation: Option<u32>,
    /// restic's snapshot ID (hex), when one was taken.
    pub snapshot: Option<String>,
    /// Bytes the snapshot added to the repository, and bytes it holds.
    pub added: Option<u64>,
    pub total: Option<u64>,
    /// What happened, one plain line.
    pub message: String,
}

impl BackupRun {
    /// Reads a state file; `None` when it is not one (no result, or no valid times).
    pub fn parse(text: &str) -> Option<BackupRun> {
        let state = StateFile::new(text, MAX_STATE_BYTES);
        let field = |key| state.field(key);
        let time = |key| state.time(key);
        let ok = match field("result") {
            "ok" => true,
            "failed" => false,
            _ => return None,
        };
        let snapshot = Some(field("snapshot"))
            .filter(|s| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_string);
        Some(BackupRun {
            ok,
            started: time("started")?,
            finished: time("finished")?,
            generation: field("generation").parse().ok(),
            snapshot,
            added: field("added").parse().ok(),
            total: field("total").parse().ok(),
            message: state.text("message", MAX_MESSAGE),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "result=ok\nstarted=2026-12-07T03:00:00Z\nfinished=2026-12-07T03:01:30Z\n\
                       generation=4\nsnapshot=0a1b2c3d\nadded=1024\ntotal=1048576\n\
                       message=snapshot 0a1b2c3d, 1048576 bytes, 1024 added\n";

    #[test]
    fn a_state_file_of_the_script_reads_as_a_run() {
        let run = BackupRun::parse(RUN).unwrap();
        assert!(run.ok);
        assert_eq!(run.started.to_rfc3339(), "2026-12-07T03:00:00+00:00");
        assert_eq!(run.finished.to_rfc3339(), "2026-12-07T03:01:30+00:00");
        assert_eq!(run.generation, Some(4));
        assert_eq!(run.snapshot.as_deref(), Some("0a1b2c3d"));
        assert_eq!((run.added, run.total), (Some(1024), Some(1048576)));
        assert_eq!(run.message, "snapshot 0a1b2c3d, 1048576 bytes, 1024 added");

        let failed = "result=failed\nstarted=2026-12-07T03:00:00Z\nfinished=2026-12-07T03:00:02Z\n\
                      generation=\nsnapshot=\nadded=\ntotal=\nmessage=restic backup failed\n";
        let run = BackupRun::parse(failed).unwrap();
        assert!(!run.ok);
        assert_eq!(
            (run.generation, run.snapshot, run.added),
            (None, None, None)
        );
    }

    #[test]
    fn what_the_script_does_not_write_is_dropped() {
        assert_eq!(BackupRun::parse(""), None);
        assert_eq!(
            BackupRun::parse(&RUN.replace("result=ok", "result=maybe")),
            None
        );
        assert_eq!(
            BackupRun::parse(&RUN.replace("03:00:00Z", "yesterday")),
            None
        );
        let run = BackupRun::parse(
            &RUN.replace("snapshot=0a1b2c3d", "snapshot=$(reboot)")
                .replace("message=snapshot", "message=\x1b[2Jsnapshot"),
        )
        .unwrap();
        assert_eq!(run.snapshot, None);
        assert!(run.message.starts_with("[2Jsnapshot"), "{}", run.message);
        let long = format!("{RUN}{}", "x".repeat(10 * MAX_STATE_BYTES));
        assert!(BackupRun::parse(&long).is_some());
    }
}
