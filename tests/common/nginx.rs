//! Rendered Nginx files made runnable by the nginx of this machine: the paths the container
//! mounts (`/tmp`, `/sockets`, `/var/log/nginx`) moved under a temporary directory, so that
//! `nginx -t` and a real nginx can run them without root's directories.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::require;

/// A copy of a rendered `nginx/` directory that this machine's nginx can load.
pub struct StagedNginx {
    dir: tempfile::TempDir,
}

impl StagedNginx {
    /// The prefix (`nginx -p`): holds `conf/`, `sockets/`, `logs/` and `run/`.
    pub fn base(&self) -> &Path {
        self.dir.path()
    }

    /// The main file (`nginx -c`).
    pub fn conf(&self) -> PathBuf {
        self.base().join("conf/nginx.conf")
    }

    /// `nginx -t` on the staged files, as it runs: a failure is in the output's status.
    pub fn test(&self) -> Output {
        Command::new(nginx())
            .arg("-p")
            .arg(self.base())
            .arg("-c")
            .arg(self.conf())
            .arg("-t")
            .output()
            .unwrap()
    }
}

/// The nginx binary; fails the test, saying how to install it, when there is none.
pub fn nginx() -> PathBuf {
    require("nginx", "apt-get install nginx")
}

/// Copies the files of the rendered directory `rendered` (a deployment's `nginx/`) into a
/// fresh directory, with the container's paths moved into it and the listener on
/// `127.0.0.1:port`.
pub fn stage(rendered: &Path, port: u16) -> StagedNginx {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    for sub in ["conf", "sockets", "logs", "run"] {
        std::fs::create_dir(base.join(sub)).unwrap();
        std::fs::set_permissions(base.join(sub), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    for entry in std::fs::read_dir(rendered).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/tmp/", &format!("{}/run/", base.display()))
            .replace("/sockets/", &format!("{}/sockets/", base.display()))
            .replace("/var/log/nginx/", &format!("{}/logs/", base.display()))
            .replace("listen 8008 ", &format!("listen 127.0.0.1:{port} "));
        std::fs::write(base.join("conf").join(path.file_name().unwrap()), text).unwrap();
    }
    StagedNginx { dir }
}
