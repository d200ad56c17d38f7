//! The `local` transport: the same steps, run on the machine synprov runs on.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};

use super::{Answer, ExecOutput, LockGuard, SocketStream, TransportError};
use crate::inventory::Host;

pub struct LocalConnection {
    pub host: String,
    become_root: bool,
}

/// A child process whose stdin we keep open; closing it ends the child.
struct HeldChild(Child);

impl Drop for HeldChild {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

impl LocalConnection {
    pub fn new(host: &Host) -> LocalConnection {
        LocalConnection {
            host: host.name.clone(),
            become_root: host.become_root,
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

    pub fn exec(&self, command: &str, stdin: &mut dyn Read) -> Result<ExecOutput, TransportError> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.error(format!("cannot run sh: {e}")))?;
        let mut input = child
            .stdin
            .take()
            .ok_or_else(|| self.error("sh has no standard input"))?;
        // Feed stdin from a thread so a command that prints a lot cannot block us.
        let mut buffer = Vec::new();
        stdin.read_to_end(&mut buffer).map_err(|e| self.error(e))?;
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&buffer);
        });
        let output = child.wait_with_output().map_err(|e| self.error(e))?;
        let _ = writer.join();
        Ok(ExecOutput {
            status: output.status.code().unwrap_or(-1),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }

    pub fn open_socket(&self, path: &str) -> Result<Box<dyn SocketStream>, TransportError> {
        let stream = UnixStream::connect(path)
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

    /// Runs `command`, sends it `script` and keeps its standard input open: a lock the
    /// script takes is held until the returned guard is dropped.
    pub(super) fn hold(
        &self,
        command: &str,
        script: &[u8],
    ) -> Result<(Answer, Option<LockGuard>), TransportError> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| self.error(format!("cannot run sh: {e}")))?;
        let sent = match child.stdin.as_mut() {
            Some(input) => input.write_all(script).and_then(|()| input.flush()),
            None => Err(std::io::Error::other("no standard input")),
        };
        let mut line = String::new();
        if let Some(output) = child.stdout.as_mut() {
            let _ = BufReader::new(output).read_line(&mut line);
        }
        let answer = match sent {
            Ok(()) => Answer::of(&line),
            Err(e) => Answer::Failed(format!("cannot send the lock script: {e}")),
        };
        if matches!(answer, Answer::Locked) {
            let guard = LockGuard {
                _inner: Box::new(HeldChild(child)),
            };
            return Ok((answer, Some(guard)));
        }
        drop(child.stdin.take());
        let _ = child.wait();
        Ok((answer, None))
    }
}
