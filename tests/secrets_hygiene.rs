//! Secrets hygiene, through the binary: Redis' password on no command line, old secrets
//! masked in a plan, the master key from the environment refused when unusable, two
//! installs with two keys, file modes decided by any secret (derived or given) and set
//! without a window, and no terminal escape printed raw.

mod common;

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{inventory, render, root, synprov};
use serde_norway::Value;

fn yaml(path: &Path) -> Value {
    serde_norway::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `synprov render PATH --out DIR/out` run in `dir`, with the master key `key` from the
/// environment (`None`: no key in the environment, so the key file is used or made).
fn render_with_key(dir: &Path, path: &Path, key: Option<OsString>) -> std::process::Output {
    let mut command = synprov(dir);
    match key {
        Some(key) => command.env("SYNPROV_MASTER_KEY", key),
        None => command.env_remove("SYNPROV_MASTER_KEY"),
    };
    command
        .arg("render")
        .arg(path)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap()
}

const ONE_HOST: &str = "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"h\"\n";

#[test]
fn a_spread_deployment_keeps_the_redis_password_off_every_command_line() {
    let out = render(&root().join("inventory/spread.toml"));
    let main = out.path().join("hs-main/big");
    let hs = yaml(&main.join("synapse/homeserver.yaml"));
    let password = hs["redis"]["password"].as_str().unwrap().to_string();

    let compose_text = fs::read_to_string(main.join("docker-compose.yml")).unwrap();
    assert!(!compose_text.contains(&password), "{compose_text}");
    let compose = yaml(&main.join("docker-compose.yml"));
    let redis = &compose["services"]["redis"];
    assert_eq!(
        redis["command"].as_str(),
        Some("redis-server /usr/local/etc/redis/redis.conf")
    );
    let volumes: Vec<&str> = redis["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        volumes.contains(&"./redis-conf:/usr/local/etc/redis:ro"),
        "the directory is mounted, not the file: {volumes:?}"
    );
    let test: Vec<&str> = redis["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(test[0], "CMD-SHELL");
    assert!(
        test[1].contains("REDISCLI_AUTH=") && test[1].contains("/usr/local/etc/redis/redis.conf"),
        "{test:?}"
    );

    let conf = main.join("redis-conf/redis.conf");
    assert_eq!(mode(&conf), 0o600);
    let conf_text = fs::read_to_string(&conf).unwrap();
    assert!(
        conf_text.contains(&format!("\nrequirepass {password}\n"))
            && conf_text.contains("\nbind 10.20.0.10\n")
            && conf_text.contains("\nport 6379\n"),
        "{conf_text}"
    );
    // Only the main host runs Redis.
    assert!(!out.path().join("hs-rooms/big/redis-conf").exists());
}

#[test]
fn the_redis_config_file_belongs_to_the_user_redis_runs_as_in_a_directory_only_its_group_enters() {
    let inventory = synprov::inventory::load(&root().join("inventory/spread.toml")).unwrap();
    let hosts = common::render_hosts(&inventory, Some("hs-main"));
    let deployment = &hosts[0].deployments[0];
    let conf = deployment
        .files
        .iter()
        .find(|f| f.path == "redis-conf/redis.conf")
        .unwrap();
    assert_eq!((conf.mode, conf.owner), (0o600, Some((1000, 1000))));
    assert!(conf.secret);
    assert_eq!(conf.used_by, ["redis"], "a new password restarts Redis");
    let dir = deployment
        .dirs
        .iter()
        .find(|d| d.path == "redis-conf")
        .unwrap();
    assert_eq!((dir.mode, dir.owner), (0o750, Some((0, 1000))));
}

#[test]
fn a_non_utf8_master_key_in_the_environment_is_refused_and_no_key_is_made() {
    let (dir, path) = inventory(ONE_HOST);
    let out = dir.path().join("out");
    let mut bytes = b"0123456789abcdef0123456789abcdef".to_vec();
    bytes.extend([0xff, 0xfe]);
    let output = render_with_key(dir.path(), &path, Some(OsString::from_vec(bytes)));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("SYNPROV_MASTER_KEY is set but unusable: it is not UTF-8"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.path().join("inventory.master-key").exists());
    assert!(!out.exists());
}

#[test]
fn a_padded_or_short_master_key_in_the_environment_is_refused() {
    let (dir, path) = inventory(ONE_HOST);
    for (value, why) in [
        (
            format!("{}\n", common::TEST_KEY),
            "it starts or ends with whitespace",
        ),
        ("short".to_string(), "it is 5 bytes long"),
    ] {
        let output = render_with_key(dir.path(), &path, Some(value.clone().into()));
        assert_eq!(output.status.code(), Some(1), "{value:?}");
        assert!(stderr(&output).contains(why), "{}", stderr(&output));
        assert!(!dir.path().join("inventory.master-key").exists());
    }
}

#[test]
fn a_guessable_master_key_is_refused_saying_how_to_make_a_good_one() {
    let (dir, path) = inventory(ONE_HOST);
    for key in [
        "x".repeat(40),
        "abcdefghijklmnopqrstuvwxyz0123456789".into(),
    ] {
        let output = render_with_key(dir.path(), &path, Some(key.clone().into()));
        assert_eq!(output.status.code(), Some(1), "{key:?}");
        let stderr = stderr(&output);
        assert!(
            stderr.contains("SYNPROV_MASTER_KEY is set but unusable: it is guessable"),
            "{stderr}"
        );
        assert!(stderr.contains("openssl rand -base64 32"), "{stderr}");
        assert!(!stderr.contains(&key), "the key is never printed: {stderr}");
    }
    // A key file holding a short word over and over.
    let file = dir.path().join("inventory.master-key");
    fs::write(&file, "hunter2-".repeat(8) + "\n").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let output = render_with_key(dir.path(), &path, None);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("is unusable: it is guessable: it repeats the same 8 characters"),
        "{}",
        stderr(&output)
    );
    assert!(
        !stderr(&output).contains("hunter2"),
        "the key is never printed"
    );
    assert!(!dir.path().join("out").exists(), "nothing is rendered");
}

#[test]
fn two_fresh_installs_derive_different_secrets_and_signing_keys() {
    let rendered: Vec<(String, String)> = (0..2)
        .map(|_| {
            let (dir, path) = inventory(ONE_HOST);
            let out = dir.path().join("out");
            let output = render_with_key(dir.path(), &path, None);
            assert!(output.status.success(), "{}", stderr(&output));
            let d = out.join("h/d/synapse");
            (
                fs::read_to_string(d.join("homeserver.yaml")).unwrap(),
                fs::read_to_string(d.join("example.org.signing.key")).unwrap(),
            )
        })
        .collect();
    let (a, b) = (&rendered[0], &rendered[1]);
    assert_ne!(a.1, b.1, "signing keys");
    let hs = |text: &str| serde_norway::from_str::<Value>(text).unwrap();
    let (a_hs, b_hs) = (hs(&a.0), hs(&b.0));
    for key in [
        "macaroon_secret_key",
        "form_secret",
        "registration_shared_secret",
        "worker_replication_secret",
    ] {
        assert_ne!(a_hs[key], b_hs[key], "{key}");
    }
    assert_ne!(
        a_hs["database"]["args"]["password"],
        b_hs["database"]["args"]["password"]
    );
}

#[test]
fn a_homeserver_whose_secrets_all_come_from_the_inventory_is_0600() {
    let (_dir, path) = inventory(&format!(
        "{ONE_HOST}[deployments.d.homeserver]\nmacaroon_secret_key = \"given-macaroon\"\nform_secret = \"given-form\"\n\
registration_shared_secret = \"given-registration\"\nworker_replication_secret = \"given-replication\"\n\
turn_shared_secret = \"given-turn\"\n[deployments.d.homeserver.database.args]\npassword = \"given-db-password\"\n"
    ));
    let out = render(&path);
    let d = out.path().join("h/d");
    let homeserver = d.join("synapse/homeserver.yaml");
    let text = fs::read_to_string(&homeserver).unwrap();
    assert!(
        text.contains("given-macaroon") && text.contains("given-db-password"),
        "{text}"
    );
    assert_eq!(mode(&homeserver), 0o600);
    assert_eq!(mode(&d.join("synapse/workers/rooms1.yaml")), 0o644);
}

#[test]
fn render_replaces_an_old_readable_file_instead_of_writing_secrets_through_it() {
    let (dir, path) = inventory(ONE_HOST);
    let out = dir.path().join("out");
    let homeserver = out.join("h/d/synapse/homeserver.yaml");
    fs::create_dir_all(homeserver.parent().unwrap()).unwrap();
    fs::write(&homeserver, "old\n").unwrap();
    fs::set_permissions(&homeserver, fs::Permissions::from_mode(0o644)).unwrap();
    // Another user opened the world-readable file before the render.
    let mut held = fs::File::open(&homeserver).unwrap();
    let output = render_with_key(dir.path(), &path, Some(common::TEST_KEY.into()));
    assert!(output.status.success(), "{}", stderr(&output));
    let mut seen = String::new();
    held.read_to_string(&mut seen).unwrap();
    assert_eq!(seen, "old\n", "the open file never got the secrets");
    assert_eq!(mode(&homeserver), 0o600);
    assert!(
        fs::read_dir(homeserver.parent().unwrap())
            .unwrap()
            .all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".synprov-new")),
        "no staged file is left behind"
    );
}

/// A spread deployment over two `local` hosts, deployed into `deploy`.
fn local_spread(deploy: &Path) -> (tempfile::TempDir, std::path::PathBuf) {
    inventory(&format!(
        "[hosts.main]\ntransport = \"local\"\nprivate_address = \"127.0.0.1\"\n\
[hosts.rooms]\ntransport = \"local\"\nprivate_address = \"127.0.0.2\"\n\
[deployments.d]\nserver_name = \"example.org\"\nhost = \"main\"\ndeploy_dir = \"{}\"\n\
[deployments.d.placement]\nrooms = \"rooms\"\n",
        deploy.display()
    ))
}

#[test]
fn a_plan_over_an_old_compose_file_shows_no_old_redis_password_nor_raw_escapes() {
    let deploy = tempfile::tempdir().unwrap();
    let target = deploy.path().join("d");
    let (dir, path) = local_spread(&target);
    let apply = synprov(dir.path())
        .args(["apply", "--files-only", "--limit", "main"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(apply.status.success(), "{}", stderr(&apply));

    // The compose file an older synprov wrote, with another key's password, and a line a
    // hostile host added to homeserver.yaml.
    let compose = target.join("docker-compose.yml");
    let text = fs::read_to_string(&compose).unwrap();
    let old = text
        .lines()
        .map(|line| {
            if line.starts_with("    command: \"redis-server") {
                "    command: \"redis-server --bind 127.0.0.1 --port 6379 --requirepass OLDPASS --unixsocket /sockets/synapse_redis.sock --unixsocketperm 660\"".to_string()
            } else if line.contains("redis-cli") {
                "      test: [\"CMD\", \"redis-cli\", \"-s\", \"/sockets/synapse_redis.sock\", \"--no-auth-warning\", \"-a\", \"OLDPASS\", \"ping\"]".to_string()
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    assert!(old.contains("-a\", \"OLDPASS") && old.contains("--requirepass OLDPASS"));
    fs::write(&compose, old).unwrap();
    let homeserver = target.join("synapse/homeserver.yaml");
    let text = fs::read_to_string(&homeserver).unwrap();
    fs::write(&homeserver, format!("{text}motd: \"\x1b[2J\rall good\"\n")).unwrap();

    let plan = synprov(dir.path())
        .args(["plan", "--limit", "main"])
        .arg(&path)
        .output()
        .unwrap();
    let shown = stdout(&plan);
    assert_eq!(plan.status.code(), Some(2), "{shown}{}", stderr(&plan));
    assert!(
        shown.contains("~ change docker-compose.yml") && shown.contains("-      test:"),
        "{shown}"
    );
    assert!(!shown.contains("OLDPASS"), "{shown}");
    assert!(
        !shown.contains('\x1b') && !shown.contains('\r'),
        "{shown:?}"
    );
    assert!(
        shown.contains("-motd: \"\\x1b[2J\\x0dall good\""),
        "{shown}"
    );
}

#[test]
fn a_tls_key_is_written_0600_and_a_renewed_one_is_never_shown_and_only_reloads_nginx() {
    let deploy = tempfile::tempdir().unwrap();
    let target = deploy.path().join("d");
    let (dir, path) = inventory(&format!(
        "[hosts.main]\ntransport = \"local\"\n\
[deployments.d]\nserver_name = \"example.org\"\nhost = \"main\"\ndeploy_dir = \"{}\"\n\
[deployments.d.tls]\ncertificate = \"fullchain.pem\"\nkey = \"privkey.pem\"\n",
        target.display()
    ));
    let ca = common::tls::TestCa::new("test CA");
    let issue = || {
        let (cert, key) = ca.issue(&["example.org"]);
        fs::write(dir.path().join("fullchain.pem"), cert).unwrap();
        fs::write(dir.path().join("privkey.pem"), &key).unwrap();
        key
    };
    let old_key = issue();
    let apply = synprov(dir.path())
        .args(["apply", "--files-only"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(apply.status.success(), "{}", stderr(&apply));
    assert_eq!(mode(&target.join("nginx/tls-key.pem")), 0o600);
    assert_eq!(mode(&target.join("nginx/tls-certificate.pem")), 0o644);
    assert_eq!(
        fs::read_to_string(target.join("nginx/tls-key.pem")).unwrap(),
        old_key
    );

    let new_key = issue();
    let plan = synprov(dir.path()).arg("plan").arg(&path).output().unwrap();
    let shown = stdout(&plan);
    assert_eq!(plan.status.code(), Some(2), "{shown}{}", stderr(&plan));
    for expected in [
        "~ change nginx/tls-certificate.pem",
        "~ change nginx/tls-key.pem",
        "(TLS key: contents hidden)",
        "services reloaded for changed files: nginx",
    ] {
        assert!(
            shown.contains(expected),
            "plan lacks {expected:?}:\n{shown}"
        );
    }
    assert!(!shown.contains("recreated"), "{shown}");
    for key in [&old_key, &new_key] {
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!shown.contains(line), "a key line is shown:\n{shown}");
        }
    }
}

/// Every secret the test key derives for `server_name`, the TURN plugin's among them.
fn derived_secrets(server_name: &str) -> Vec<String> {
    let key = synprov::secrets::MasterKey::from_text(common::TEST_KEY).unwrap();
    let mut all: Vec<String> = key
        .secrets_for(server_name)
        .all()
        .iter()
        .map(|s| s.expose().to_string())
        .collect();
    all.push(
        key.derive(server_name, "plugin/turn/turn_shared_secret")
            .expose()
            .to_string(),
    );
    all
}

/// The env files a Compose service reads (`env_file`, a path or a list).
fn env_files(service: &Value) -> Vec<String> {
    match &service["env_file"] {
        Value::Sequence(list) => list
            .iter()
            .filter_map(|e| e.get("path").unwrap_or(e).as_str().map(String::from))
            .collect(),
        Value::String(path) => vec![path.clone()],
        _ => Vec::new(),
    }
}

#[test]
fn no_secret_reaches_a_container_as_an_environment_value() {
    // The guide's single host, a spread deployment, and the demo with the TURN plugin (whose
    // coturn service has a derived secret).
    for (inventory, server_name) in [
        ("inventory/example.toml", "example.org"),
        ("inventory/spread.toml", "big.example"),
        ("inventory/demo.toml", "demo.example"),
    ] {
        let out = render(&root().join(inventory));
        let secrets = derived_secrets(server_name);
        let mut deployments = 0;
        for host in fs::read_dir(out.path()).unwrap() {
            for dir in fs::read_dir(host.unwrap().path()).unwrap() {
                let dir = dir.unwrap().path();
                deployments += 1;
                let compose_text = fs::read_to_string(dir.join("docker-compose.yml")).unwrap();
                let compose: Value = serde_norway::from_str(&compose_text).unwrap();
                // Environment, command, healthcheck, labels: all of the compose file is what
                // `docker inspect` shows, so none of it may hold a secret.
                let mut env_texts = vec![("docker-compose.yml".to_string(), compose_text)];
                let mut read = vec![".env".to_string()];
                for (_, service) in compose["services"].as_mapping().unwrap() {
                    read.extend(env_files(service));
                }
                for file in read {
                    let text = fs::read_to_string(dir.join(&file)).unwrap();
                    env_texts.push((file, text));
                }
                for (file, text) in &env_texts {
                    for secret in &secrets {
                        assert!(
                            !text.contains(secret.as_str()),
                            "{inventory}: {} holds a secret the container's environment would show",
                            dir.join(file).display()
                        );
                    }
                }
                if dir.join(".postgres.env").exists() {
                    let env = fs::read_to_string(dir.join(".postgres.env")).unwrap();
                    assert!(
                        env.contains("\nPOSTGRES_PASSWORD_FILE=/etc/postgresql/password\n"),
                        "{env}"
                    );
                    let password = dir.join("postgres/password");
                    assert_eq!(mode(&password), 0o600);
                    let hs = yaml(&dir.join("synapse/homeserver.yaml"));
                    assert_eq!(
                        fs::read_to_string(&password).unwrap(),
                        format!("{}\n", hs["database"]["args"]["password"].as_str().unwrap()),
                        "Postgres and Synapse share one password"
                    );
                    assert!(
                        compose["services"]["db"]["volumes"]
                            .as_sequence()
                            .unwrap()
                            .contains(&Value::from("./postgres:/etc/postgresql:ro")),
                        "the password file is mounted read-only"
                    );
                }
            }
        }
        assert!(deployments > 0, "{inventory} rendered nothing");
    }
}
