//! Day-two operations on a deployment that runs: its logs, a command in one of its
//! containers. Each asks the host what it recorded (the current generation names the
//! services, the facts name the Compose), builds its command with the Compose builders,
//! and streams what it prints through the transport. Nothing here prints.

pub mod backups;
pub mod exec;
pub mod import;
pub mod logs;
pub mod services;

use miette::Diagnostic;
use thiserror::Error;

use crate::apply::ApplyError;
use crate::apply::rollback::list;
use crate::facts::Compose;
use crate::gather;
use crate::generations::GenerationError;
use crate::sh;
use crate::shell::{Command, Script};
use crate::transport::watch::Step;
use crate::transport::{Connection, TransportError};

pub use services::Services;

#[derive(Debug, Error, Diagnostic)]
pub enum OpsError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Transport(#[from] TransportError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Apply(#[from] ApplyError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Generation(#[from] GenerationError),

    #[error("{host}: {deployment} has no generation recorded, so its services are not known")]
    #[diagnostic(help(
        "`synprov apply` records one; `synprov history --host {host}` shows what the host kept"
    ))]
    NoGeneration { host: String, deployment: String },

    #[error("{host}: {deployment} has no process or service `{name}`")]
    #[diagnostic(help("the host recorded these: {valid}"))]
    UnknownName {
        host: String,
        deployment: String,
        name: String,
        valid: String,
    },

    #[error("{host}: the homeserver there cannot be imported: {why}")]
    #[diagnostic(help(
        "synprov imports a deployment in the guide's layout: DIR/synapse/homeserver.yaml (mounted at /data) with the signing key beside it, and Postgres"
    ))]
    Import { host: String, why: String },

    #[error("{host}: has no Docker Compose")]
    #[diagnostic(help("`synprov apply` installs it"))]
    NoCompose { host: String },

    #[error("{host}: has only Compose v1 (docker-compose), whose `logs` has no --since")]
    #[diagnostic(help(
        "leave out --since (--tail N limits the lines), or give the host Compose v2: `synprov apply` sends this machine's Compose v2 plugin to a host that lacks it"
    ))]
    SinceOnComposeV1 { host: String },
}

/// What a host says of one of its deployments: the Compose it runs and the services of
/// its current generation.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub name: String,
    pub dir: String,
    pub compose: Compose,
    pub services: Services,
}

/// Reads the current generation of the deployment `name` in `dir` and the host's Compose
/// (two round trips, both read-only), under the facts' deadline; the command that follows
/// (`logs --follow`, `exec`) runs in no step, as long as it takes.
pub fn deployed(connection: &Connection, name: &str, dir: &str) -> Result<Deployed, OpsError> {
    connection.begin(Step::Facts)?;
    let deployed = read_deployed(connection, name, dir);
    connection.end_step();
    deployed
}

fn read_deployed(connection: &Connection, name: &str, dir: &str) -> Result<Deployed, OpsError> {
    let host = connection.host_name();
    let listing = list(connection, dir)?;
    let generation = listing.current().ok_or_else(|| OpsError::NoGeneration {
        host: host.to_string(),
        deployment: name.to_string(),
    })?;
    let record = generation.usable(host, name)?;
    let facts = gather::gather(connection, &[], &[]).map_err(ApplyError::from)?;
    if facts.compose == Compose::Missing {
        return Err(OpsError::NoCompose {
            host: host.to_string(),
        });
    }
    Ok(Deployed {
        name: name.to_string(),
        dir: dir.to_string(),
        compose: facts.compose,
        services: Services::of(record),
    })
}

/// `command` run in `dir`, ended when synprov goes away. Run through
/// [`Connection::stream_script`], whose standard input stays open while synprov reads: a
/// watcher waits for it to close (Ctrl-C, a closed pipe, a lost connection) and then stops
/// the command, which would otherwise run on, quiet, and keep the channel open (sshd closes
/// a channel only once its command has ended). The command itself reads from /dev/null.
/// The watcher stops the whole process group of the script (the one the transport gave
/// it: sshd's session, or the local transport's own group), so that a command of several
/// processes (a pipeline, or `logs` of several files) leaves none behind.
/// A function called on the last line: a script cut short in transit runs nothing.
pub fn until_disconnected(dir: &str, command: Command) -> Script {
    sh!(
        "umask 077\nsynprov_run() {\ncd -- {} || exit 1\n{} &\ncommand=$!\n\
         { cat >/dev/null; kill 0; } <&3 >/dev/null 2>&1 &\nwatcher=$!\n\
         wait \"$command\"\nstatus=$?\nkill \"$watcher\" 2>/dev/null\nexit \"$status\"\n}\n\
         synprov_run 3<&0 </dev/null\n",
        dir,
        command
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_runs_in_the_quoted_dir_and_is_stopped_when_standard_input_closes() {
        let command = Command::new("docker").arg("logs").arg("$(id)");
        assert_eq!(
            until_disconnected("/opt/x;touch${IFS}/tmp/pwned;'", command).text(),
            "umask 077\nsynprov_run() {\ncd -- '/opt/x;touch${IFS}/tmp/pwned;'\\''' || exit 1\n\
             docker logs '$(id)' &\ncommand=$!\n\
             { cat >/dev/null; kill 0; } <&3 >/dev/null 2>&1 &\nwatcher=$!\n\
             wait \"$command\"\nstatus=$?\nkill \"$watcher\" 2>/dev/null\nexit \"$status\"\n}\n\
             synprov_run 3<&0 </dev/null\n"
        );
    }
}
