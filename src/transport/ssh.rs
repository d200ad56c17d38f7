//! The SSH transport on libssh2 (the ssh2 crate), shaped by PITFALLS.md: TCP_NODELAY set
//! before the handshake, host-key algorithms limited to the types known_hosts holds, the
//! key compared before authenticating, every blocking call under a timeout, stderr read so
//! chatty commands never stall. No libssh2 keepalive: with one set, libssh2 fails any
//! blocking wait longer than its interval ("Timed out waiting on socket"), e.g. a quiet
//! `docker load`.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ssh2::{Channel, MethodType, Session};

use super::known_hosts;
use super::lock::{ANSWER_BYTES, TAKEN};
use super::watch::{SILENCE, Watch};
use super::{ConnectOptions, LockGuard, SocketStream, TransportError, output_failed};
use crate::inventory::{Host, HostKeyChecking};

pub struct SshConnection {
    pub host: String,
    /// The inventory's host, for another connection opened alike.
    pub(super) opened_to: Host,
    session: Session,
    user: String,
    become_root: bool,
    pub(super) watch: Watch,
    pub(super) options: ConnectOptions,
}

/// An open channel to a UNIX socket. Owns its session's keep-alive by reference counting
/// inside ssh2, so it may outlive the borrow that created it.
struct SocketChannel(Channel);

impl Read for SocketChannel {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for SocketChannel {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// The lock command's channel; closing it ends the remote `cat`, which releases the flock.
struct HeldChannel(Channel);

impl Drop for HeldChannel {
    fn drop(&mut self) {
        let _ = self.0.send_eof();
        let _ = self.0.close();
    }
}

/// Seconds between keepalives while a command is quiet: keeps NAT and firewall state alive,
/// and their answers show the peer alive (four unanswered make [`SILENCE`]).
const KEEPALIVE_SECS: u32 = 15;

/// How long one wait on the socket lasts before the deadline and the interrupts are looked
/// at again: a second abort ends a step within this.
const POLL_MS: i32 = 250;

/// libssh2's "would block" (`LIBSSH2_ERROR_EAGAIN`), as ssh2 reports it.
const EAGAIN: i32 = -37;

/// The bound of any wait on a connection whose command was cut short.
const SPENT_WAIT_MS: u32 = 2000;

/// Waits until the session's socket can go the way libssh2 last blocked on, or `millis`;
/// says whether the peer sent something (or hung up).
fn wait_for_socket(session: &Session, millis: i32) -> bool {
    use std::os::unix::io::AsRawFd;
    // Always readable too: the answer to a keepalive is news even while a write waits.
    let events = match session.block_directions() {
        ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both => {
            libc::POLLIN | libc::POLLOUT
        }
        _ => libc::POLLIN,
    };
    let mut poll = libc::pollfd {
        fd: session.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; the fd is the session's own.
    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
    ready > 0 && poll.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

impl SshConnection {
    pub fn open(host: &Host, options: &ConnectOptions) -> Result<SshConnection, TransportError> {
        let name = host.name.clone();
        let ssh_error = |e: ssh2::Error| TransportError::Ssh {
            host: name.clone(),
            message: e.to_string(),
        };
        let address = format!("{}:{}", host.address, host.port);
        let connect_error = |source| TransportError::Connect {
            host: name.clone(),
            address: address.clone(),
            source,
        };
        let socket_address = address
            .to_socket_addrs()
            .map_err(connect_error)?
            .next()
            .ok_or_else(|| connect_error(std::io::Error::other("no address")))?;
        let tcp = TcpStream::connect_timeout(&socket_address, options.deadlines.connect)
            .map_err(connect_error)?;
        tcp.set_nodelay(true).map_err(connect_error)?;

        let known_text = std::fs::read_to_string(&options.known_hosts).unwrap_or_default();
        let known = known_hosts::keys_for(&known_text, &host.address, host.port);
        let mut session = Session::new().map_err(ssh_error)?;
        session.set_timeout(options.deadlines.connect.as_millis() as u32);
        if !known.is_empty() {
            let algorithms = known_hosts::algorithms(&known);
            if !algorithms.is_empty() {
                session
                    .method_pref(MethodType::HostKey, &algorithms)
                    .map_err(ssh_error)?;
            }
        }
        session.set_tcp_stream(tcp);
        session.handshake().map_err(|e| {
            if known.is_empty() {
                ssh_error(e)
            } else {
                // The server offers no key of the types known for it: a changed key.
                TransportError::ChangedHostKey {
                    host: name.clone(),
                    known_hosts: options.known_hosts.display().to_string(),
                    fingerprint: format!(
                        "no key of type {}",
                        known
                            .iter()
                            .map(|k| k.key_type.as_str())
                            .collect::<Vec<_>>()
                            .join("/")
                    ),
                }
            }
        })?;
        let (blob, key_type) = session.host_key().ok_or_else(|| TransportError::Ssh {
            host: name.clone(),
            message: "the server sent no host key".into(),
        })?;
        let fingerprint = known_hosts::fingerprint(blob);
        let shown = options.known_hosts.display().to_string();
        if known.is_empty() {
            match host.host_key_checking {
                HostKeyChecking::Strict => {
                    return Err(TransportError::UnknownHostKey {
                        host: name,
                        known_hosts: shown,
                        fingerprint,
                    });
                }
                HostKeyChecking::AcceptNew => {
                    let type_name = match key_type {
                        ssh2::HostKeyType::Rsa => "ssh-rsa",
                        ssh2::HostKeyType::Ed25519 => "ssh-ed25519",
                        ssh2::HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
                        ssh2::HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
                        ssh2::HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
                        _ => {
                            return Err(TransportError::Ssh {
                                host: name,
                                message: "unsupported host key type".into(),
                            });
                        }
                    };
                    known_hosts::append(
                        &options.known_hosts,
                        &host.address,
                        host.port,
                        type_name,
                        blob,
                    )
                    .map_err(|e| TransportError::Io {
                        host: name.clone(),
                        message: format!("cannot record the host key in {shown}: {e}"),
                    })?;
                }
            }
        } else if !known.iter().any(|k| k.blob == blob) {
            return Err(TransportError::ChangedHostKey {
                host: name,
                known_hosts: shown,
                fingerprint,
            });
        }

        Self::authenticate(&session, host)?;
        Ok(SshConnection {
            watch: Watch::new(
                &host.name,
                options.interrupt.clone(),
                options.deadlines.clone(),
            ),
            host: host.name.clone(),
            opened_to: host.clone(),
            session,
            user: host.user.to_string(),
            become_root: host.become_root,
            options: options.clone(),
        })
    }

    fn authenticate(session: &Session, host: &Host) -> Result<(), TransportError> {
        let mut tried = Vec::new();
        if let Some(identity) = &host.identity_file {
            let path = expand_home(identity);
            match session.userauth_pubkey_file(&host.user, None, &path, None) {
                Ok(()) if session.authenticated() => return Ok(()),
                Ok(()) => tried.push(format!("key {}", path.display())),
                Err(e) => tried.push(format!("key {}: {}", path.display(), e.message())),
            }
        } else if let Ok(mut agent) = session.agent() {
            if agent.connect().is_ok() && agent.list_identities().is_ok() {
                // Each identity in turn (libssh2 would only try the first), staying under
                // the server's MaxAuthTries.
                for identity in agent.identities().unwrap_or_default().iter().take(5) {
                    if agent.userauth(&host.user, identity).is_ok() && session.authenticated() {
                        return Ok(());
                    }
                    tried.push(format!("agent key {}", identity.comment()));
                }
            } else {
                tried.push("no ssh-agent (SSH_AUTH_SOCK)".into());
            }
        }
        if tried.is_empty() {
            tried.push("no identity_file and no agent key".into());
        }
        Err(TransportError::Auth {
            host: host.name.clone(),
            user: host.user.to_string(),
            tried: tried.join("; "),
        })
    }

    pub fn needs_sudo(&self) -> bool {
        self.become_root && self.user != "root"
    }

    fn error(&self, e: impl std::fmt::Display) -> TransportError {
        TransportError::Ssh {
            host: self.host.clone(),
            message: e.to_string(),
        }
    }

    /// Makes the next blocking call wait no longer than the step allows, or fails at once
    /// when the step may not go on.
    fn ready(&self) -> Result<(), TransportError> {
        self.watch.check()?;
        self.session
            .set_timeout(self.watch.blocking_bound().as_millis() as u32);
        Ok(())
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
        self.run(command, stdin, true, out, err)
    }

    /// Runs `command`, sends it `input` and copies what it prints to `out` and `err` as it
    /// arrives, until it ends; returns its exit status. Its standard input stays open until
    /// it ends; on a failure here (a closed `out`), it is closed first, so a command that
    /// watches it ends and the channel can close.
    pub fn stream(
        &self,
        command: &str,
        input: &[u8],
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<i32, TransportError> {
        self.run(command, &mut &input[..], false, out, err)
    }

    /// Runs `command` with `input` on its standard input (closed after it when
    /// `close_input`), copying its output to `out` and `err`; returns its exit status.
    ///
    /// Once started, the command is driven without blocking (libssh2's blocking waits would
    /// either fail a quiet command after their timeout or, with libssh2's keepalive set,
    /// after the keepalive interval: PITFALLS.md), so that between reads and writes synprov
    /// checks the step's deadline and the interrupts, and sends its own keepalives: a peer
    /// that answers none of them for [`SILENCE`] is dead, whatever TCP thinks.
    fn run(
        &self,
        command: &str,
        input: &mut dyn Read,
        close_input: bool,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<i32, TransportError> {
        self.ready()?;
        let mut channel = self.session.channel_session().map_err(|e| self.error(e))?;
        channel.exec(command).map_err(|e| self.error(e))?;
        self.session.set_blocking(false);
        self.session.set_keepalive(true, KEEPALIVE_SECS);
        let pumped = self.pump(&mut channel, input, close_input, out, err);
        self.session.set_keepalive(false, 0);
        self.session.set_blocking(true);
        if let Err(error) = pumped {
            if !matches!(error, TransportError::Ssh { .. }) {
                // Cut short: the peer may be gone, so nothing more is waited for.
                self.session.set_timeout(SPENT_WAIT_MS);
            }
            let _ = channel.send_eof();
            return Err(error);
        }
        self.ready()?;
        channel.wait_close().map_err(|e| self.error(e))?;
        if let Ok(signal) = channel.exit_signal()
            && let Some(name) = signal.exit_signal
        {
            return Err(self.error(format!("`{command}` was killed by signal {name}")));
        }
        channel.exit_status().map_err(|e| self.error(e))
    }

    /// Sends `input` and copies the channel's stdout and stderr until the remote end sent
    /// EOF and every byte before it was read (`eof()` counts queued data), waiting on the
    /// socket in between.
    fn pump(
        &self,
        channel: &mut Channel,
        input: &mut dyn Read,
        close_input: bool,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<(), TransportError> {
        let mut buffer = vec![0; 32 * 1024];
        let (mut pending, mut sent) = (Vec::new(), 0);
        let (mut input_done, mut eof_sent) = (false, !close_input);
        let mut heard = Instant::now();
        loop {
            let mut moved = false;
            if !input_done && sent == pending.len() {
                pending.resize(buffer.len(), 0);
                let n = input
                    .read(&mut pending)
                    .map_err(|e| self.error(format!("reading input: {e}")))?;
                pending.truncate(n);
                sent = 0;
                input_done = n == 0;
            }
            if sent < pending.len() {
                match channel.write(&pending[sent..]) {
                    Ok(n) => {
                        sent += n;
                        moved = n > 0;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(self.error(format!("sending input: {e}"))),
                }
            } else if input_done && !eof_sent {
                match channel.send_eof() {
                    Ok(()) => eof_sent = true,
                    Err(e) if e.code() == ssh2::ErrorCode::Session(EAGAIN) => {}
                    Err(e) => return Err(self.error(e)),
                }
            }
            for id in [0, 1] {
                let sink: &mut dyn Write = if id == 0 { &mut *out } else { &mut *err };
                match channel.stream(id).read(&mut buffer) {
                    Ok(0) => {}
                    Ok(n) => {
                        moved = true;
                        sink.write_all(&buffer[..n])
                            .and_then(|()| sink.flush())
                            .map_err(|e| {
                                output_failed(&self.watch, e, |e| {
                                    self.error(format!("writing output: {e}"))
                                })
                            })?;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(self.error(format!("reading output: {e}"))),
                }
            }
            if moved {
                heard = Instant::now();
                continue;
            }
            if channel.eof() && eof_sent {
                return Ok(());
            }
            self.watch.check()?;
            if heard.elapsed() >= SILENCE {
                return Err(self.watch.unresponsive(heard.elapsed()));
            }
            // Due or not, a keepalive goes out when libssh2 says; a full socket buffer
            // (EAGAIN) only delays it. Its answer is what tells a live peer from a dead one.
            let _ = self.session.keepalive_send();
            if wait_for_socket(&self.session, POLL_MS) {
                heard = Instant::now();
            }
        }
    }

    pub fn open_socket(&self, path: &str) -> Result<Box<dyn SocketStream>, TransportError> {
        self.ready()?;
        let channel = self
            .session
            .channel_direct_streamlocal(path, None)
            .map_err(|e| self.error(format!("cannot open {path}: {e}")))?;
        Ok(Box::new(SocketChannel(channel)))
    }

    pub fn open_tcp(
        &self,
        address: &str,
        port: u16,
    ) -> Result<Box<dyn SocketStream>, TransportError> {
        self.ready()?;
        let channel = self
            .session
            .channel_direct_tcpip(address, port, None)
            .map_err(|e| self.error(format!("cannot open {address}:{port}: {e}")))?;
        Ok(Box::new(SocketChannel(channel)))
    }

    /// Runs `command`, sends it `script` and keeps the channel open when the script's first
    /// line says it holds the lock: held until the returned guard is dropped. Otherwise
    /// returns all it printed.
    pub(super) fn hold(
        &self,
        command: &str,
        script: &[u8],
    ) -> Result<Result<LockGuard, String>, TransportError> {
        self.ready()?;
        let mut channel = self.session.channel_session().map_err(|e| self.error(e))?;
        // Standard error too: sudo's refusal is printed there, before the script runs.
        channel
            .handle_extended_data(ssh2::ExtendedData::Merge)
            .map_err(|e| self.error(e))?;
        channel.exec(command).map_err(|e| self.error(e))?;
        channel
            .write_all(script)
            .and_then(|()| channel.flush())
            .map_err(|e| self.error(format!("sending the lock script: {e}")))?;
        let mut output = Vec::new();
        let mut answer = Read::take(&mut channel, ANSWER_BYTES);
        let mut reader = BufReader::new(&mut answer);
        let _ = reader.read_until(b'\n', &mut output);
        if String::from_utf8_lossy(&output).trim() == TAKEN {
            drop(reader);
            return Ok(Ok(LockGuard {
                _inner: Box::new(HeldChannel(channel)),
            }));
        }
        // The script is over: a shell still reading it (after a failure) ends too.
        let _ = reader.get_mut().get_mut().send_eof();
        let _ = reader.read_to_end(&mut output);
        drop(reader);
        let _ = channel.close();
        Ok(Err(String::from_utf8_lossy(&output).into_owned()))
    }
}
