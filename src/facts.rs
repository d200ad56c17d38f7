//! What a host has now, gathered in one round trip: system, Docker, Compose, and per
//! deployment the files synprov manages there (their hashes) and the images present.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::shell::quote;

/// The host's init system, which decides how Docker is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Init {
    Systemd,
    SysV,
    /// No init system that can start services (a container, this build machine).
    None,
}

/// Which Compose the host has (found by its file: running it would cost a Go start-up on
/// every host of every plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compose {
    /// The `docker compose` plugin, at this path.
    V2(String),
    /// The legacy `docker-compose` program, at this path.
    V1(String),
    Missing,
}

/// What one deployment's directory holds.
#[derive(Debug, Clone, Default)]
pub struct DeployedState {
    /// Paths synprov wrote last time (relative to the deploy directory).
    pub manifest: Vec<String>,
    /// SHA-256 of each managed file present, by path.
    pub hashes: BTreeMap<String, String>,
    /// Set when an apply wrote files but stopped before the stack was up on them: the
    /// services it was to recreate.
    pub pending: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Facts {
    pub os: String,
    pub arch: String,
    pub package_manager: Option<String>,
    pub init: Init,
    /// The Docker client's version, when installed.
    pub docker: Option<String>,
    /// Whether the Docker daemon runs (a `dockerd` process and its socket).
    pub docker_running: bool,
    pub compose: Compose,
    pub free_kb: u64,
    /// Image ID by image reference, for the images asked about.
    pub images: BTreeMap<String, String>,
    pub deployments: BTreeMap<String, DeployedState>,
}

/// A deployment directory and the files to hash in it.
pub struct DeploymentQuery<'a> {
    pub name: &'a str,
    pub dir: &'a str,
    pub paths: Vec<&'a str>,
}

/// The manifest of managed files inside a deploy directory.
pub const MANIFEST: &str = ".synprov/manifest";

/// Written with the files, removed once the stack is up on them: while it exists, an apply
/// was interrupted in between (its first line is `up`, then the services to recreate).
pub const PENDING: &str = ".synprov/pending";

/// The script that gathers the facts (run with `sh -s`, as root when needed).
pub fn script(deployments: &[DeploymentQuery<'_>], images: &[String]) -> String {
    let mut s = String::from(
        r#"exec 2>/dev/null
. /etc/os-release && echo "os=$ID $VERSION_ID"
echo "arch=$(uname -m)"
for pm in apt-get dnf yum apk; do command -v $pm >/dev/null && { echo "pm=$pm"; break; }; done
if [ -d /run/systemd/system ]; then echo init=systemd; elif [ -x /etc/init.d/docker ] || command -v service >/dev/null && [ "$(cat /proc/1/comm)" = init ]; then echo init=sysv; else echo init=none; fi
command -v docker >/dev/null && echo "docker=$(docker --version | sed 's/^Docker version //; s/,.*//')"
grep -qx dockerd /proc/[0-9]*/comm && [ -S /var/run/docker.sock ] && echo docker_running=yes
for d in "$HOME/.docker/cli-plugins" /usr/local/lib/docker/cli-plugins /usr/local/libexec/docker/cli-plugins /usr/lib/docker/cli-plugins /usr/libexec/docker/cli-plugins; do [ -x "$d/docker-compose" ] && { echo "compose_v2=$d/docker-compose"; break; }; done
command -v docker-compose >/dev/null && echo "compose_v1=$(command -v docker-compose)"
echo "free_kb=$(df -Pk / | awk 'NR==2 {print $4}')"
"#,
    );
    if !images.is_empty() {
        let list: Vec<String> = images.iter().map(|i| quote(i)).collect();
        let _ = writeln!(
            s,
            "for i in {}; do id=$(docker image inspect --format '{{{{.Id}}}}' \"$i\") && echo \"image=$i $id\"; done",
            list.join(" ")
        );
    }
    for d in deployments {
        let dir = quote(d.dir);
        let _ = writeln!(s, "echo {}", quote(&format!("deployment={}", d.name)));
        let _ = writeln!(s, "if cd {dir}; then sed 's/^/manifest=/' {MANIFEST}");
        let _ = writeln!(s, "  [ -f {PENDING} ] && sed 's/^/pending=/' {PENDING}");
        let paths: Vec<String> = d.paths.iter().map(|p| quote(p)).collect();
        let _ = writeln!(
            s,
            "  {{ sha256sum -- {}; [ -f {MANIFEST} ] && xargs -d '\\n' sha256sum -- < {MANIFEST}; }} | sort -u -k2 | sed 's/^/hash=/'",
            paths.join(" ")
        );
        let _ = writeln!(s, "fi");
    }
    s.push_str("exit 0\n");
    s
}

/// Reads the script's output.
pub fn parse(output: &str) -> Facts {
    let mut facts = Facts {
        os: String::new(),
        arch: String::new(),
        package_manager: None,
        init: Init::None,
        docker: None,
        docker_running: false,
        compose: Compose::Missing,
        free_kb: 0,
        images: BTreeMap::new(),
        deployments: BTreeMap::new(),
    };
    let mut current: Option<String> = None;
    for line in output.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "os" => facts.os = value.to_string(),
            "arch" => facts.arch = value.to_string(),
            "pm" => facts.package_manager = Some(value.to_string()),
            "init" => {
                facts.init = match value {
                    "systemd" => Init::Systemd,
                    "sysv" => Init::SysV,
                    _ => Init::None,
                }
            }
            "docker" => facts.docker = Some(value.to_string()),
            "docker_running" => facts.docker_running = true,
            "compose_v2" => facts.compose = Compose::V2(value.to_string()),
            "compose_v1" if facts.compose == Compose::Missing => {
                facts.compose = Compose::V1(value.to_string())
            }
            "free_kb" => facts.free_kb = value.parse().unwrap_or(0),
            "image" => {
                if let Some((image, id)) = value.split_once(' ') {
                    facts.images.insert(image.to_string(), id.to_string());
                }
            }
            "deployment" => {
                facts.deployments.entry(value.to_string()).or_default();
                current = Some(value.to_string());
            }
            "pending" => {
                if let Some(state) = current.as_ref().and_then(|c| facts.deployments.get_mut(c)) {
                    let services = state.pending.get_or_insert_with(Vec::new);
                    if value != "up" {
                        services.push(value.to_string());
                    }
                }
            }
            "manifest" | "hash" => {
                let Some(state) = current.as_ref().and_then(|c| facts.deployments.get_mut(c))
                else {
                    continue;
                };
                if key == "manifest" {
                    state.manifest.push(value.to_string());
                } else if let Some((hash, path)) = value.split_once("  ") {
                    state.hashes.insert(path.to_string(), hash.to_string());
                }
            }
            _ => {}
        }
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_runs_and_its_output_parses() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".synprov")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), "x\n").unwrap();
        std::fs::write(dir.path().join("old.yaml"), "y\n").unwrap();
        std::fs::write(dir.path().join(MANIFEST), "a.yaml\nold.yaml\n").unwrap();
        let d = dir.path().to_str().unwrap();
        let query = [
            DeploymentQuery {
                name: "d",
                dir: d,
                paths: vec!["a.yaml", "missing.yaml"],
            },
            DeploymentQuery {
                name: "new",
                dir: "/nonexistent/x",
                paths: vec!["a"],
            },
        ];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(&query, &[]))
            .output()
            .unwrap();
        let facts = parse(&String::from_utf8_lossy(&out.stdout));
        assert!(!facts.arch.is_empty());
        let state = &facts.deployments["d"];
        assert_eq!(state.manifest, ["a.yaml", "old.yaml"]);
        assert_eq!(
            state.hashes.keys().collect::<Vec<_>>(),
            ["a.yaml", "old.yaml"]
        );
        assert_eq!(
            state.hashes["a.yaml"],
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"x\n"))
        );
        assert!(facts.deployments["new"].hashes.is_empty());
    }
}
