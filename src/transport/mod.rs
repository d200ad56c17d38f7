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

    /// The last lines of stderr (or stdout when stderr is empty), for error messages.
    pub fn tail(&self, lines: usize) -> String {
        let text = if self.stderr.is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let text = String::from_utf8_lossy(text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
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

    /// Runs `script` with `sh` on the host (through `sudo -n` when the inventory says
    /// `become` and the user is not root). The script travels on standard input, so its
    /// contents (secrets) never appear in a process list, and the command line is a
    /// constant that any login shell reads alike.
    pub fn run_script(&self, script: &Script) -> Result<ExecOutput, TransportError> {
        self.exec(&self.shell(), &mut script.as_bytes())
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

    /// Runs `command` with `stdin` streamed to it.
    pub fn exec(
        &self,
        command: &Command,
        stdin: &mut dyn Read,
    ) -> Result<ExecOutput, TransportError> {
        match self {
            Connection::Ssh(c) => c.exec(&command.line(), stdin),
            Connection::Local(c) => c.exec(&command.line(), stdin),
        }
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
        let output = self.run_script(&unlock_script(deploy_dir))?.stdout_text();
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
            message: format!("cannot {verb} the lock in {deploy_dir}: {said}"),
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
