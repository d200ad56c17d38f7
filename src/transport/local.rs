//! The `local` transport: the same steps, run on the machine synprov runs on.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

use std::os::unix::process::CommandExt;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use super::lock::{ANSWER_BYTES, TAKEN};
use super::watch::Watch;
use super::{ConnectOptions, LockGuard, SocketStream, TransportError, output_failed};
use crate::inventory::Host;

pub struct LocalConnection {
    pub host: String,
    /// The inventory's host, for another connection opened alike.
    pub(super) opened_to: Host,
    become_root: bool,
    pub(super) watch: Watch,
    pub(super) options: ConnectOptions,
}

/// How often a quiet command's deadline and the interrupts are looked at.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// A child process whose stdin we keep open; closing it ends the child.
struct HeldChild(Child);

impl Drop for HeldChild {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

impl LocalConnection {
    pub fn new(host: &Host, options: &ConnectOptions) -> LocalConnection {
        LocalConnection {
            host: host.name.clone(),
            opened_to: host.clone(),
            become_root: host.become_root,
            watch: Watch::new(
                &host.name,
                options.interrupt.clone(),
                options.deadlines.clone(),
            ),
            options: options.clone(),
        }
    }

    pub fn needs_sudo(&self) -> bool {
        // /proc/self belongs to the effective user.
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        self.become_root && !root
    }

    fn error(&self, message: impl std::fmt::Display) -> TransportError {
        TransportError::Io {
            host: self.host.clone(),
            message: message.to_string(),
        }
    }

    /// `sh -c command` with its standard input and output piped.
    fn spawn(&self, command: &str, stderr: Stdio) -> Result<Child, TransportError> {
        Command::new("sh")
            .arg("-c")
            .arg(command)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| self.error(format!("cannot run sh: {e}")))
    }

    /// Runs `command` with `stdin` on its standard input (closed after it), copying its
    /// output to `out` and `err` until it ends; returns its exit status.
    pub fn exec(
        &self,
        command: &str,
        stdin: &mut dyn Read,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<i32, TransportError> {
        let mut input = Vec::new();
        stdin.read_to_end(&mut input).map_err(|e| self.error(e))?;
        self.run(command, input, true, out, err)
    }

    /// Runs `command`, sends it `input` and copies what it prints to `out` and `err` as it
    /// arrives, until it ends; returns its exit status (128 + N for a signal, as a shell
    /// says it). Its standard input stays open until it ends, as over SSH; on a failure
    /// here (a closed `out`), it is closed first, so a command that watches it ends.
    pub fn stream(
        &self,
        command: &str,
        input: &[u8],
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<i32, TransportError> {
        self.run(command, input.to_vec(), false, out, err)
    }

    /// Runs `command` in a process group of its own (the terminal's Ctrl-C is synprov's
    /// to handle, not the step's), feeds it `input` and copies its output, checking the
    /// step's deadline and the interrupts meanwhile: a step cut short has its whole group
    /// killed.
    fn run(
        &self,
        command: &str,
        input: Vec<u8>,
        close_input: bool,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<i32, TransportError> {
        self.watch.check()?;
        let mut child = self.spawn(command, Stdio::piped())?;
        let stdin = child.stdin.take();
        // Written from a thread so a command that prints a lot cannot block us; the pipe
        // comes back, still open, when the input must stay open.
        let writer = std::thread::spawn(move || {
            let mut stdin = stdin?;
            let _ = stdin.write_all(&input).and_then(|()| stdin.flush());
            (!close_input).then_some(stdin)
        });
        // One reader thread per pipe; this thread writes, so `out` and `err` need not be
        // `Send`, and the order of their chunks is the order they arrived in.
        let (chunks, received) = std::sync::mpsc::channel();
        let readers: Vec<_> = [
            child
                .stdout
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .enumerate()
        .filter_map(|(id, reader)| Some((id, reader?)))
        .map(|(id, mut reader)| {
            let chunks = chunks.clone();
            std::thread::spawn(move || {
                let mut buffer = vec![0; 32 * 1024];
                while let Ok(n @ 1..) = reader.read(&mut buffer) {
                    if chunks.send((id, buffer[..n].to_vec())).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
        drop(chunks);
        let copied = self.copy(&received, out, err);
        drop(writer.join());
        if copied.is_err() {
            // Cut short, or nobody reads: the whole group goes.
            // SAFETY: kill(2) on the child's own process group, which it leads.
            unsafe {
                libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
            }
        }
        let status = child.wait().map_err(|e| self.error(e))?;
        for reader in readers {
            let _ = reader.join();
        }
        copied?;
        Ok(status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        }))
    }

    /// Copies the chunks the readers send until both pipes closed, looking at the watch
    /// whenever none came for a while.
    fn copy(
        &self,
        received: &Receiver<(usize, Vec<u8>)>,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<(), TransportError> {
        loop {
            match received.recv_timeout(CHECK_EVERY) {
                Ok((id, chunk)) => {
                    let sink: &mut dyn Write = if id == 0 { &mut *out } else { &mut *err };
                    sink.write_all(&chunk)
                        .and_then(|()| sink.flush())
                        .map_err(|e| {
                            output_failed(&self.watch, e, |e| {
                                self.error(format!("writing output: {e}"))
                            })
                        })?;
                }
                Err(RecvTimeoutError::Timeout) => self.watch.check()?,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    /// Connects to the socket at `path` without following a link there: the sockets
    /// directory is one every container writes in, and a link planted in it would make the
    /// health check talk to any socket of the host. The entry is opened itself (`O_PATH`,
    /// `O_NOFOLLOW`), checked to be a socket, and connected to through that descriptor, so
    /// nothing can be swapped in between.
    pub fn open_socket(&self, path: &str) -> Result<Box<dyn SocketStream>, TransportError> {
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        use std::os::unix::io::AsRawFd;
        let entry = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| self.error(format!("cannot open {path}: {e}")))?;
        let kind = entry
            .metadata()
            .map_err(|e| self.error(format!("cannot open {path}: {e}")))?
            .file_type();
        if !kind.is_socket() {
            let what = if kind.is_symlink() {
                "a symbolic link, not followed"
            } else {
                "not a socket"
            };
            return Err(self.error(format!("cannot open {path}: it is {what}")));
        }
        let stream = UnixStream::connect(format!("/proc/self/fd/{}", entry.as_raw_fd()))
            .map_err(|e| self.error(format!("cannot open {path}: {e}")))?;
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .map_err(|e| self.error(e))?;
        Ok(Box::new(stream))
    }

    pub fn open_tcp(
        &self,
        address: &str,
        port: u16,
    ) -> Result<Box<dyn SocketStream>, TransportError> {
        let stream = std::net::TcpStream::connect((address, port))
            .map_err(|e| self.error(format!("cannot open {address}:{port}: {e}")))?;
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .map_err(|e| self.error(e))?;
        Ok(Box::new(stream))
    }

    /// Runs `command`, sends it `script` and keeps its standard input open when the
    /// script's first line says it holds the lock: held until the returned guard is
    /// dropped. Otherwise returns all it printed (standard error too: sudo's refusal),
    /// within [`ANSWER_BYTES`]. Its answer is waited for under the step's deadline: a lock
    /// file that blocks whoever opens it (a FIFO) fails the step instead of hanging it.
    pub(super) fn hold(
        &self,
        command: &str,
        script: &[u8],
    ) -> Result<Result<LockGuard, String>, TransportError> {
        self.watch.check()?;
        let (reader, writer) = std::io::pipe().map_err(|e| self.error(e))?;
        let errors = writer.try_clone().map_err(|e| self.error(e))?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(writer)
            .stderr(errors)
            .spawn()
            .map_err(|e| self.error(format!("cannot run sh: {e}")))?;
        let child_group = child.id();
        let end = |mut child: Child| {
            // SAFETY: kill(2) on the child's own process group, which it leads.
            unsafe {
                libc::kill(-(child_group as libc::pid_t), libc::SIGKILL);
            }
            let _ = child.wait();
        };
        if let Err(e) = match child.stdin.as_mut() {
            Some(input) => input.write_all(script).and_then(|()| input.flush()),
            None => Err(std::io::Error::other("no standard input")),
        } {
            end(child);
            return Err(self.error(format!("sending the lock script: {e}")));
        }
        // Read by a thread, so that this one can watch the deadline: the first line, then,
        // unless it says the lock is held, the rest once standard input is closed.
        let (sent, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader.take(ANSWER_BYTES));
            let mut first = Vec::new();
            let _ = reader.read_until(b'\n', &mut first);
            let taken = String::from_utf8_lossy(&first).trim() == TAKEN;
            if sent.send(first).is_err() || taken {
                return;
            }
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
            let _ = sent.send(rest);
        });
        let mut output = Vec::new();
        for part in 0..2 {
            let received = loop {
                match answer.recv_timeout(CHECK_EVERY) {
                    Ok(bytes) => break bytes,
                    Err(RecvTimeoutError::Disconnected) => break Vec::new(),
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(error) = self.watch.check() {
                            end(child);
                            return Err(error);
                        }
                    }
                }
            };
            output.extend_from_slice(&received);
            if part == 0 {
                if String::from_utf8_lossy(&output).trim() == TAKEN {
                    return Ok(Ok(LockGuard {
                        _inner: Box::new(HeldChild(child)),
                    }));
                }
                drop(child.stdin.take());
            }
        }
        end(child);
        Ok(Err(String::from_utf8_lossy(&output).into_owned()))
    }
}
