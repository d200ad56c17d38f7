//! The doors to a host: SSH (the ssh2 crate) and the machine synprov runs on.
//!
//! A [`Connection`] runs shell commands (with their standard input), opens the host's UNIX
//! sockets for health checks, and holds the per-host lock. Both kinds behave alike, so
//! every step above this module is written once. Nothing here prints.

pub mod known_hosts;
mod local;
pub mod lock;
mod ssh;
pub mod watch;

use std::io::{Read, Write};
use std::path::PathBuf;

use miette::Diagnostic;
use thiserror::Error;

use crate::inventory::{Deadlines, Host, Transport};
use crate::shell::{Command, Script};
use lock::{Answer, lock_script, unlock_script};
pub use lock::{Holder, LOCK_FILE, LockGuard, LockRecord, Locking, Unlocking};
use watch::{Interrupt, Step, Watch};

/// What a command printed and how it ended.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The last lines of stderr (or stdout when stderr is empty), for error messages:
    /// escaped as they enter the message ([`crate::text::printable`]), so that what a host
    /// prints cannot colour or redraw the report miette makes of it.
    pub fn tail(&self, lines: usize) -> String {
        let text = if self.stderr.is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let text = String::from_utf8_lossy(text);
        let all: Vec<&str> = text.lines().collect();
        crate::text::printable(&all[all.len().saturating_sub(lines)..].join("\n")).into_owned()
    }
}

/// The most one command may print, on each stream, before synprov stops reading it and
/// ends it: what a host sends back is read into memory, and a host is not trusted to keep
/// to what synprov's scripts print on a sane host (a manifest, a record or a log grown to a
/// gigabyte on it would otherwise be read whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimit {
    pub stdout: usize,
    pub stderr: usize,
}

impl OutputLimit {
    /// Any command: far above what any of synprov's scripts prints for a real deployment
    /// (the largest, a diff's files, is bounded by the diff's own limits).
    pub const ANY: OutputLimit = OutputLimit {
        stdout: 64 << 20,
        stderr: 1 << 20,
    };

    /// `bytes` of standard output, for a script whose caller knows what it prints; standard
    /// error as [`Self::ANY`].
    pub const fn stdout(bytes: usize) -> OutputLimit {
        OutputLimit {
            stdout: bytes,
            stderr: Self::ANY.stderr,
        }
    }
}

/// Where a command's output is collected, up to its limit: a write past it fails with an
/// [`Overflow`], which the transport turns into [`TransportError::TooMuch`] after ending
/// the command.
struct Capped<'a> {
    buffer: &'a mut Vec<u8>,
    limit: usize,
    stream: &'static str,
}

impl Write for Capped<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.buffer.len().saturating_add(buf.len()) > self.limit {
            return Err(std::io::Error::other(Overflow {
                stream: self.stream,
                limit: self.limit,
            }));
        }
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A [`Capped`] buffer that was full.
#[derive(Debug)]
struct Overflow {
    stream: &'static str,
    limit: usize,
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {} on {}", bytes(self.limit), self.stream)
    }
}

impl std::error::Error for Overflow {}

/// Runs `run` with sinks that collect a command's output within `limit`.
fn collect(
    limit: OutputLimit,
    run: impl FnOnce(&mut dyn Write, &mut dyn Write) -> Result<i32, TransportError>,
) -> Result<ExecOutput, TransportError> {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let status = run(
        &mut Capped {
            buffer: &mut stdout,
            limit: limit.stdout,
            stream: "standard output",
        },
        &mut Capped {
            buffer: &mut stderr,
            limit: limit.stderr,
            stream: "standard error",
        },
    )?;
    Ok(ExecOutput {
        status,
        stdout,
        stderr,
    })
}

/// What a failed write of a command's output means: the output passed its limit (the
/// connection is then spent, see [`Watch::overflowed`]), or `otherwise` says.
fn output_failed(
    watch: &Watch,
    error: std::io::Error,
    otherwise: impl FnOnce(std::io::Error) -> TransportError,
) -> TransportError {
    match error.get_ref().and_then(|e| e.downcast_ref::<Overflow>()) {
        Some(overflow) => watch.overflowed(overflow.stream, &bytes(overflow.limit)),
        None => otherwise(error),
    }
}

/// The error of a command on `host` that went through `sudo -n` (`through_sudo`) and
/// printed `said`, when `said` is sudo's own refusal (no password may be asked, the user
/// may not sudo): a message sudo prints before running anything, never one of synprov's
/// scripts. Without it, a refusal would read as a failure of the step (or of the lock).
fn sudo_refusal(host: &str, through_sudo: bool, said: &str) -> Option<TransportError> {
    let first = said.lines().next().unwrap_or_default().trim();
    (through_sudo && first.starts_with("sudo: ")).then(|| TransportError::Sudo {
        host: host.to_string(),
        said: crate::text::one_line(first).into_owned(),
    })
}

/// `n` bytes as a person reads a limit: `64 MiB`, `4096 bytes`.
pub fn bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

#[derive(Debug, Error, Diagnostic)]
pub enum TransportError {
    #[error("{host}: cannot connect to {address}: {source}")]
    #[diagnostic(help(
        "check the host's address and port in the inventory, and that sshd runs there"
    ))]
    Connect {
        host: String,
        address: String,
        source: std::io::Error,
    },

    #[error("{host}: the host key is not in {known_hosts} ({fingerprint})")]
    #[diagnostic(help(
        "verify the fingerprint, then add the key (`ssh-keyscan -p PORT HOST >> {known_hosts}`), or set `host_key_checking = \"accept-new\"` for this host"
    ))]
    UnknownHostKey {
        host: String,
        known_hosts: String,
        fingerprint: String,
    },

    #[error(
        "{host}: THE HOST KEY HAS CHANGED: it presented {fingerprint}, which is not the key {known_hosts} holds for it"
    )]
    #[diagnostic(help(
        "this may be an attack; nothing was sent. If the host was reinstalled, remove its old line from {known_hosts} (`ssh-keygen -R HOST`)"
    ))]
    ChangedHostKey {
        host: String,
        known_hosts: String,
        fingerprint: String,
    },

    #[error("{host}: authentication as {user} failed ({tried})")]
    #[diagnostic(help(
        "check `user` and `identity_file` in the inventory, or load the key into ssh-agent"
    ))]
    Auth {
        host: String,
        user: String,
        tried: String,
    },

    #[error("{host}: SSH error: {message}")]
    Ssh { host: String, message: String },

    #[error("{host}: {message}")]
    Io { host: String, message: String },

    #[error("{host}: interrupted before {before}")]
    #[diagnostic(help("the next apply carries on where this one stopped"))]
    Interrupted { host: String, before: String },

    #[error("{host}: {step} aborted by a second interrupt")]
    #[diagnostic(help(
        "the step was cut short: `synprov plan` shows what is left, the next apply finishes it"
    ))]
    Aborted { host: String, step: String },

    #[error("{host}: step {step} did not finish within its deadline (waited {waited})")]
    #[diagnostic(help(
        "check that the host answers and is not overloaded; if it is only slow, raise `{setting}` in [rollout]"
    ))]
    Deadline {
        host: String,
        step: String,
        waited: String,
        setting: &'static str,
    },

    #[error(
        "{host}: the host stopped answering during {step} (silent for {silent}s, keepalives unanswered)"
    )]
    #[diagnostic(help("check that the host is up and reachable, then run again"))]
    Unresponsive {
        host: String,
        step: String,
        silent: u64,
    },

    #[error(
        "{host}: the host sent more than {limit} on {stream} during {step}: synprov stopped reading and ended the command"
    )]
    #[diagnostic(help(
        "something the command reads on the host is far larger than what synprov writes there: look under DEPLOY_DIR/.synprov for a file that is not synprov's (a manifest, generation record, images list, pending mark or audit log) and move it away"
    ))]
    TooMuch {
        host: String,
        step: String,
        stream: &'static str,
        limit: String,
    },

    #[error("{host}: sudo refused to run synprov's commands as root: {said}")]
    #[diagnostic(help(
        "`become = true` runs every command through `sudo -n`, which never asks for a password: allow the SSH user passwordless sudo on the host (NOPASSWD), or connect as root"
    ))]
    Sudo { host: String, said: String },

    /// A later call on a connection whose command was cut short: the first reason again.
    #[error("{said}")]
    Spent { said: String, interrupted: bool },
}

impl TransportError {
    /// An interrupt stopped the work, rather than the host failing it.
    pub fn interrupted(&self) -> bool {
        match self {
            TransportError::Interrupted { .. } | TransportError::Aborted { .. } => true,
            TransportError::Spent { interrupted, .. } => *interrupted,
            _ => false,
        }
    }
}

/// How to connect, beyond what the inventory says of the host.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub known_hosts: PathBuf,
    /// How long each step may take (`connect` bounds the connection itself).
    pub deadlines: Deadlines,
    /// The run's interrupts, seen by every connection it opens.
    pub interrupt: Interrupt,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
        ConnectOptions {
            known_hosts: std::env::var_os("SYNPROV_KNOWN_HOSTS")
                .map_or_else(|| home.join(".ssh/known_hosts"), PathBuf::from),
            deadlines: Deadlines::default(),
            interrupt: Interrupt::default(),
        }
    }
}

/// A byte stream to a UNIX socket on the host.
pub trait SocketStream: Read + Write {}
impl<T: Read + Write> SocketStream for T {}

/// An open connection to one host.
pub enum Connection {
    Ssh(ssh::SshConnection),
    Local(local::LocalConnection),
}

impl Connection {
    /// Connects to `host`; for SSH, checks its key against known_hosts before sending
    /// anything, then authenticates.
    pub fn open(host: &Host, options: &ConnectOptions) -> Result<Connection, TransportError> {
        match host.transport {
            Transport::Local => Ok(Connection::Local(local::LocalConnection::new(
                host, options,
            ))),
            Transport::Ssh => ssh::SshConnection::open(host, options).map(Connection::Ssh),
        }
    }

    /// Another connection to the same host, opened alike: for work that runs beside this
    /// one's (a second image stream).
    pub fn reopen(&self) -> Result<Connection, TransportError> {
        let host = match self {
            Connection::Ssh(c) => &c.opened_to,
            Connection::Local(c) => &c.opened_to,
        };
        Connection::open(host, self.options())
    }

    /// How it was opened (known_hosts, deadlines, interrupts): a step that must reach
    /// another host (a backup key authorised on its repository's host) opens that
    /// connection alike.
    pub fn options(&self) -> &ConnectOptions {
        match self {
            Connection::Ssh(c) => &c.options,
            Connection::Local(c) => &c.options,
        }
    }

    /// Runs `script` with `sh` on the host (through `sudo -n` when the inventory says
    /// `become` and the user is not root). The script travels on standard input, so its
    /// contents (secrets) never appear in a process list, and the command line is a
    /// constant that any login shell reads alike.
    /// What it prints is read within [`OutputLimit::ANY`].
    pub fn run_script(&self, script: &Script) -> Result<ExecOutput, TransportError> {
        self.run_script_within(script, OutputLimit::ANY)
    }

    /// [`Self::run_script`] for a script whose output the caller knows the size of: past
    /// `limit`, synprov stops reading, ends the command and fails with
    /// [`TransportError::TooMuch`].
    pub fn run_script_within(
        &self,
        script: &Script,
        limit: OutputLimit,
    ) -> Result<ExecOutput, TransportError> {
        self.exec_within(&self.shell(), &mut script.as_bytes(), limit)
    }

    /// Runs `script` as [`Self::run_script`] does, but copies what it prints to `out` and
    /// `err` as it arrives (for `logs --follow` and `exec`), and returns its exit status.
    /// No timeout applies: it runs until it ends. Its standard input stays open meanwhile,
    /// and closes when synprov stops reading (a closed `out`), exits or loses the
    /// connection: a script whose command must not outlive synprov watches it (see
    /// [`crate::ops::until_disconnected`]).
    pub fn stream_script(
        &self,
        script: &Script,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<i32, TransportError> {
        let command = self.shell().line();
        match self {
            Connection::Ssh(c) => c.stream(&command, script.as_bytes(), out, err),
            Connection::Local(c) => c.stream(&command, script.as_bytes(), out, err),
        }
    }

    /// Runs `command` with `stdin` streamed to it; its output is read within
    /// [`OutputLimit::ANY`].
    pub fn exec(
        &self,
        command: &Command,
        stdin: &mut dyn Read,
    ) -> Result<ExecOutput, TransportError> {
        self.exec_within(command, stdin, OutputLimit::ANY)
    }

    /// [`Self::exec`] with its output read within `limit`. A command that `sudo -n`
    /// refused to run fails as [`TransportError::Sudo`].
    pub fn exec_within(
        &self,
        command: &Command,
        stdin: &mut dyn Read,
        limit: OutputLimit,
    ) -> Result<ExecOutput, TransportError> {
        let line = command.line();
        let output = collect(limit, |out, err| match self {
            Connection::Ssh(c) => c.exec(&line, stdin, out, err),
            Connection::Local(c) => c.exec(&line, stdin, out, err),
        })?;
        match self.sudo_refusal(&String::from_utf8_lossy(&output.stderr)) {
            Some(error) if !output.success() => Err(error),
            _ => Ok(output),
        }
    }

    /// See [`sudo_refusal`].
    fn sudo_refusal(&self, said: &str) -> Option<TransportError> {
        sudo_refusal(self.host_name(), self.needs_sudo(), said)
    }

    /// A privileged shell reading its script from standard input.
    pub fn shell(&self) -> Command {
        self.privileged(Command::new("sh").arg("-s"))
    }

    /// `command` as the privileged user.
    pub fn privileged(&self, command: Command) -> Command {
        if self.needs_sudo() {
            command.sudo()
        } else {
            command
        }
    }

    fn needs_sudo(&self) -> bool {
        match self {
            Connection::Ssh(c) => c.needs_sudo(),
            Connection::Local(c) => c.needs_sudo(),
        }
    }

    /// Opens the UNIX socket at `path` on the host.
    pub fn open_socket(&self, path: &str) -> Result<Box<dyn SocketStream>, TransportError> {
        match self {
            Connection::Ssh(c) => c.open_socket(path),
            Connection::Local(c) => c.open_socket(path),
        }
    }

    /// Opens a TCP connection from the host to `address:port` (a listener on its private
    /// address).
    pub fn open_tcp(
        &self,
        address: &str,
        port: u16,
    ) -> Result<Box<dyn SocketStream>, TransportError> {
        match self {
            Connection::Ssh(c) => c.open_tcp(address, port),
            Connection::Local(c) => c.open_tcp(address, port),
        }
    }

    /// Takes the exclusive lock of the deployment in `deploy_dir` on the host
    /// ([`LOCK_FILE`] there) for `holder`, or fails at once when another run holds it, with
    /// that run's record. The lock script travels on standard input like any other, which
    /// stays open while the lock is held.
    pub fn lock(&self, deploy_dir: &str, holder: &Holder) -> Result<Locking, TransportError> {
        let command = self.shell().line();
        let script = lock_script(deploy_dir, holder);
        let held = match self {
            Connection::Ssh(c) => c.hold(&command, script.as_bytes())?,
            Connection::Local(c) => c.hold(&command, script.as_bytes())?,
        };
        let output = match held {
            Ok(guard) => return Ok(Locking::Taken(guard)),
            Err(output) => output,
        };
        if let Some(refused) = self.sudo_refusal(&output) {
            return Err(refused);
        }
        match Answer::of(&output) {
            Answer::Busy(record) => Ok(Locking::Busy(record)),
            Answer::Failed(said) => Err(self.lock_error("take", deploy_dir, &said)),
            Answer::Removed(_) | Answer::Absent => Err(self.lock_error(
                "take",
                deploy_dir,
                output.lines().next().unwrap_or_default(),
            )),
        }
    }

    /// Removes the lock file of the deployment in `deploy_dir` when no run holds its lock:
    /// a record that outlived its run (see [`unlock_script`]).
    pub fn unlock(&self, deploy_dir: &str) -> Result<Unlocking, TransportError> {
        let limit = OutputLimit::stdout(lock::ANSWER_BYTES as usize);
        let output = self
            .run_script_within(&unlock_script(deploy_dir), limit)?
            .stdout_text();
        match Answer::of(&output) {
            Answer::Absent => Ok(Unlocking::Absent),
            Answer::Busy(record) => Ok(Unlocking::Held(record)),
            Answer::Removed(record) => Ok(Unlocking::Removed(record)),
            Answer::Failed(said) => Err(self.lock_error("check", deploy_dir, &said)),
        }
    }

    fn lock_error(&self, verb: &str, deploy_dir: &str, said: &str) -> TransportError {
        TransportError::Io {
            host: self.host_name().to_string(),
            message: format!(
                "cannot {verb} the lock in {deploy_dir}: {}",
                crate::text::one_line(said)
            ),
        }
    }

    /// Opens `step` on this connection: its deadline bounds every command until the next
    /// step; refused once the operator interrupted the run.
    pub fn begin(&self, step: Step) -> Result<(), TransportError> {
        self.watch().begin(step)
    }

    /// Opens `step` as part of the one in flight, which must end whatever comes: its own
    /// deadline, but no interrupt refuses it (main started after the workers were stopped
    /// for an upgrade, a generation recorded once the stack is verified).
    pub fn go_on_with(&self, step: Step) -> Result<(), TransportError> {
        self.watch().go_on_with(step)
    }

    /// Ends the step in flight: what runs next is bounded by no deadline (only the
    /// interrupts and a silent peer), until the next step begins.
    pub fn end_step(&self) {
        self.watch().end();
    }

    fn watch(&self) -> &Watch {
        match self {
            Connection::Ssh(c) => &c.watch,
            Connection::Local(c) => &c.watch,
        }
    }

    pub fn host_name(&self) -> &str {
        match self {
            Connection::Ssh(c) => &c.host,
            Connection::Local(c) => &c.host,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_of_sudo_is_named_as_such_and_nothing_else_is() {
        let refused = sudo_refusal("hs1", true, "sudo: a password is required\n").unwrap();
        assert_eq!(
            refused.to_string(),
            "hs1: sudo refused to run synprov's commands as root: sudo: a password is required"
        );
        assert!(sudo_refusal("hs1", false, "sudo: a password is required").is_none());
        assert!(sudo_refusal("hs1", true, "busy\n").is_none());
        assert!(sudo_refusal("hs1", true, "").is_none());
        let hostile = sudo_refusal("hs1", true, "sudo: \x1b[31mred").unwrap();
        assert!(hostile.to_string().ends_with("sudo: \\x1b[31mred"));
    }

    /// What a host prints enters an error message escaped, so that miette's report, whose
    /// own colours are kept when printed, keeps none of the host's.
    #[test]
    fn the_tail_of_a_command_s_output_is_escaped_as_it_enters_an_error() {
        let output = ExecOutput {
            status: 1,
            stdout: b"ignored".to_vec(),
            stderr: b"first\n\x1b[31mred\x1b[0m \x1b]0;title\x07\nlast\rfake\n".to_vec(),
        };
        assert_eq!(
            output.tail(2),
            "\\x1b[31mred\\x1b[0m \\x1b]0;title\\x07\nlast\\x0dfake"
        );
    }

    #[test]
    fn output_past_its_limit_is_refused_before_it_is_kept() {
        let mut buffer = Vec::new();
        let mut capped = Capped {
            buffer: &mut buffer,
            limit: 4,
            stream: "standard output",
        };
        capped.write_all(b"abc").unwrap();
        let error = capped.write_all(b"de").unwrap_err();
        assert_eq!(error.to_string(), "more than 4 bytes on standard output");
        assert_eq!(buffer, b"abc");
        assert_eq!(bytes(64 << 20), "64 MiB");
        assert_eq!(bytes(4096), "4 KiB");
        assert_eq!(bytes(1000), "1000 bytes");
    }
}
