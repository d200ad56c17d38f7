//! The lock of a deployment on its host, and the record of who holds it.
//!
//! The lock is a `flock` on [`LOCK_FILE`] held by a command whose standard input is
//! synprov's connection: when the run ends or its connection drops, the host releases it, so
//! a lock never outlives its run. Once it holds the flock, the command writes who holds it
//! into the file (one JSON line, a [`LockRecord`]; the flock is on the inode, so rewriting
//! the file is harmless), so that a run that finds the lock busy can name its holder.
//!
//! The record stays when the lock is released: it is read back only while the flock is held
//! (then it is the holder's own, except in the instant between taking the flock and writing
//! it), and `synprov unlock` removes a record whose run is gone.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::confine;
use crate::sh;
use crate::shell::{Command, Mode, Script, make_dirs};

/// Where a deployment's lock lives, relative to its deploy directory.
pub const LOCK_FILE: &str = ".synprov/lock";

/// The exit status `flock -n -E` is told to give when another process holds the lock, so that
/// a conflict is told apart from its other failures (1: a file it cannot open, ...).
const CONFLICT: &str = "75";

/// At most this many bytes of a lock file are read back: its contents are the host's.
const RECORD_BYTES: &str = "4096";

/// At most this many bytes of a lock command's answer are read: a word, a record of
/// [`RECORD_BYTES`], or a line saying why it failed.
pub(super) const ANSWER_BYTES: u64 = 64 * 1024;

/// Who holds a lock: the run of synprov, as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub user: String,
    /// The machine synprov runs on.
    pub controller: String,
    /// synprov's process on the controller.
    pub pid: u32,
    /// As typed, e.g. `synprov apply`.
    pub command: String,
    /// When the run started.
    pub since: DateTime<Utc>,
}

impl Holder {
    /// Only a holder that synprov could have written is believed: user and controller
    /// plain words (as `Origin::here` makes them), the command one line of printable ASCII.
    /// Whatever else a lock file says cannot reach a terminal or a log line.
    fn is_plain(&self) -> bool {
        let word = |w: &str| {
            (1..=64).contains(&w.len())
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        word(&self.user)
            && word(&self.controller)
            && (1..=256).contains(&self.command.len())
            && self
                .command
                .chars()
                .all(|c| c == ' ' || c.is_ascii_graphic())
    }
}

/// What a lock file holds: its [`Holder`], and the process on the host that holds the flock
/// (the one to end if the run hangs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    pub host_pid: u32,
    pub holder: Holder,
}

impl LockRecord {
    /// Reads a lock file's line; `None` for anything but a whole, plain record (a record
    /// cut short, garbage, another program's text).
    pub fn parse(line: &str) -> Option<LockRecord> {
        let record: LockRecord = serde_json::from_str(line.trim()).ok()?;
        record.holder.is_plain().then_some(record)
    }
}

/// The run `record` names, as `alice@laptop (pid 4242) since 10:02 UTC, running `synprov
/// apply``, with the day when it is not `now`'s; `an unknown holder` without a record.
pub fn describe(record: Option<&LockRecord>, now: DateTime<Utc>) -> String {
    let Some(Holder {
        user,
        controller,
        pid,
        command,
        since,
    }) = record.map(|r| &r.holder)
    else {
        return "an unknown holder".into();
    };
    let since = if since.date_naive() == now.date_naive() {
        since.format("%H:%M UTC")
    } else {
        since.format("%Y-%m-%d %H:%M UTC")
    };
    format!("{user}@{controller} (pid {pid}) since {since}, running `{command}`")
}

/// Holds a deployment's lock until dropped (or until synprov dies: the lock is a `flock`
/// held by a command whose standard input is the connection, so it never outlives us).
pub struct LockGuard {
    pub(super) _inner: Box<dyn std::any::Any>,
}

/// How taking a lock went.
pub enum Locking {
    Taken(LockGuard),
    /// Another run holds it; its record, when the lock file has a readable one.
    Busy(Option<LockRecord>),
}

/// How removing a lock record went (see [`unlock_script`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlocking {
    /// There is no lock file: nothing to do.
    Absent,
    /// A run holds the lock: nothing was changed.
    Held(Option<LockRecord>),
    /// No run held it: the lock file was removed; the record it had.
    Removed(Option<LockRecord>),
}

/// What a lock command's first line says when it holds the lock, and keeps holding it.
pub(super) const TAKEN: &str = "locked";

/// What a lock command that ended printed: a word on its first line, then the lock file's
/// record for `busy` and `removed`, or why it failed.
pub(super) enum Answer {
    Busy(Option<LockRecord>),
    Removed(Option<LockRecord>),
    Absent,
    Failed(String),
}

impl Answer {
    pub(super) fn of(output: &str) -> Answer {
        let mut lines = output.lines();
        let first = lines.next().unwrap_or_default().trim();
        let record = lines.next().and_then(LockRecord::parse);
        match first {
            "busy" => Answer::Busy(record),
            "removed" => Answer::Removed(record),
            "absent" => Answer::Absent,
            "" => Answer::Failed("it printed nothing".into()),
            said => Answer::Failed(said.to_string()),
        }
    }
}

/// `flock -n` on `lock`, running the static script `locked` while it holds it, with `lock`
/// as `$1` and `args` after it (values reach the script only as positional parameters).
fn flock(lock: &str, locked: &Script, args: &[&str]) -> Command {
    let command = Command::new("flock")
        .arg("-n")
        .arg("-E")
        .arg(CONFLICT)
        .arg("--")
        .arg(lock)
        .arg("sh")
        .arg("-c")
        .arg(locked.text())
        .arg("sh")
        .arg(lock);
    args.iter().fold(command, |command, arg| command.arg(*arg))
}

/// Ends a line whose `flock` found `lock` held by another process: prints `busy`, then the
/// start of the lock file (the holder's record).
fn or_busy(lock: &str) -> Script {
    sh!(
        " || { [ $? -eq {} ] && echo busy && exec head -c {} -- {}; }\n",
        CONFLICT,
        RECORD_BYTES,
        lock
    )
}

/// The lock of the deployment in `deploy_dir`: creates the deploy directory (and every
/// missing one above it) with mode 0755, so that the SSH user reaches the sockets under it,
/// and `.synprov` with 0700; then `flock -n` holds [`LOCK_FILE`] for as long as its
/// standard input, the connection, stays open, and writes `holder`'s [`LockRecord`] into it
/// (`$$` is the process that `exec cat` keeps). Errors go to standard output, whose first
/// line is `locked` once the lock is held, or `busy` and the holder's record. The `flock`
/// line is one line, read whole before it runs, so `cat` gets nothing of the script. The
/// lock file is opened in the physical deploy directory after [`crate::confine`]'s guard:
/// a link at `.synprov` or at the lock file is refused (first line), never written through.
pub fn lock_script(deploy_dir: &str, holder: &Holder) -> Script {
    let json = serde_json::to_string(holder).expect("strings, numbers and a time serialise");
    let locked = sh!(
        "printf '{\"host_pid\":%s,\"holder\":%s}\\n' \"$$\" \"$2\" >\"$1\" && echo locked && exec cat >/dev/null"
    );
    let mut s = sh!("exec 2>&1\numask 077\n");
    s.push(make_dirs(deploy_dir, Mode(0o755)));
    s.push(confine::enter(deploy_dir));
    s.push(confine::file(LOCK_FILE));
    s.push(sh!(
        "mkdir -p -m 700 -- .synprov\n{}",
        flock(LOCK_FILE, &locked, &[&json])
    ));
    s.push(or_busy(LOCK_FILE));
    s
}

/// Removes the lock file of the deployment in `deploy_dir` if no run holds its lock (its
/// record outlived its run, e.g. across a crash of the host), under the lock itself. Prints
/// `absent` when there is none, `removed` and the record it had, or `busy` and the holder's
/// record. A run that opened the file just before it was removed and locks it just after
/// would hold a lock on a file no other run opens: `flock` locks what it opened at once,
/// which makes that window a few instructions wide.
pub fn unlock_script(deploy_dir: &str) -> Script {
    let locked = sh!(
        "record=$(head -c {} -- \"$1\") && rm -f -- \"$1\" && printf 'removed\\n%s\\n' \"$record\"",
        RECORD_BYTES
    );
    let mut s = sh!(
        "exec 2>&1\n[ -d {} ] || { echo absent; exit 0; }\n",
        deploy_dir
    );
    s.push(confine::enter(deploy_dir));
    s.push(confine::file(LOCK_FILE));
    s.push(sh!(
        "[ -e {} ] || { echo absent; exit 0; }\n{}",
        LOCK_FILE,
        flock(LOCK_FILE, &locked, &[])
    ));
    s.push(or_busy(LOCK_FILE));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder() -> Holder {
        Holder {
            user: "alice".into(),
            controller: "laptop".into(),
            pid: 4242,
            command: "synprov apply".into(),
            since: "2026-12-01T10:02:03Z".parse().unwrap(),
        }
    }

    #[test]
    fn the_lock_script_quotes_a_hostile_deploy_dir_and_the_holder_as_data() {
        let mut holder = holder();
        holder.user = "al'ice$(id)".into();
        let json = "'{\"user\":\"al'\\''ice$(id)\",\"controller\":\"laptop\",\"pid\":4242,\
                    \"command\":\"synprov apply\",\"since\":\"2026-12-01T10:02:03Z\"}'";
        let locked = "sh -c 'printf '\\''{\"host_pid\":%s,\"holder\":%s}\\n'\\'' \"$$\" \"$2\" \
                      >\"$1\" && echo locked && exec cat >/dev/null' sh";
        let locking = format!(
            "synprov_path f .synprov/lock 'regular file'\nmkdir -p -m 700 -- .synprov\n\
             flock -n -E 75 -- .synprov/lock {locked} .synprov/lock {json} \
             || {{ [ $? -eq 75 ] && echo busy && exec head -c 4096 -- .synprov/lock; }}\n"
        );
        let dir = "/opt/x;touch${IFS}/tmp/pwned;";
        assert_eq!(
            lock_script(dir, &holder).text(),
            [
                "exec 2>&1\numask 077\n\
                 mkdir -p -m 755 -- /opt '/opt/x;touch${IFS}' '/opt/x;touch${IFS}/tmp' '/opt/x;touch${IFS}/tmp/pwned;'\n",
                confine::enter(dir).text(),
                &locking
            ]
            .concat()
        );
        let dir = "/o'p\nt/$(id)";
        assert_eq!(
            lock_script(dir, &holder).text(),
            [
                "exec 2>&1\numask 077\nmkdir -p -m 755 -- '/o'\\''p\nt' '/o'\\''p\nt/$(id)'\n",
                confine::enter(dir).text(),
                &locking
            ]
            .concat()
        );
        assert_eq!(
            lock_script("-rf", &holder).text(),
            [
                "exec 2>&1\numask 077\nmkdir -p -m 755 -- -rf\n",
                confine::enter("-rf").text(),
                &locking
            ]
            .concat()
        );
    }

    #[test]
    fn the_unlock_script_quotes_a_hostile_deploy_dir_as_data() {
        let dir = "/opt/x;touch${IFS}/tmp/pwned;";
        assert_eq!(
            unlock_script(dir).text(),
            [
                "exec 2>&1\n[ -d '/opt/x;touch${IFS}/tmp/pwned;' ] || { echo absent; exit 0; }\n",
                confine::enter(dir).text(),
                "synprov_path f .synprov/lock 'regular file'\n\
                 [ -e .synprov/lock ] || { echo absent; exit 0; }\n\
                 flock -n -E 75 -- .synprov/lock \
                 sh -c 'record=$(head -c 4096 -- \"$1\") && rm -f -- \"$1\" && printf '\\''removed\\n%s\\n'\\'' \"$record\"' \
                 sh .synprov/lock \
                 || { [ $? -eq 75 ] && echo busy && exec head -c 4096 -- .synprov/lock; }\n"
            ]
            .concat()
        );
    }

    /// The scripts run by `sh` on this machine: taken, busy with the holder's record, the
    /// record left after release, then removed, then absent.
    #[test]
    fn the_scripts_take_report_and_remove_a_lock_in_a_real_shell() {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::process::{Command, Stdio};
        let run = |script: &Script| {
            let out = Command::new("sh").arg("-c").arg(script.text()).output();
            String::from_utf8_lossy(&out.unwrap().stdout).into_owned()
        };
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("it's $(x)");
        let dir = dir.to_str().unwrap();
        let mut holding = Command::new("sh")
            .arg("-c")
            .arg(lock_script(dir, &holder()).text())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(holding.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        assert_eq!(first, "locked\n");

        let Answer::Busy(Some(record)) = Answer::of(&run(&lock_script(dir, &holder()))) else {
            panic!("not busy with a record");
        };
        assert_eq!(record.holder, holder());
        // `locked` is printed just before `exec cat`, which keeps the recorded pid.
        let comm = format!("/proc/{}/comm", record.host_pid);
        let became_cat = (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::fs::read_to_string(&comm).is_ok_and(|c| c == "cat\n")
        });
        assert!(became_cat, "the recorded pid is not the lock's `cat`");
        assert!(matches!(
            Answer::of(&run(&unlock_script(dir))),
            Answer::Busy(Some(_))
        ));

        holding.stdin.take().unwrap().flush().unwrap();
        assert!(holding.wait().unwrap().success());
        out.read_to_string(&mut first).unwrap();
        assert_eq!(first, "locked\n", "nothing more printed");
        let Answer::Removed(Some(left)) = Answer::of(&run(&unlock_script(dir))) else {
            panic!("not removed with the record left");
        };
        assert_eq!(left, record);
        assert!(!std::path::Path::new(dir).join(LOCK_FILE).exists());
        assert!(matches!(
            Answer::of(&run(&unlock_script(dir))),
            Answer::Absent
        ));
    }

    #[test]
    fn a_record_reads_back_and_anything_else_is_an_unknown_holder() {
        let record = LockRecord {
            host_pid: 77,
            holder: holder(),
        };
        let line = serde_json::to_string(&record).unwrap();
        assert_eq!(LockRecord::parse(&line), Some(record.clone()));
        for garbage in [
            "",
            "garbage",
            "{\"host_pid\":77}",
            "{\"holder\":{\"user\":\"alice\"},\"host_pid\":77}",
            &line[..line.len() - 2],
            &line.replace("4242", "-1"),
            &line.replace("alice", "al\\u001b[2Jice"),
            &line.replace("laptop", "lap top"),
            &line.replace("synprov apply", "synprov apply\\nforged line"),
            &line.replace("synprov apply", "synprov \\u202eylppa"),
            &line.replace("2026-12-01T10:02:03Z", "yesterday"),
        ] {
            assert_eq!(LockRecord::parse(garbage), None, "{garbage}");
        }
        assert!(matches!(
            Answer::of(&format!("busy\n{line}\n")),
            Answer::Busy(Some(r)) if r == record
        ));
        assert!(matches!(
            Answer::of("busy\n\u{1b}]0;x\n"),
            Answer::Busy(None)
        ));
        assert!(matches!(Answer::of("busy\n"), Answer::Busy(None)));
        assert!(matches!(
            Answer::of("flock: cannot open lock: Permission denied\n"),
            Answer::Failed(said) if said == "flock: cannot open lock: Permission denied"
        ));
        assert!(matches!(Answer::of(""), Answer::Failed(_)));
    }

    #[test]
    fn a_holder_is_described_with_the_day_when_it_is_not_today() {
        let record = LockRecord {
            host_pid: 77,
            holder: holder(),
        };
        let today = "2026-12-01T18:00:00Z".parse().unwrap();
        assert_eq!(
            describe(Some(&record), today),
            "alice@laptop (pid 4242) since 10:02 UTC, running `synprov apply`"
        );
        let later = "2026-12-03T09:00:00Z".parse().unwrap();
        assert_eq!(
            describe(Some(&record), later),
            "alice@laptop (pid 4242) since 2026-12-01 10:02 UTC, running `synprov apply`"
        );
        assert_eq!(describe(None, today), "an unknown holder");
    }
}
