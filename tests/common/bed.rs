//! The end-to-end test bed: target hosts as containers (systemd and sshd, no Docker) from
//! `scripts/start-host.sh`, on one Docker network, removed when the test ends.
//!
//! Needs a running Docker engine and the locally built images; a missing one fails the test
//! with the command that provides it.

use std::path::Path;
use std::process::Command;

/// The images the hosts and the deployments use, all built by `scripts/build-images.sh`.
pub const IMAGES: [&str; 5] = [
    "synprov/host:bookworm",
    "synprov/synapse:1.163",
    "synprov/postgres:15",
    "synprov/redis:7",
    "synprov/nginx:1.22",
];

/// The `[deployments.NAME.images]` table that streams the locally built images over SSH.
pub const PRELOADED_IMAGES: &str = "preload = true\nsynapse = \"synprov/synapse:1.163\"\npostgres = \"synprov/postgres:15\"\nredis = \"synprov/redis:7\"\nnginx = \"synprov/nginx:1.22\"\n";

/// `docker ARGS`; panics with Docker's error when it fails.
pub fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

pub fn succeeds(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Fails the test, saying how to build it, when `image` is not in the Docker engine.
pub fn require_image(image: &str) {
    assert!(
        succeeds(&["image", "inspect", image]),
        "image {image} is missing: build the test images with scripts/build-images.sh (scripts/test.sh does)"
    );
}

/// Builds `tag` from `dockerfile` (no context; its base must be local: no registry is
/// reachable here), with the legacy builder as scripts/build-images.sh does.
pub fn build_image(tag: &str, dockerfile: &str) {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker CLI");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "docker build {tag}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One target host: a container with a fixed address.
pub struct Host {
    pub name: String,
    pub address: String,
}

impl Host {
    /// Runs a shell script on the host (as root, outside SSH); panics when it fails.
    pub fn exec(&self, script: &str) -> String {
        docker(&["exec", &self.name, "sh", "-c", script])
    }

    /// Starts the host again after `docker stop` and waits for its sshd.
    pub fn start(&self) {
        docker(&["start", &self.name]);
        while !succeeds(&["exec", &self.name, "systemctl", "is-active", "ssh"]) {
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }

    /// The base URL of the Nginx of a deployment on this host.
    pub fn url(&self, port: u16) -> String {
        format!("http://{}:{port}", self.address)
    }
}

/// Hosts on one Docker network, and the SSH key that logs in to them (`DIR/key`). Dropping
/// it removes the hosts, their Docker volumes and the network (unless SYNPROV_E2E_KEEP is
/// set, to look at them after a failure).
pub struct Bed {
    pub hosts: Vec<Host>,
    network: String,
}

impl Bed {
    /// Starts `hosts` (name, address) at once on the network `network` of `subnet`, with a
    /// new key pair in `dir`. A host named like the network gets a network of its own.
    pub fn start(dir: &Path, network: &str, subnet: &str, hosts: &[(&str, &str)]) -> Bed {
        assert!(
            succeeds(&["info"]),
            "the end-to-end tests need a running Docker engine: run scripts/start-dockerd.sh (scripts/test.sh does)"
        );
        for image in IMAGES {
            require_image(image);
        }
        let bed = Bed {
            hosts: hosts
                .iter()
                .map(|(name, address)| Host {
                    name: name.to_string(),
                    address: address.to_string(),
                })
                .collect(),
            network: network.to_string(),
        };
        bed.clean();
        if bed.hosts.len() > 1 {
            docker(&["network", "create", "--subnet", subnet, network]);
        }
        let key = dir.join("key");
        let status = Command::new(super::require(
            "ssh-keygen",
            "apt-get install openssh-client",
        ))
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
        assert!(status.success());
        let starting: Vec<_> = bed
            .hosts
            .iter()
            .map(|host| {
                Command::new("bash")
                    .arg(super::root().join("scripts/start-host.sh"))
                    .args([&host.name, &host.address, subnet])
                    .arg(key.with_extension("pub"))
                    .arg(network)
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut child in starting {
            assert!(
                child.wait().unwrap().success(),
                "scripts/start-host.sh failed"
            );
        }
        bed
    }

    fn clean(&self) {
        for host in &self.hosts {
            let volume = format!("{}-docker", host.name);
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", &host.name])
                .output();
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", &volume])
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if std::env::var_os("SYNPROV_E2E_KEEP").is_none() {
            self.clean();
        }
    }
}

/// `synprov COMMAND --known-hosts DIR/known_hosts INVENTORY ARGS...` with extra environment
/// variables.
pub fn command(dir: &Path, env: &[(&str, &str)], args: &[&str], inventory: &Path) -> Command {
    let mut command = super::synprov_on(dir, args, inventory, &dir.join("known_hosts"));
    command.envs(env.iter().copied());
    command
}

/// Runs [`command`]; prints and returns its exit code and output (stdout, then stderr).
pub fn run(dir: &Path, env: &[(&str, &str)], args: &[&str], inventory: &Path) -> (i32, String) {
    let output = command(dir, env, args, inventory).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("synprov {args:?}:\n{text}");
    (output.status.code().unwrap_or(-1), text)
}
