//! Compose command lines for a deployment directory, for Compose v2 (`docker compose`) or
//! the legacy v1 (`docker-compose`).
//!
//! Always with the file named (`-f docker-compose.yml`): without it, Compose would prefer a
//! `compose.yaml` and merge a `docker-compose.override.yml` found in the directory, so any
//! file of those names there would replace or change synprov's stack. The project directory
//! is the one of that file (the `cd`), whose `.env`, written by synprov, names the project.

use std::collections::BTreeSet;

use crate::facts::Compose;
use crate::plan::MAIN_SERVICE;
use crate::sh;
use crate::shell::{Command, Script};

/// The one Compose file of a deployment, relative to its directory.
pub const COMPOSE_FILE: &str = "docker-compose.yml";

/// `docker compose -f docker-compose.yml` (or `docker-compose -f ...` for v1).
pub(super) fn compose(compose: &Compose) -> Command {
    let program = match compose {
        Compose::V1(_) => Command::new("docker-compose"),
        _ => Command::new("docker").arg("compose"),
    };
    program.arg("-f").arg(COMPOSE_FILE)
}

/// `compose stop` of `services`, each one argument.
pub fn stop<'a>(kind: &Compose, services: impl IntoIterator<Item = &'a String>) -> Command {
    services
        .into_iter()
        .fold(compose(kind).arg("stop").arg("--"), |c, s| c.arg(s))
}

/// Where Synapse's main process stands when the rest of a stack is brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Main {
    /// Compose starts it or finds it running: its dependents wait until Docker's
    /// healthcheck calls it healthy.
    ComposeWaits,
    /// synprov started it first and saw it answer `/health`.
    Answered,
}

/// What main depends on (Postgres and Redis on its host) when it is started alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependencies {
    /// A new stack: they start first, and main once Docker calls them healthy; the other
    /// containers are then created, not started, while main creates the schema.
    Start,
    /// An upgrade or a restore: they run; main alone is (re)created.
    Running,
}

/// Starts main alone, recreated on its new image or files when those changed: on a new
/// stack, main creates the database's schema, and on an upgrade migrates it, before any
/// worker may start. On a new stack, the other containers are created meanwhile (`up
/// --no-start`), so that starting them once main answers is all that is left.
pub fn main_script(dir: &str, kind: &Compose, dependencies: Dependencies) -> Script {
    let up = compose(kind).arg("up").arg("-d");
    let up = match dependencies {
        Dependencies::Start => up,
        Dependencies::Running => up.arg("--no-deps"),
    };
    let mut s = sh!(
        "set -e\numask 077\ncd -- {}\n{} 2>&1\n",
        dir,
        up.arg("--").arg(MAIN_SERVICE)
    );
    if dependencies == Dependencies::Start {
        s.push(sh!("{} 2>&1\n", compose(kind).arg("up").arg("--no-start")));
    }
    s
}

/// Brings the stack up. First `restart`, the services whose mounted files changed: stopped,
/// their `sockets` (socket files on the host, each with the `.lock` Twisted keeps beside it)
/// removed, and recreated without waiting on their dependencies. Then the whole stack:
/// Compose creates what is missing, recreates what it sees changed, and removes services no
/// longer in the file (workers removed from the inventory). The pending mark stays until
/// the stack is verified and its generation recorded.
///
/// In that order because a rollback after a failed apply finds main crashed on the bad
/// config: a plain `up` first would wait for main to turn healthy, which it only does once
/// recreated on the good one. The sockets go because a process killed while listening
/// leaves its lock naming its PID, and the next container's Synapse, with the same PID,
/// takes the lock for a live owner and refuses to listen.
///
/// Last, `reload`, the services that take their changed files with SIGHUP (Nginx re-reads
/// its certificate and key, its connections and the other containers untouched).
///
/// With `main` [`Main::Answered`], the stack comes up without waiting on dependencies
/// (`--no-deps`): main's dependents would otherwise wait for Docker's next healthcheck of
/// main, up to its interval (5 s) after synprov saw it answer.
pub fn up_script(
    dir: &str,
    kind: &Compose,
    restart: &BTreeSet<String>,
    reload: &BTreeSet<String>,
    sockets: &[String],
    main: Main,
) -> Script {
    let mut s = sh!("set -e\numask 077\ncd -- {}\n", dir);
    if !restart.is_empty() {
        s.push(sh!("{} 2>&1\n", stop(kind, restart)));
        if !sockets.is_empty() {
            let rm = sockets
                .iter()
                .fold(Command::new("rm").arg("-f").arg("--"), |rm, socket| {
                    rm.arg(socket).arg(format!("{socket}.lock"))
                });
            s.push(sh!("{}\n", rm));
        }
        let recreate = compose(kind)
            .arg("up")
            .arg("-d")
            .arg("--no-deps")
            .arg("--force-recreate")
            .arg("--");
        s.push(sh!(
            "{} 2>&1\n",
            restart.iter().fold(recreate, |c, service| c.arg(service))
        ));
    }
    let up = compose(kind).arg("up").arg("-d");
    let up = match main {
        Main::ComposeWaits => up,
        Main::Answered => up.arg("--no-deps"),
    };
    s.push(sh!("{} 2>&1\n", up.arg("--remove-orphans")));
    if !reload.is_empty() {
        let hup = compose(kind).arg("kill").arg("-s").arg("SIGHUP").arg("--");
        s.push(sh!(
            "{} 2>&1\n",
            reload.iter().fold(hup, |c, service| c.arg(service))
        ));
    }
    s
}

/// Brings the stack down for `synprov destroy`: every container of the project removed,
/// orphans (services no longer in the file) included, and its network; with `volumes`
/// (`--purge`), its named and anonymous volumes too. Nothing to do, and no error, when
/// the directory holds no Compose file (never deployed, or destroyed already).
pub fn down_script(dir: &str, kind: &Compose, volumes: bool) -> Script {
    let mut down = compose(kind).arg("down").arg("--remove-orphans");
    if volumes {
        down = down.arg("--volumes");
    }
    sh!(
        "set -e\numask 077\ncd -- {}\nif [ -f {} ]; then {} 2>&1; fi\n",
        dir,
        COMPOSE_FILE,
        down
    )
}

/// Prints `service state health` for each container of the stack. Through `docker
/// inspect`, since the legacy v1 has no `ps --format`.
pub fn status_script(dir: &str, kind: &Compose) -> Script {
    sh!(
        "umask 077\ncd -- {} && {} | xargs -r {}\n",
        dir,
        compose(kind).arg("ps").arg("-aq"),
        Command::new("docker").arg("inspect").arg("--format").arg(
            "{{index .Config.Labels \"com.docker.compose.service\"}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
        )
    )
}

/// What `logs` is asked for beyond the services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsQuery {
    /// Only the last N lines of each container.
    pub tail: Option<u32>,
    /// Only lines since then, as Compose v2 reads it (`600s`, an RFC 3339 time); v1 has no
    /// such option.
    pub since: Option<String>,
    /// Keep printing new lines until the containers stop.
    pub follow: bool,
}

/// `compose logs` of `services` (all of them when none is named), without colours.
pub fn logs(kind: &Compose, query: &LogsQuery, services: &[String]) -> Command {
    let mut logs = compose(kind).arg("logs").arg("--no-color");
    if let Some(tail) = query.tail {
        logs = logs.arg("--tail").arg(tail.to_string());
    }
    if let Some(since) = &query.since {
        logs = logs.arg("--since").arg(since);
    }
    if query.follow {
        logs = logs.arg("--follow");
    }
    services
        .iter()
        .fold(logs.arg("--"), |logs, service| logs.arg(service))
}

/// `compose exec -T [--user USER] SERVICE COMMAND...`: no terminal (the output is read
/// through a pipe), and each word of the command one argument. `user` (`uid:gid`) runs the
/// command as the service's own process does: a container that dropped its capabilities
/// leaves root unable to read files that are not root's.
pub fn exec(kind: &Compose, service: &str, user: Option<&str>, command: &[String]) -> Command {
    let exec = compose(kind).arg("exec").arg("-T");
    let exec = match user {
        Some(user) => exec.arg("--user").arg(user),
        None => exec,
    };
    let exec = exec.arg("--").arg(service);
    command.iter().fold(exec, |exec, word| exec.arg(word))
}

/// The last log lines of some services.
pub fn logs_script(dir: &str, kind: &Compose, services: &[String], lines: usize) -> Script {
    let query = LogsQuery {
        tail: Some(u32::try_from(lines).unwrap_or(u32::MAX)),
        ..LogsQuery::default()
    };
    sh!(
        "umask 077\ncd -- {} && {} 2>&1\n",
        dir,
        logs(kind, &query, services)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_recreates_the_services_whose_files_changed_on_fresh_sockets_then_the_stack() {
        let restart: BTreeSet<String> = ["rooms5".to_string(), "synapse".to_string()].into();
        let sockets = ["/opt/s/sockets/synapse_inbound_main.sock".to_string()];
        assert_eq!(
            up_script(
                "/opt/s",
                &Compose::V2("2.40".into()),
                &restart,
                &BTreeSet::new(),
                &sockets,
                Main::ComposeWaits
            )
            .text(),
            "set -e\numask 077\ncd -- /opt/s\n\
             docker compose -f docker-compose.yml stop -- rooms5 synapse 2>&1\n\
             rm -f -- /opt/s/sockets/synapse_inbound_main.sock /opt/s/sockets/synapse_inbound_main.sock.lock\n\
             docker compose -f docker-compose.yml up -d --no-deps --force-recreate -- rooms5 synapse 2>&1\n\
             docker compose -f docker-compose.yml up -d --remove-orphans 2>&1\n"
        );
        assert_eq!(
            up_script(
                "/opt/s",
                &Compose::V1("1.29".into()),
                &BTreeSet::new(),
                &BTreeSet::new(),
                &[],
                Main::ComposeWaits
            )
            .text(),
            "set -e\numask 077\ncd -- /opt/s\n\
             docker-compose -f docker-compose.yml up -d --remove-orphans 2>&1\n"
        );
    }

    #[test]
    fn a_stack_whose_main_answered_comes_up_without_waiting_on_dependencies() {
        let v2 = Compose::V2("2.40".into());
        assert_eq!(
            main_script("/opt/s", &v2, Dependencies::Start).text(),
            "set -e\numask 077\ncd -- /opt/s\n\
             docker compose -f docker-compose.yml up -d -- synapse 2>&1\n\
             docker compose -f docker-compose.yml up --no-start 2>&1\n"
        );
        let none = BTreeSet::new();
        assert_eq!(
            up_script("/opt/s", &v2, &none, &none, &[], Main::Answered).text(),
            "set -e\numask 077\ncd -- /opt/s\n\
             docker compose -f docker-compose.yml up -d --no-deps --remove-orphans 2>&1\n"
        );
    }

    #[test]
    fn up_reloads_with_sighup_the_services_whose_reloadable_files_changed_after_the_stack() {
        let reload: BTreeSet<String> = ["nginx".to_string(), "$(id)".to_string()].into();
        assert_eq!(
            up_script(
                "/opt/s",
                &Compose::V1("1.29".into()),
                &BTreeSet::new(),
                &reload,
                &[],
                Main::ComposeWaits
            )
            .text(),
            "set -e\numask 077\ncd -- /opt/s\n\
             docker-compose -f docker-compose.yml up -d --remove-orphans 2>&1\n\
             docker-compose -f docker-compose.yml kill -s SIGHUP -- '$(id)' nginx 2>&1\n"
        );
    }

    #[test]
    fn every_compose_script_names_the_file_and_quotes_hostile_values() {
        let v2 = Compose::V2(String::new());
        let dir = "/opt/x;touch${IFS}/tmp/pwned;'";
        let quoted = "'/opt/x;touch${IFS}/tmp/pwned;'\\'''";
        let restart: BTreeSet<String> = ["-rf".to_string(), "$(id)".to_string()].into();
        assert_eq!(
            up_script(
                dir,
                &v2,
                &restart,
                &BTreeSet::new(),
                &[format!("{dir}/sockets/$(id).sock")],
                Main::ComposeWaits
            )
            .text(),
            format!(
                "set -e\numask 077\ncd -- {quoted}\n\
                 docker compose -f docker-compose.yml stop -- '$(id)' -rf 2>&1\n\
                 rm -f -- '/opt/x;touch${{IFS}}/tmp/pwned;'\\''/sockets/$(id).sock' \
                 '/opt/x;touch${{IFS}}/tmp/pwned;'\\''/sockets/$(id).sock.lock'\n\
                 docker compose -f docker-compose.yml up -d --no-deps --force-recreate -- '$(id)' -rf 2>&1\n\
                 docker compose -f docker-compose.yml up -d --remove-orphans 2>&1\n"
            )
        );
        assert_eq!(
            down_script(dir, &v2, false).text(),
            format!(
                "set -e\numask 077\ncd -- {quoted}\nif [ -f docker-compose.yml ]; then \
                 docker compose -f docker-compose.yml down --remove-orphans 2>&1; fi\n"
            )
        );
        assert_eq!(
            down_script(dir, &Compose::V1(String::new()), true).text(),
            format!(
                "set -e\numask 077\ncd -- {quoted}\nif [ -f docker-compose.yml ]; then \
                 docker-compose -f docker-compose.yml down --remove-orphans --volumes 2>&1; fi\n"
            )
        );
        assert_eq!(
            status_script(dir, &Compose::V1(String::new())).text(),
            format!(
                "umask 077\ncd -- {quoted} && docker-compose -f docker-compose.yml ps -aq \
                 | xargs -r docker inspect --format '{{{{index .Config.Labels \"com.docker.compose.service\"}}}} \
                 {{{{.State.Status}}}} {{{{if .State.Health}}}}{{{{.State.Health.Status}}}}{{{{end}}}}'\n"
            )
        );
        assert_eq!(
            logs_script(dir, &v2, &["a b".to_string(), "-f".to_string()], 15).text(),
            format!(
                "umask 077\ncd -- {quoted} && docker compose -f docker-compose.yml logs --no-color --tail 15 -- 'a b' -f 2>&1\n"
            )
        );
        assert_eq!(
            main_script(dir, &v2, Dependencies::Start).text(),
            format!(
                "set -e\numask 077\ncd -- {quoted}\n\
                 docker compose -f docker-compose.yml up -d -- synapse 2>&1\n\
                 docker compose -f docker-compose.yml up --no-start 2>&1\n"
            )
        );
    }

    #[test]
    fn logs_and_exec_pass_every_option_and_word_as_one_argument_after_the_file() {
        let query = LogsQuery {
            tail: Some(5),
            since: Some("600s".into()),
            follow: true,
        };
        let hostile = "/opt/x;touch${IFS}/tmp/pwned;'";
        let services = [hostile.to_string(), "-f".into()];
        assert_eq!(
            logs(&Compose::V2(String::new()), &query, &services).line(),
            "docker compose -f docker-compose.yml logs --no-color --tail 5 --since 600s --follow \
             -- '/opt/x;touch${IFS}/tmp/pwned;'\\''' -f"
        );
        assert_eq!(
            logs(&Compose::V1(String::new()), &LogsQuery::default(), &[]).line(),
            "docker-compose -f docker-compose.yml logs --no-color --"
        );
        let command = [
            "sh".to_string(),
            "-c".into(),
            "echo $SECRET; exit 3".into(),
            hostile.into(),
        ];
        assert_eq!(
            exec(&Compose::V2(String::new()), "-rf", None, &command).line(),
            "docker compose -f docker-compose.yml exec -T -- -rf sh -c 'echo $SECRET; exit 3' \
             '/opt/x;touch${IFS}/tmp/pwned;'\\'''"
        );
        assert_eq!(
            exec(&Compose::V1(String::new()), "$(id)", Some("1000:1000"), &[]).line(),
            "docker-compose -f docker-compose.yml exec -T --user 1000:1000 -- '$(id)'"
        );
    }

    /// What `docker compose config --services` lists in `dir`, run as `command`.
    fn services(dir: &std::path::Path, command: Command) -> String {
        crate::shell::run_here(&sh!("cd -- {} && {}", dir.to_str().unwrap(), command))
    }

    #[test]
    fn compose_reads_synprovs_file_only_not_an_override_or_compose_yaml_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write(COMPOSE_FILE, "services:\n  synapse:\n    image: synapse\n");
        write(
            "docker-compose.override.yml",
            "services:\n  evil:\n    image: evil\n    privileged: true\n",
        );
        write(".env", "COMPOSE_PROJECT_NAME=named\n");
        let config = Command::new("docker").arg("compose").arg("config");
        // Compose lists the services in no fixed order.
        let mut merged: Vec<String> = services(dir.path(), config.clone().arg("--services"))
            .lines()
            .map(String::from)
            .collect();
        merged.sort_unstable();
        assert_eq!(
            merged,
            ["evil", "synapse"],
            "without -f, Compose merges the override: the hazard this guards against"
        );
        let synprovs = || compose(&Compose::V2(String::new())).arg("config");
        assert_eq!(
            services(dir.path(), synprovs().arg("--services")),
            "synapse\n"
        );
        write("compose.yaml", "services:\n  other:\n    image: other\n");
        assert_eq!(
            services(dir.path(), synprovs().arg("--services")),
            "synapse\n"
        );
        // The project keeps the name synprov's `.env` gives it.
        assert!(services(dir.path(), synprovs()).starts_with("name: named\n"));
    }
}
