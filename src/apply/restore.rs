//! `synprov restore`: a deployment's snapshot put back on the host its stack was just
//! applied to (a fresh host): the database replaced by the snapshot's dump in one
//! transaction while every Synapse process is stopped, the media store's own files put in
//! place, then the stack up again and verified as an apply is. The signing key is not
//! restored but compared: it is derived from the master key like every secret, so a
//! snapshot whose key differs was taken under another master key, and is refused before
//! anything changes.

use std::time::Duration;

use super::rollback::list;
use super::{ApplyError, Report, step};
use crate::confine;
use crate::render::backup::drill::{db_shell, psql};
use crate::render::backup::{RESTIC, RESTORED, compose_fallback};
use crate::sh;
use crate::shell::{Command, Script};
use crate::transport::Connection;
use crate::transport::watch::Step;

/// The script: restore `snapshot` (restic's ID, or `latest`) of deployment `name` into the
/// scratch directory, check it, stop every service but Postgres, replace the database and
/// the media, bring the stack up, remove the scratch directory.
pub fn script(dir: &str, name: &str, server_name: &str, snapshot: &str) -> Script {
    let compose_file = || {
        Command::new("docker")
            .arg("compose")
            .arg("-f")
            .arg("docker-compose.yml")
    };
    let mut s = sh!("umask 077\n");
    s.push(confine::enter(dir));
    s.push(compose_fallback());
    s.push(confine::dir(RESTORED));
    s.push(confine::data_dir("media"));
    s.push(sh!(
        "fail() { echo \"$1\" >&2; exit 1; }\n\
         {} || fail 'no backup is configured here'\n\
         restored={}\n\
         rm -rf -- \"$restored\" && mkdir -p -m 700 -- \"$restored\" || fail 'the scratch directory cannot be made'\n\
         {} >&2 || fail 'restic restore failed'\n\
         [ -f \"$restored/backup/db.dump\" ] || fail 'the snapshot holds no database dump'\n\
         cmp -s -- \"$restored/backup/signing.key\" {} \
         || fail \"the snapshot's signing key is not this deployment's: restore with the master key of the inventory that made the backup\"\n\
         services=$({} | grep -vx db) || fail 'the services cannot be listed'\n\
         {} $services >&2 || fail 'the services cannot be stopped'\n\
         {} >&2 || fail 'the database cannot be emptied'\n\
         {} < \"$restored/backup/db.dump\" >&2 || fail 'the dump does not load: the database is left empty'\n\
         for kept in local_content local_thumbnails; do\n\
         \x20   if [ -d \"$restored/media/$kept\" ]; then\n\
         \x20       rm -rf -- \"media/$kept\" && mv -- \"$restored/media/$kept\" \"media/$kept\" || fail \"media/$kept cannot be put in place\"\n\
         \x20   fi\n\
         done\n\
         {} >&2 || fail 'the stack cannot be brought up'\n\
         rm -rf -- \"$restored\"\n",
        confine::regular(RESTIC),
        RESTORED,
        Command::new("sh")
            .arg(RESTIC)
            .arg("restore")
            .arg(snapshot)
            .arg("--host")
            .arg(name)
            .arg("--tag")
            .arg("synprov")
            .arg("--target")
            .arg("/restore"),
        format!("synapse/{server_name}.signing.key"),
        compose_file().arg("config").arg("--services"),
        compose_file().arg("stop").arg("--"),
        psql(None, "DROP SCHEMA public CASCADE; CREATE SCHEMA public"),
        db_shell(
            "exec pg_restore --no-owner --no-privileges --exit-on-error --single-transaction \
             -h /sockets -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\""
        ),
        compose_file().arg("up").arg("-d")
    ));
    s
}

/// Restores `snapshot` of deployment `name` (in `dir`) on the host and verifies every
/// health target its current generation recorded. Returns how many answered.
pub fn restore(
    connection: &Connection,
    name: &str,
    dir: &str,
    server_name: &str,
    snapshot: &str,
    health_timeout: Duration,
    report: Report,
) -> Result<usize, ApplyError> {
    let host = connection.host_name();
    connection.begin(Step::Facts)?;
    let listing = list(connection, dir)?;
    let health = match listing.current() {
        Some(generation) => generation.usable(host, name)?.health.clone(),
        None => Vec::new(),
    };
    connection.begin(Step::Backup)?;
    report(host, &format!("{name}: restoring snapshot {snapshot}"));
    step(
        connection,
        "restoring the snapshot",
        &script(dir, name, server_name, snapshot),
    )?;
    connection.begin(Step::Health(health_timeout))?;
    report(
        host,
        &format!("{name}: verifying {} listener(s)", health.len()),
    );
    let failing = crate::verify::wait_healthy(connection, &health, health_timeout);
    connection.end_step();
    if let Some((target, why)) = failing.first() {
        return Err(ApplyError::Step {
            host: host.to_string(),
            step: format!("verifying {name} after the restore"),
            tail: format!("{} is not healthy: {why}", target.process),
        });
    }
    Ok(health.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restore_refuses_another_key_before_it_stops_anything() {
        let text = script("/opt/synapse/hs", "hs", "example.org", "0a1b2c3d")
            .text()
            .to_string();
        let expected = [
            "sh backup/restic.sh restore 0a1b2c3d --host hs --tag synprov --target /restore >&2 || fail 'restic restore failed'\n",
            "cmp -s -- \"$restored/backup/signing.key\" synapse/example.org.signing.key || fail",
            "services=$(docker compose -f docker-compose.yml config --services | grep -vx db) || fail",
            "docker compose -f docker-compose.yml stop -- $services >&2 || fail",
            "-c '\\''DROP SCHEMA public CASCADE; CREATE SCHEMA public'\\''' >&2 || fail 'the database cannot be emptied'\n",
            "exec pg_restore --no-owner --no-privileges --exit-on-error --single-transaction -h /sockets -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\"' < \"$restored/backup/db.dump\" >&2 || fail",
            "docker compose -f docker-compose.yml up -d >&2 || fail 'the stack cannot be brought up'\nrm -rf -- \"$restored\"\n",
        ];
        let mut at = 0;
        for part in expected {
            let found = text[at..]
                .find(part)
                .unwrap_or_else(|| panic!("{part} after {at} in {text}"));
            at += found + part.len();
        }
        assert!(text.ends_with("rm -rf -- \"$restored\"\n"));
    }
}
