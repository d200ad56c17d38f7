//! A real OpenSSH server on a loopback port, with its own host key and one authorized
//! client key, started for one test and stopped when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Its sessions too: a test may have stopped them, or left a command sleeping.
        for pid in self.sessions() {
            send_signal(pid, "KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -SIGNAL pid`.
pub fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

fn keygen(path: &Path) {
    let status = Command::new(super::require(
        "ssh-keygen",
        "apt-get install openssh-client",
    ))
    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
    .arg(path)
    .status()
    .unwrap();
    assert!(status.success());
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_with("")
    }

    /// A server that runs every command through `force-command` in its directory: it counts
    /// the commands (one line each in `commands`) and sleeps before running one, for as many
    /// seconds as `delay-N` (N: the command's number) or else `delay` says. A test makes a
    /// step last, and knows which one is under way.
    pub fn start_slow(delay_secs: u32) -> Sshd {
        let sshd = Sshd::start_with("ForceCommand {dir}/force-command\n");
        let d = sshd.path("");
        std::fs::write(sshd.path("delay"), delay_secs.to_string()).unwrap();
        let wrapper = format!(
            "#!/bin/sh\necho x >> {d}/commands\nn=$(wc -l < {d}/commands)\nsleep \"$(cat {d}/delay-$n 2>/dev/null || cat {d}/delay)\"\nexec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
            d = d.display()
        );
        let path = sshd.path("force-command");
        std::fs::write(&path, wrapper).unwrap();
        let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&path, executable).unwrap();
        sshd
    }

    /// How many commands a [`Self::start_slow`] server has started.
    pub fn commands(&self) -> usize {
        std::fs::read_to_string(self.path("commands"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// The processes of this server's sessions (every descendant of the listener).
    pub fn sessions(&self) -> Vec<u32> {
        let mut family = vec![self.child.id()];
        let mut found = true;
        while found {
            found = false;
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                    continue;
                };
                // The parent is the second field after the command's closing parenthesis.
                let parent = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
                if parent.is_some_and(|p| family.contains(&p)) && !family.contains(&pid) {
                    family.push(pid);
                    found = true;
                }
            }
        }
        family.remove(0);
        family
    }

    /// Stops (SIGSTOP) the server and all its sessions: a host that stops answering, its
    /// TCP connections still open.
    pub fn freeze(&self) {
        send_signal(self.child.id(), "STOP");
        for pid in self.sessions() {
            send_signal(pid, "STOP");
        }
    }

    fn start_with(extra_config: &str) -> Sshd {
        let sshd = super::require("sshd", "apt-get install openssh-server");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        keygen(&d.join("other_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPermitRootLogin yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nAllowStreamLocalForwarding yes\nAllowTcpForwarding yes\nMaxStartups 100\nLogLevel ERROR\n{}",
            extra_config.replace("{dir}", &d.display().to_string()),
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let child = Command::new(sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let sshd = Sshd { dir, port, child };
        sshd.write_known_hosts(&sshd.path("host_key.pub"));
        sshd
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Makes `known_hosts` hold the public key in `public_key` for this server.
    pub fn write_known_hosts(&self, public_key: &Path) {
        let key = std::fs::read_to_string(public_key).unwrap();
        let mut fields = key.split_whitespace();
        let line = format!(
            "[127.0.0.1]:{} {} {}\n",
            self.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        );
        std::fs::write(self.path("known_hosts"), line).unwrap();
    }

    /// An inventory for this server whose one deployment lives in `deploy_dir`.
    pub fn inventory(&self, deploy_dir: &Path, key: &str, extra_host: &str) -> PathBuf {
        let text = format!(
            "[hosts.loop]\naddress = \"127.0.0.1\"\nport = {}\nuser = \"root\"\nidentity_file = \"{}\"\n{extra_host}\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"loop\"\ndeploy_dir = \"{}\"\n",
            self.port,
            self.path(key).display(),
            deploy_dir.display()
        );
        let path = self.path("inventory.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `synprov COMMAND --known-hosts ... INVENTORY ARGS...` against this server, run in its
    /// directory (`args` is the command and its arguments; a `--` in them stays last).
    pub fn run(&self, args: &[&str], inventory: &Path) -> Output {
        self.command(args, inventory).output().unwrap()
    }

    /// [`Self::run`], not yet started.
    pub fn command(&self, args: &[&str], inventory: &Path) -> Command {
        super::synprov_on(self.dir.path(), args, inventory, &self.path("known_hosts"))
    }

    /// A connection to the host `loop` of the inventory at `inventory_path`.
    pub fn connect(&self, inventory_path: &Path) -> synprov::transport::Connection {
        let inventory = synprov::inventory::load(inventory_path).unwrap();
        let options = synprov::transport::ConnectOptions {
            known_hosts: self.path("known_hosts"),
            ..synprov::transport::ConnectOptions::default()
        };
        synprov::transport::Connection::open(&inventory.hosts["loop"], &options).unwrap()
    }
}

/// An sshd whose host has had a first `apply --files-only`: the server, the deploy
/// directory and the inventory.
pub fn deployed() -> (Sshd, PathBuf, PathBuf) {
    let sshd = Sshd::start();
    let deploy = sshd.path("deploy");
    let inventory = sshd.inventory(&deploy, "client_key", "");
    let output = sshd.run(&["apply", "--files-only"], &inventory);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (sshd, deploy, inventory)
}
