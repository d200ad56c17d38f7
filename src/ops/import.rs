//! `synprov import`: the secrets of a homeserver deployed before synprov, in the guide's
//! layout (`synapse/homeserver.yaml` and the signing key beside it, mounted at `/data`),
//! read from its host. What the host sends is hostile: bounded, the YAML read without
//! aliases, each value typed and checked ([`ImportedSecrets::checked`]).

use serde_norway::Value;

use super::OpsError;
use crate::secrets::ImportedSecrets;
use crate::sh;
use crate::shell::Script;
use crate::transport::watch::Step;
use crate::transport::{Connection, OutputLimit};

/// The most of `homeserver.yaml` read: the guide's is a few KiB.
const MAX_CONFIG: usize = 1 << 20;

/// The most of the signing key read: one short line.
const MAX_KEY: usize = 4096;

/// Prints the regular file `path` (relative to `dir`), at most `limit` bytes; a link or
/// anything else is refused.
fn read_script(dir: &str, path: &str, limit: usize) -> Script {
    sh!(
        "cd -- {} || exit 1\n\
         if [ ! -f {} ] || [ -L {} ]; then echo \"$(pwd)/\"{}' is not a regular file' >&2; exit 1; fi\n\
         head -c {} -- {}\n",
        dir,
        path,
        path,
        path,
        limit.to_string(),
        path
    )
}

fn read(connection: &Connection, dir: &str, path: &str, limit: usize) -> Result<String, OpsError> {
    let output =
        connection.run_script_within(&read_script(dir, path, limit), OutputLimit::stdout(limit))?;
    if !output.success() {
        return Err(refused(connection, output.tail(5)));
    }
    Ok(output.stdout_text())
}

fn refused(connection: &Connection, why: String) -> OpsError {
    OpsError::Import {
        host: connection.host_name().to_string(),
        why: crate::text::one_line(&why).into_owned(),
    }
}

/// The secrets of the homeserver `server_name` deployed in `dir` on the host.
pub fn secrets(
    connection: &Connection,
    dir: &str,
    server_name: &str,
) -> Result<ImportedSecrets, OpsError> {
    connection.begin(Step::Facts)?;
    let config = read(connection, dir, "synapse/homeserver.yaml", MAX_CONFIG)?;
    let (imported, key_file) =
        from_config(&config, server_name).map_err(|why| refused(connection, why))?;
    let key = read(connection, dir, &format!("synapse/{key_file}"), MAX_KEY)?;
    connection.end_step();
    ImportedSecrets {
        signing_key: key.trim().to_string(),
        ..imported
    }
    .checked()
    .map_err(|why| refused(connection, why))
}

/// The directories synprov writes files in: the deploy directory, and each directory above
/// a file of `paths` (relative to it), parents first.
fn directories(paths: &[String]) -> Vec<String> {
    let mut dirs = vec![".".to_string()];
    for path in paths {
        let mut at = 0;
        while let Some(slash) = path[at..].find('/') {
            at += slash;
            let dir = path[..at].to_string();
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
            at += 1;
        }
    }
    dirs
}

/// Makes each of `dirs` (of `dir`, parents first) that exists root's alone, printing those
/// it changed. A parent is taken before its children, so once it is root's no one else can
/// swap a child for a link; a link is never followed.
fn take_script(dir: &str, dirs: &[String]) -> Script {
    let mut s = sh!("cd -P -- {} || exit 1\n", dir);
    for d in dirs {
        s.push(sh!(
            "if [ -d {} ] && [ ! -L {} ]; then\n\
             \x20   s=$(stat -c '%u %a' -- {}) || exit 1\n\
             \x20   if [ \"${s%% *}\" != 0 ] || [ $((0${s#* } & 022)) -ne 0 ]; then\n\
             \x20       chown -h 0:0 -- {} && chmod go-w -- {} && printf '%s\\n' {} || exit 1\n\
             \x20   fi\n\
             fi\n",
            d.as_str(),
            d.as_str(),
            d.as_str(),
            d.as_str(),
            d.as_str(),
            d.as_str()
        ));
    }
    s
}

/// Hands the directories synprov writes the deployment's files in (`paths`, relative to
/// `dir`) to root alone, where a deployment made by hand gave them to Synapse's user:
/// synprov's guard acts only in directories no one else can change. Returns those changed.
pub fn take_directories(
    connection: &Connection,
    dir: &str,
    paths: &[String],
) -> Result<Vec<String>, OpsError> {
    connection.begin(Step::Files)?;
    let dirs = directories(paths);
    let output =
        connection.run_script_within(&take_script(dir, &dirs), OutputLimit::stdout(1 << 16))?;
    connection.end_step();
    if !output.success() {
        return Err(refused(connection, output.tail(5)));
    }
    // Only names synprov asked about are reported: the host's words are not repeated.
    Ok(output
        .stdout_text()
        .lines()
        .filter(|line| dirs.iter().any(|d| d == line))
        .map(str::to_string)
        .collect())
}

/// The secrets in `homeserver.yaml` (the signing key left empty) and the name of the
/// signing key's file, which must be in `/data` (the guide's `synapse/` directory).
fn from_config(text: &str, server_name: &str) -> Result<(ImportedSecrets, String), String> {
    let config =
        crate::plugins::yaml::parse(text).map_err(|why| format!("homeserver.yaml: {why}"))?;
    let string = |value: &Value, key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("homeserver.yaml has no `{key}` string"))
    };
    let found = string(&config, "server_name")?;
    if found != server_name {
        return Err(format!(
            "homeserver.yaml is of server `{}`, not `{server_name}`",
            crate::text::one_line(&found)
        ));
    }
    let key_path = string(&config, "signing_key_path")?;
    let key_file = key_path
        .strip_prefix("/data/")
        .filter(|name| {
            !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .ok_or_else(|| {
            format!(
                "signing_key_path `{}` is not a file of /data (the guide's synapse/ directory)",
                crate::text::one_line(&key_path)
            )
        })?
        .to_string();
    let args = config
        .get("database")
        .and_then(|d| d.get("args"))
        .ok_or("homeserver.yaml has no database.args: synprov takes over a Postgres deployment")?;
    Ok((
        ImportedSecrets {
            signing_key: String::new(),
            registration_shared_secret: string(&config, "registration_shared_secret")?,
            macaroon_secret_key: string(&config, "macaroon_secret_key")?,
            form_secret: string(&config, "form_secret")?,
            postgres_password: string(args, "password")?,
        },
        key_file,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "server_name: old.example\nsigning_key_path: /data/old.example.signing.key\n\
        registration_shared_secret: 'r'\nmacaroon_secret_key: m\nform_secret: f\n\
        database:\n  name: psycopg2\n  args:\n    user: synapse\n    password: p\n";

    #[test]
    fn the_guide_s_config_gives_its_secrets_and_the_key_file() {
        let (secrets, key) = from_config(CONFIG, "old.example").unwrap();
        assert_eq!(key, "old.example.signing.key");
        assert_eq!(
            (
                secrets.registration_shared_secret.as_str(),
                secrets.macaroon_secret_key.as_str(),
                secrets.form_secret.as_str(),
                secrets.postgres_password.as_str()
            ),
            ("r", "m", "f", "p")
        );
        for (bad, why) in [
            (
                CONFIG.replace("old.example\nsign", "other\nsign"),
                "not `old.example`",
            ),
            (
                CONFIG.replace("/data/old", "/etc/../old"),
                "not a file of /data",
            ),
            (
                CONFIG.replace("/data/old", "/data/../old"),
                "not a file of /data",
            ),
            (CONFIG.replace("form_secret: f\n", ""), "no `form_secret`"),
            (CONFIG.replace("    password: p\n", ""), "no `password`"),
            (format!("{CONFIG}x: &a [1]\ny: *a\n"), "alias"),
        ] {
            let err = from_config(&bad, "old.example").unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn the_directories_of_the_files_are_taken_parents_first_never_through_a_link() {
        let paths = [
            "synapse/homeserver.yaml",
            "nginx/conf.d/a.conf",
            "docker-compose.yml",
        ]
        .map(String::from);
        assert_eq!(
            directories(&paths),
            [".", "synapse", "nginx", "nginx/conf.d"]
        );
        assert_eq!(
            take_script("/opt/synapse/old", &directories(&paths[..1])).text(),
            "cd -P -- /opt/synapse/old || exit 1\n\
             if [ -d . ] && [ ! -L . ]; then\n\
             \x20   s=$(stat -c '%u %a' -- .) || exit 1\n\
             \x20   if [ \"${s%% *}\" != 0 ] || [ $((0${s#* } & 022)) -ne 0 ]; then\n\
             \x20       chown -h 0:0 -- . && chmod go-w -- . && printf '%s\\n' . || exit 1\n\
             \x20   fi\nfi\n\
             if [ -d synapse ] && [ ! -L synapse ]; then\n\
             \x20   s=$(stat -c '%u %a' -- synapse) || exit 1\n\
             \x20   if [ \"${s%% *}\" != 0 ] || [ $((0${s#* } & 022)) -ne 0 ]; then\n\
             \x20       chown -h 0:0 -- synapse && chmod go-w -- synapse && printf '%s\\n' synapse || exit 1\n\
             \x20   fi\nfi\n"
        );
    }

    #[test]
    fn a_file_is_read_bounded_and_only_when_regular() {
        assert_eq!(
            read_script("/opt/synapse/old", "synapse/homeserver.yaml", 1024).text(),
            "cd -- /opt/synapse/old || exit 1\n\
             if [ ! -f synapse/homeserver.yaml ] || [ -L synapse/homeserver.yaml ]; then \
             echo \"$(pwd)/\"synapse/homeserver.yaml' is not a regular file' >&2; exit 1; fi\n\
             head -c 1024 -- synapse/homeserver.yaml\n"
        );
    }
}
