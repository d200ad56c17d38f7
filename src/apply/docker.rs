//! Docker and Compose on the host: the install script, starting the daemon with the host's
//! init system, and the Compose v2 plugin shipped from this machine when the host lacks it.

use std::path::PathBuf;

use crate::inventory::DockerSource;
use crate::sh;
use crate::shell::{Command, Mode, Script, make_dirs};

/// Where the host gets the Compose plugin binary streamed from this machine.
pub const COMPOSE_PLUGIN_PATH: &str = "/usr/local/lib/docker/cli-plugins/docker-compose";

/// Installs Docker (when `install`) and starts it. Package output goes to a log on the host,
/// whose tail is shown on failure. The one script under `umask 022`, not 077: what it
/// writes (apt's keyring and sources, the packages' files, logs) holds no secret and must
/// stay readable by others (apt reads its sources and keys as the `_apt` user).
pub fn install_script(source: DockerSource, install: bool) -> Script {
    let mut s = sh!(
        "set -e\numask 022\nexport DEBIAN_FRONTEND=noninteractive\nlog=/var/log/synprov-docker-install.log\n. /etc/os-release\n",
    );
    if install {
        s.push(sh!("command -v apt-get >/dev/null || { echo \"synprov installs Docker on Debian and Ubuntu only (this is $ID); install Docker yourself\" >&2; exit 4; }\n"));
        s.push(sh!(
            "apt-get update -q >>$log 2>&1 || { tail -n 20 $log >&2; exit 1; }\n"
        ));
        match source {
            DockerSource::Distribution => s.push(sh!("apt-get install -y -q docker.io >>$log 2>&1 || { tail -n 20 $log >&2; exit 1; }\n")),
            DockerSource::DockerRepository => s.push(sh!(
                "apt-get install -y -q ca-certificates curl >>$log 2>&1\n\
install -m 0755 -d /etc/apt/keyrings\n\
curl -fsSL \"https://download.docker.com/linux/$ID/gpg\" -o /etc/apt/keyrings/docker.asc\n\
echo \"deb [signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/$ID $VERSION_CODENAME stable\" > /etc/apt/sources.list.d/docker.list\n\
apt-get update -q >>$log 2>&1 && apt-get install -y -q docker-ce docker-ce-cli containerd.io docker-compose-plugin >>$log 2>&1 || { tail -n 20 $log >&2; exit 1; }\n"
            )),
        }
    }
    // Start it the way the host starts services; with no init system (a container), run
    // the daemon detached and say so.
    s.push(sh!(
        "if docker info >/dev/null 2>&1; then exit 0; fi\n\
if [ -d /run/systemd/system ]; then systemctl enable --now docker >>$log 2>&1\n\
elif ! service docker start >>$log 2>&1; then echo 'no init system could start Docker: started dockerd directly (log in /var/log/dockerd.log)'; setsid dockerd >/var/log/dockerd.log 2>&1 </dev/null & fi\n\
for i in $(seq 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done\n\
echo 'Docker did not start within 60 s' >&2; tail -n 20 /var/log/dockerd.log $log >&2 2>/dev/null; exit 1\n"
    ));
    s
}

/// Receives the Compose plugin on standard input and installs it atomically, mode 0755
/// (the directories on the way too: the Docker CLI of any user looks there).
pub fn compose_plugin_install_command() -> Command {
    let dir = COMPOSE_PLUGIN_PATH.rsplit_once('/').map_or("", |(d, _)| d);
    let new = format!("{COMPOSE_PLUGIN_PATH}.new");
    let mut script = sh!("set -e\numask 077\n");
    script.push(make_dirs(dir, Mode(0o755)));
    script.push(sh!(
        "cat > {}\nchmod 755 {}\nmv -f {} {}\ndocker compose version --short\n",
        new,
        new,
        new,
        COMPOSE_PLUGIN_PATH
    ));
    Command::shell(&script)
}

/// Installs the legacy docker-compose v1 from the distribution, when no plugin can be sent;
/// under `umask 022`, like [`install_script`].
pub fn compose_v1_install_script() -> Script {
    sh!(
        "set -e\numask 022\nexport DEBIAN_FRONTEND=noninteractive\napt-get install -y -q docker-compose >/var/log/synprov-compose-install.log 2>&1 || { tail -n 20 /var/log/synprov-compose-install.log >&2; exit 1; }\n"
    )
}

/// This machine's Compose v2 plugin binary, to ship to hosts that lack one.
/// `SYNPROV_COMPOSE_PLUGIN` overrides the search; `none` ships nothing (the host then gets
/// its distribution's docker-compose v1).
pub fn local_compose_plugin() -> Option<PathBuf> {
    match std::env::var_os("SYNPROV_COMPOSE_PLUGIN") {
        Some(value) if value == "none" => return None,
        Some(path) => return Some(PathBuf::from(path)),
        None => {}
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    [
        home.join(".docker/cli-plugins/docker-compose"),
        PathBuf::from(COMPOSE_PLUGIN_PATH),
        PathBuf::from("/usr/libexec/docker/cli-plugins/docker-compose"),
        PathBuf::from("/usr/lib/docker/cli-plugins/docker-compose"),
    ]
    .into_iter()
    .filter_map(|p| std::fs::canonicalize(p).ok())
    .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compose_plugin_arrives_on_standard_input_through_one_quoted_script() {
        assert_eq!(
            compose_plugin_install_command().line(),
            "sh -c 'set -e\numask 077\n\
             mkdir -p -m 755 -- /usr /usr/local /usr/local/lib /usr/local/lib/docker /usr/local/lib/docker/cli-plugins\n\
             cat > /usr/local/lib/docker/cli-plugins/docker-compose.new\n\
             chmod 755 /usr/local/lib/docker/cli-plugins/docker-compose.new\n\
             mv -f /usr/local/lib/docker/cli-plugins/docker-compose.new /usr/local/lib/docker/cli-plugins/docker-compose\n\
             docker compose version --short\n'"
        );
    }
}
