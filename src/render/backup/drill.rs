//! The restore drill (`backup/verify.sh`, run by its own service and timer, and by
//! `synprov backup verify`): a backup is proven only by a restore. The script reads every
//! byte of the repository (`restic check --read-data`: a damaged pack file is named),
//! restores the latest snapshot into a scratch directory, loads its dump into a scratch
//! database of the deployment's Postgres, and compares it with the live one: the schema
//! version equal, the users and rooms as many or a few fewer (what the homeserver gained
//! since the snapshot), the signing key the same, every restored media file equal to its
//! live copy. The live database and media are only read. Its result goes to the audit log
//! and to [`VERIFY_LAST`], which `status` reads.

use super::{RESTORED, prelude};
use crate::inventory::Deployment;
use crate::render::postgres::in_db;
use crate::sh;
use crate::shell::{Command, Script};

/// The state of the last drill (the `key=value` lines of the backup's state files).
pub const VERIFY_LAST: &str = ".synprov/backup/verify-last";

/// The scratch database the dump is loaded into, beside the live one in the same server.
pub const SCRATCH_DB: &str = "synprov_drill";

/// The systemd unit name of deployment `name`'s restore drill (`.service` and `.timer`).
pub fn unit(name: &str) -> String {
    format!("synprov-backup-verify-{name}")
}

/// `sql`'s rows, unaligned, in the db container as the database's owner, on `database`
/// (the live one when `None`).
pub(crate) fn psql(database: Option<&str>, sql: &str) -> Command {
    let database = database.map_or("\"$POSTGRES_DB\"".to_string(), crate::shell::quote);
    db_shell(&format!(
        "exec psql -X -q -At -F ' ' -v ON_ERROR_STOP=1 -h /sockets -U \"$POSTGRES_USER\" -d {database} -c {}",
        crate::shell::quote(sql)
    ))
}

/// `shell` in the db container, with the owner's password from the container's file
/// (`docker` is the scripts' function: Compose v2, or v1 where v2 is missing).
pub(crate) fn db_shell(shell: &str) -> Command {
    let compose = Command::new("docker")
        .arg("compose")
        .arg("-f")
        .arg("docker-compose.yml");
    in_db(compose, shell)
}

/// What the drill compares: the schema version, the users, the rooms.
const COUNTS: &str = "SELECT (SELECT version FROM schema_version), \
                      (SELECT count(*) FROM users), (SELECT count(*) FROM rooms)";

pub fn script(deployment: &Deployment) -> Script {
    let name = deployment.name.as_str();
    let drop = psql(
        None,
        &format!("DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)"),
    );
    let create = psql(
        None,
        &format!(
            "CREATE DATABASE {SCRATCH_DB} TEMPLATE template0 ENCODING 'UTF8' \
             LC_COLLATE 'C' LC_CTYPE 'C'"
        ),
    );
    let load = db_shell(&format!(
        "exec pg_restore --no-owner --no-privileges --exit-on-error -h /sockets \
         -U \"$POSTGRES_USER\" -d {SCRATCH_DB}"
    ));
    let mut s = prelude(
        deployment,
        "backup verify",
        &unit(name),
        "verify-last",
        None,
    );
    s.push(sh!(
        "drill={}\n\
         cleanup() {\n\
         \x20   rm -rf -- \"$drill\" \"$state/drill-files\"\n\
         \x20   {} >/dev/null 2>&1\n\
         }\n\
         # The restored and live counts ($1, $2) are close: the restored ones are no more,\n\
         # and at most a tenth and ten fewer (what the homeserver gained since).\n\
         close() {\n\
         \x20   [ \"$1\" -le \"$2\" ] && [ $(($2 - $1)) -le $(($2 / 10 + 10)) ]\n\
         }\n\
         numbers() {\n\
         \x20   case \"$1\" in *[!0-9\\ ]*|'') return 1 ;; esac\n\
         }\n\
         rm -rf -- \"$drill\" && mkdir -m 700 -- \"$drill\" || finish failed 'the scratch directory cannot be made'\n\
         if ! restic check --read-data > \"$state/check.log\" 2>&1; then\n\
         \x20   pack=$(sed -n 's/.*Pack ID does not match, want \\([0-9a-f]*\\),.*/\\1/p' \"$state/check.log\" | head -n 1)\n\
         \x20   [ -z \"$pack\" ] || finish failed \"the repository has a damaged pack file: data/$(printf %.2s \"$pack\")/$pack\"\n\
         \x20   finish failed \"restic check --read-data found errors: $(grep -v '^\\[' \"$state/check.log\" | tail -n 1 | tr -cd '[:print:]')\"\n\
         fi\n\
         restic restore latest --host {} --tag synprov --target /restore > \"$state/restore.log\" 2>&1 \
         || finish failed \"restic restore failed: $(tail -n 1 \"$state/restore.log\" | tr -cd '[:print:]')\"\n\
         snapshot=$(sed -n 's/^restoring <Snapshot \\([0-9a-f]*\\) .*/\\1/p' \"$state/restore.log\" | head -n 1)\n\
         [ -f \"$drill/backup/db.dump\" ] || finish failed \"snapshot $snapshot holds no database dump\"\n\
         cmp -s -- \"$drill/backup/signing.key\" {} || finish failed \"the signing key of snapshot $snapshot is not the live one\"\n\
         {} >/dev/null 2>&1\n\
         {} >/dev/null || finish failed 'the scratch database cannot be made'\n\
         {} < \"$drill/backup/db.dump\" > \"$state/load.log\" 2>&1 \
         || finish failed \"the dump of snapshot $snapshot does not load: $(tail -n 1 \"$state/load.log\" | tr -cd '[:print:]')\"\n\
         live=$({}) && numbers \"$live\" || finish failed 'the live database cannot be counted'\n\
         restored=$({}) && numbers \"$restored\" || finish failed 'the restored database cannot be counted'\n\
         set -- $restored $live\n\
         [ \"$1\" = \"$4\" ] || finish failed \"the restored schema version is $1, the live one $4\"\n\
         close \"$2\" \"$5\" || finish failed \"the restored database has $2 users, the live one $5\"\n\
         close \"$3\" \"$6\" || finish failed \"the restored database has $3 rooms, the live one $6\"\n\
         counts=\"schema version $1, $2 users (live $5), $3 rooms (live $6)\"\n\
         media=0\n\
         if [ -d \"$drill/media\" ]; then\n\
         \x20   (cd -- \"$drill/media\" && find . -type f) > \"$state/drill-files\" || finish failed 'the restored media cannot be listed'\n\
         \x20   while IFS= read -r file; do\n\
         \x20       media=$((media + 1))\n\
         \x20       if [ -e \"media/$file\" ] && ! cmp -s -- \"$drill/media/$file\" \"media/$file\"; then\n\
         \x20           finish failed \"the restored media file $(printf %s \"$file\" | tr -cd '[:alnum:]/._-') differs from the live one\"\n\
         \x20       fi\n\
         \x20   done < \"$state/drill-files\"\n\
         fi\n\
         finish ok \"snapshot $snapshot restored: the dump loads, $counts, $media media files as stored\"\n",
        RESTORED,
        drop,
        name,
        format!("synapse/{}.signing.key", deployment.server_name),
        drop,
        create,
        load,
        psql(None, COUNTS),
        psql(Some(SCRATCH_DB), COUNTS)
    ));
    s
}
