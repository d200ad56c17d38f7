//! Upgrades of Synapse in the order its upgrade notes ask for: the new image checks the new
//! config before any process is touched, Postgres is dumped beside the current generation,
//! the workers stop, main starts alone on the new image and runs the schema migrations, and
//! only once it is healthy do the workers start on it. A rollback can put the dump back.

use super::compose::{self, compose};
use crate::confine;
use crate::facts::Compose;
use crate::generations::{DUMP, GENERATIONS};
use crate::plan::{Change, DeploymentPlan};
use crate::render::DeploymentFiles;
use crate::render::postgres::{PG_DUMP, as_owner};
use crate::sh;
use crate::shell::{Command, Script};

/// Where the config check stages the deployment's Synapse directory with the new files.
const STAGE: &str = ".synprov/upgrade-check";

/// Synapse's directory in a deployment, mounted at `/data` in its containers.
const SYNAPSE_DIR: &str = "synapse";

/// Runs Synapse's own config check (`python -m synapse.config`) in a throw-away container
/// of the new `image`, without network, on a copy of the deployment's Synapse directory
/// with the new files of `plan` written over it. Nothing of the deployment is written and
/// no process of it touched; the output ends with Synapse's reason when it refuses.
pub fn check_script(files: &DeploymentFiles, plan: &DeploymentPlan, image: &str) -> Script {
    let dir = &files.deploy_dir;
    let stage = format!("{dir}/{STAGE}");
    let mut s = sh!("set -e\numask 077\n");
    s.push(confine::enter(dir));
    s.push(confine::dir(STAGE));
    s.push(confine::dir(SYNAPSE_DIR));
    s.push(sh!(
        "rm -rf -- {}\nmkdir -p -m 700 -- {}\n\
         if [ -d {} ]; then cp -a -- {} {}; fi\n",
        STAGE,
        STAGE,
        SYNAPSE_DIR,
        SYNAPSE_DIR,
        format!("{STAGE}/{SYNAPSE_DIR}")
    ));
    let in_synapse = |path: &str| path.starts_with(&format!("{SYNAPSE_DIR}/"));
    // Only what the write needs: the Synapse files, in the stage.
    let staged_files = DeploymentFiles {
        deployment: files.deployment.clone(),
        server_name: files.server_name.clone(),
        deploy_dir: stage.clone(),
        files: (files.files.iter())
            .filter(|f| in_synapse(&f.path))
            .cloned()
            .collect(),
        dirs: Vec::new(),
        secrets: None,
        health: Vec::new(),
        images: Vec::new(),
        preload: false,
        plugin_grants: Vec::new(),
        postgres: Vec::new(),
        backup_remote: None,
    };
    let staged_plan = DeploymentPlan {
        dir: stage.clone(),
        changes: plan
            .changes
            .iter()
            .filter(|c| c.change != Change::Delete && in_synapse(&c.path))
            .cloned()
            .collect(),
        ..plan.clone()
    };
    s.push(super::files::write_script(
        &staged_files,
        &staged_plan,
        false,
    ));
    s.push(sh!(
        "set +e\n{} 2>&1\nstatus=$?\nrm -rf -- {}\nexit $status\n",
        Command::new("docker")
            .arg("run")
            .arg("--rm")
            .arg("--network")
            .arg("none")
            .arg("--entrypoint")
            .arg("python")
            .arg("-v")
            .arg(format!("{stage}/{SYNAPSE_DIR}:/data:ro"))
            .arg("--")
            .arg(image)
            .arg("-m")
            .arg("synapse.config")
            .arg("-c")
            .arg("/data/homeserver.yaml"),
        stage
    ));
    s
}

/// `shell` run in the db container, with the password of the database's owner exported
/// from what the container holds: no secret on any command line.
fn in_db(kind: &Compose, shell: &str) -> Command {
    crate::render::postgres::in_db(compose(kind), shell)
}

/// The restore, as one transaction fed to `psql`: the `public` schema (where Synapse keeps
/// everything) dropped and created again, owned by the database's owner, then the dump's
/// SQL; committed only when `pg_restore` read the whole dump. Any error, or a dump that
/// does not read to its end, aborts it, and the database stays as it was. The one-time keys
/// are emptied before the commit, for dumps taken before [`PG_DUMP`] left them out.
const RESTORE: &str = "{ echo 'SET client_min_messages = warning; BEGIN; DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION CURRENT_USER;'; \
if pg_restore --no-owner -f -; then echo \"DO \\$\\$ BEGIN IF to_regclass('e2e_one_time_keys_json') IS NOT NULL THEN TRUNCATE e2e_one_time_keys_json; END IF; END \\$\\$; COMMIT;\"; \
else echo \"DO \\$\\$ BEGIN RAISE EXCEPTION 'the dump could not be read: nothing was restored'; END \\$\\$;\"; fi; } | ";

/// Dumps the deployment's database (Postgres' custom format) into generation `number`, whole
/// or not at all.
pub fn dump_script(dir: &str, kind: &Compose, number: u32) -> Script {
    let dump = format!("{GENERATIONS}/{number}/{DUMP}");
    let mut s = sh!("set -e\numask 077\n");
    s.push(confine::enter(dir));
    s.push(confine::file(&format!("{dump}.new")));
    s.push(confine::file(&dump));
    s.push(sh!(
        "{} > {}\nmv -f -- {} {}\n",
        in_db(kind, &format!("exec {}", as_owner(PG_DUMP))),
        format!("{dump}.new"),
        format!("{dump}.new"),
        dump
    ));
    s
}

/// Stops `services`: Synapse's workers before main moves to a new image, all its processes
/// before the database is restored.
pub fn stop_script(dir: &str, kind: &Compose, services: &[String]) -> Script {
    sh!(
        "set -e\numask 077\ncd -- {}\n{} 2>&1\n",
        dir,
        compose::stop(kind, services)
    )
}

/// Puts generation `number`'s dump back into the database, exactly: in one transaction,
/// everything there now (tables a newer Synapse created included) gives way to what was
/// dumped. Every Synapse process must be stopped.
pub fn restore_script(dir: &str, kind: &Compose, number: u32) -> Script {
    let dump = format!("{GENERATIONS}/{number}/{DUMP}");
    let mut s = sh!("set -e\numask 077\n");
    s.push(confine::enter(dir));
    s.push(confine::file(&dump));
    s.push(sh!(
        "{} < {} 2>&1\n",
        in_db(
            kind,
            &format!(
                "{RESTORE}{}",
                as_owner("psql -X -q -o /dev/null -v ON_ERROR_STOP=1")
            )
        ),
        dump
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::RenderedFile;

    const HOSTILE: &str = "/opt/x;touch${IFS}/tmp/pwned;'";
    const QUOTED: &str = "'/opt/x;touch${IFS}/tmp/pwned;'\\'''";

    #[test]
    fn the_database_is_dumped_and_restored_in_the_db_container_with_its_own_password() {
        let v2 = Compose::V2(String::new());
        let in_db = "sh -c 'export PGPASSWORD=\"${POSTGRES_PASSWORD:-$(cat -- \"$POSTGRES_PASSWORD_FILE\")}\";";
        let with = "-h /sockets -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\"'";
        assert_eq!(
            dump_script(HOSTILE, &v2, 7).text(),
            format!(
                "set -e\numask 077\n{enter}\
                 synprov_path f .synprov/generations/7/db.dump.new 'regular file'\n\
                 synprov_path f .synprov/generations/7/db.dump 'regular file'\n\
                 docker compose -f docker-compose.yml exec -T db {in_db} exec pg_dump -Fc \
                 --exclude-table-data=e2e_one_time_keys_json {with} \
                 > .synprov/generations/7/db.dump.new\n\
                 mv -f -- .synprov/generations/7/db.dump.new .synprov/generations/7/db.dump\n",
                enter = confine::enter(HOSTILE).text()
            )
        );
        assert_eq!(
            restore_script("/opt/s", &Compose::V1(String::new()), 3).text(),
            format!(
                "set -e\numask 077\n{enter}\
                 synprov_path f .synprov/generations/3/db.dump 'regular file'\n\
                 docker-compose -f docker-compose.yml exec -T db {in_db} \
                 {{ echo '\\''SET client_min_messages = warning; BEGIN; DROP SCHEMA public CASCADE; \
                 CREATE SCHEMA public AUTHORIZATION CURRENT_USER;'\\''; \
                 if pg_restore --no-owner -f -; then echo \"DO \\$\\$ BEGIN IF to_regclass('\\''e2e_one_time_keys_json'\\'') \
                 IS NOT NULL THEN TRUNCATE e2e_one_time_keys_json; END IF; END \\$\\$; COMMIT;\"; \
                 else echo \"DO \\$\\$ BEGIN RAISE EXCEPTION '\\''the dump could not be read: nothing was restored'\\''; END \\$\\$;\"; fi; }} \
                 | psql -X -q -o /dev/null -v ON_ERROR_STOP=1 {with} < .synprov/generations/3/db.dump 2>&1\n",
                enter = confine::enter("/opt/s").text()
            )
        );
    }

    #[test]
    fn workers_stop_and_main_starts_alone() {
        let v2 = Compose::V2(String::new());
        assert_eq!(
            stop_script(HOSTILE, &v2, &["rooms1".into(), "-rf".into()]).text(),
            format!(
                "set -e\numask 077\ncd -- {QUOTED}\n\
                 docker compose -f docker-compose.yml stop -- rooms1 -rf 2>&1\n"
            )
        );
        assert_eq!(
            compose::main_script("/opt/s", &v2, compose::Dependencies::Running).text(),
            "set -e\numask 077\ncd -- /opt/s\n\
             docker compose -f docker-compose.yml up -d --no-deps -- synapse 2>&1\n"
        );
    }

    #[test]
    fn the_config_check_stages_the_new_synapse_files_only_and_removes_the_stage() {
        let file = |path: &str| RenderedFile::for_test(path, &format!("contents of {path}"), 0o644);
        let files = DeploymentFiles::for_test(
            "/opt/s",
            vec![file("synapse/homeserver.yaml"), file("nginx/nginx.conf")],
            Vec::new(),
        );
        let plan = DeploymentPlan::for_test(
            "/opt/s",
            &[
                ("synapse/homeserver.yaml", Change::Update),
                ("nginx/nginx.conf", Change::Update),
            ],
            &[],
        );
        let script = check_script(&files, &plan, "synapse:1.164;id");
        let script = script.text();
        assert!(
            script.starts_with(
                &[
                    "set -e\numask 077\n",
                    confine::enter("/opt/s").text(),
                    "synprov_dir .synprov/upgrade-check\nsynprov_dir synapse\n\
                     rm -rf -- .synprov/upgrade-check\n\
                     mkdir -p -m 700 -- .synprov/upgrade-check\n\
                     if [ -d synapse ]; then cp -a -- synapse .synprov/upgrade-check/synapse; fi\n"
                ]
                .concat()
            ),
            "{script}"
        );
        assert!(
            script.contains("cd -P -- /opt/s/.synprov/upgrade-check || exit 1\n")
                && script.contains(
                    "mv -f -- synapse/.homeserver.yaml.synprov-new synapse/homeserver.yaml"
                )
                && !script.contains("nginx.conf"),
            "{script}"
        );
        assert!(
            script.ends_with(
                "set +e\ndocker run --rm --network none --entrypoint python \
                 -v /opt/s/.synprov/upgrade-check/synapse:/data:ro -- 'synapse:1.164;id' \
                 -m synapse.config -c /data/homeserver.yaml 2>&1\nstatus=$?\n\
                 rm -rf -- /opt/s/.synprov/upgrade-check\nexit $status\n"
            ),
            "{script}"
        );
    }
}
