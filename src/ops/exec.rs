//! `exec`: a command in the container of one process, its output streamed and its exit
//! status passed on.

use std::io::Write;

use super::{Deployed, OpsError, until_disconnected};
use crate::apply::compose;
use crate::render::{GID, UID};
use crate::shell::Script;
use crate::transport::Connection;

/// The script that runs `command` in the container of `name` (a process or service the
/// host recorded): in a Synapse process's, as Synapse's user, who owns its files (root there
/// has no capability to read them). Every word is one argument of `compose exec`; the
/// script travels on standard input, so the words appear on the host's command lines only
/// as `exec`'s own.
pub fn script(
    host: &str,
    deployed: &Deployed,
    name: &str,
    command: &[String],
) -> Result<Script, OpsError> {
    let service = deployed
        .services
        .service(name)
        .map_err(|valid| OpsError::UnknownName {
            host: host.to_string(),
            deployment: deployed.name.clone(),
            name: crate::ui::printable(name).into_owned(),
            valid,
        })?;
    // A Synapse process runs as the deployment's user, and root in its container, without
    // capabilities, could not read what that user wrote.
    let user = deployed
        .services
        .is_synapse(name)
        .then(|| format!("{UID}:{GID}"));
    Ok(until_disconnected(
        &deployed.dir,
        compose::exec(&deployed.compose, service, user.as_deref(), command),
    ))
}

/// Runs `command` in the container of `name` of the deployment `name` in `dir`, streaming
/// its output to `out` and `err`; returns its exit status (Compose passes the command's
/// on; 126 to 130 and 1 can also be Compose's own: a stopped container, an unknown
/// program).
pub fn exec(
    connection: &Connection,
    (deployment, dir): (&str, &str),
    name: &str,
    command: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, OpsError> {
    let deployed = super::deployed(connection, deployment, dir)?;
    let script = script(connection.host_name(), &deployed, name, command)?;
    Ok(connection.stream_script(&script, out, err)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Compose;
    use crate::ops::Services;

    #[test]
    fn the_command_runs_in_the_recorded_service_each_word_quoted() {
        let deployed = Deployed {
            name: "d".into(),
            dir: "/opt/d".into(),
            compose: Compose::V2(String::new()),
            services: Services::from_names(&[("main", "synapse")], &["db"]),
        };
        let command = ["sh", "-c", "exit 3", "/opt/x;touch${IFS}/tmp/pwned;'"].map(String::from);
        assert_eq!(
            script("h", &deployed, "main", &command).unwrap().text(),
            "umask 077\nsynprov_run() {\ncd -- /opt/d || exit 1\n\
             docker compose -f docker-compose.yml exec -T --user 1000:1000 -- synapse sh -c 'exit 3' \
             '/opt/x;touch${IFS}/tmp/pwned;'\\''' &\ncommand=$!\n\
             { cat >/dev/null; kill 0; } <&3 >/dev/null 2>&1 &\nwatcher=$!\n\
             wait \"$command\"\nstatus=$?\nkill \"$watcher\" 2>/dev/null\nexit \"$status\"\n}\n\
             synprov_run 3<&0 </dev/null\n"
        );
        assert!(
            script("h", &deployed, "db", &command)
                .unwrap()
                .text()
                .contains("exec -T -- db sh -c"),
            "the other services' commands run as their image's user"
        );
        let error = script("h", &deployed, "rooms9", &command).unwrap_err();
        assert!(
            matches!(&error, OpsError::UnknownName { valid, .. } if valid == "db, main"),
            "{error:?}"
        );
    }
}
