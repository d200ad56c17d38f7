//! WebAssembly plugins: loading, the compiled-component cache, config checks, what the
//! example plugins add to a deployment, and the sandbox refusing hostile plugins. The
//! components are the committed ones in plugins/dist (scripts/build-plugins.sh rebuilds them).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{files, root, synprov};

fn dist(name: &str) -> PathBuf {
    root().join("plugins/dist").join(format!("{name}.wasm"))
}

/// An inventory with one deployment and the given `[[plugins]]` entries, in a fresh
/// directory with its own plugin cache.
struct Project {
    dir: tempfile::TempDir,
    inventory: PathBuf,
}

impl Project {
    fn new(plugins: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let inventory = dir.path().join("inventory.toml");
        std::fs::write(
            &inventory,
            format!(
                "[hosts.hs1]\naddress = \"127.0.0.1\"\nport = 1\nuser = \"root\"\n\n\
                 [deployments.hs]\nserver_name = \"hs.example\"\npublic_baseurl = \"https://matrix.hs.example/\"\nhost = \"hs1\"\n\n{plugins}"
            ),
        )
        .unwrap();
        Project { dir, inventory }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache/synprov")
    }

    /// `synprov ARGS INVENTORY [REST]`: exit code, stdout, stderr.
    fn run(&self, args: &[&str], rest: &[&str]) -> (i32, String, String) {
        let output = synprov(self.dir.path())
            .env("SYNPROV_CACHE_DIR", self.cache())
            .args(args)
            .arg(&self.inventory)
            .args(rest)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn render(&self) -> (i32, PathBuf, String) {
        let out = self.dir.path().join("out");
        let (code, _, stderr) = self.run(&["render"], &["--out", out.to_str().unwrap()]);
        (code, out, stderr)
    }
}

fn plugin(name: &str, extra: &str) -> String {
    format!(
        "[[plugins]]\npath = {:?}\n{extra}\n",
        dist(name).display().to_string()
    )
}

fn examples() -> String {
    plugin("turn", "[plugins.config]\nimage = \"synprov/coturn:4.6\"\n") + &plugin("well-known", "")
}

#[test]
fn plugins_list_names_each_plugin_and_a_second_run_takes_the_compiled_form_from_the_cache() {
    let project = Project::new(&examples());
    let (code, first, stderr) = project.run(&["plugins", "list"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        first.contains("turn (turn 0.1.0): A TURN server (coturn)"),
        "{first}"
    );
    assert!(
        first.contains("well-known (well-known 0.1.0): Matrix .well-known delegation"),
        "{first}"
    );
    assert!(first.contains("deployments: hs"), "{first}");
    assert_eq!(first.matches("(compiled now)").count(), 2, "{first}");

    let mode = std::fs::metadata(project.cache())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "the cache is private");
    let entries: Vec<_> = std::fs::read_dir(project.cache()).unwrap().collect();
    assert_eq!(entries.len(), 2, "one compiled component per plugin");

    let (_, second, _) = project.run(&["plugins", "list"], &[]);
    assert_eq!(
        second.matches("(compiled form from the cache)").count(),
        2,
        "{second}"
    );
}

#[test]
fn a_cache_directory_others_can_write_is_not_used() {
    let project = Project::new(&plugin("well-known", ""));
    std::fs::create_dir_all(project.cache()).unwrap();
    std::fs::set_permissions(project.cache(), std::fs::Permissions::from_mode(0o777)).unwrap();
    for _ in 0..2 {
        let (code, out, stderr) = project.run(&["plugins", "list"], &[]);
        assert_eq!(code, 0, "{stderr}");
        assert!(out.contains("(compiled now)"), "{out}");
        assert!(
            stderr.contains("not using the plugin cache") && stderr.contains("chmod 700"),
            "{stderr}"
        );
    }
    assert_eq!(
        std::fs::read_dir(project.cache()).unwrap().count(),
        0,
        "nothing cached there"
    );
}

#[test]
fn plugins_check_runs_each_plugin_and_reports_a_bad_config_by_plugin() {
    let project = Project::new(&examples());
    let (code, out, stderr) = project.run(&["plugins", "check"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        out.contains("ok: 2 plugin(s) loaded") && out.contains("2 plugin health check(s)"),
        "{out}"
    );

    let typo = Project::new(&plugin("turn", "[plugins.config]\nprot = 3478\n"));
    let (code, _, stderr) = typo.run(&["plugins", "check"], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("plugin `turn` refused its config")
            && stderr.contains("unknown field `prot`"),
        "{stderr}"
    );

    let ports = Project::new(&plugin(
        "turn",
        "[plugins.config]\nmin_port = 60000\nmax_port = 50000\n",
    ));
    let (code, _, stderr) = ports.run(&["plugins", "check"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("need 0 < min_port <= max_port"), "{stderr}");
}

#[test]
fn an_inventory_naming_a_missing_plugin_file_is_refused_at_its_line() {
    let project = Project::new("[[plugins]]\npath = \"nowhere/turn.wasm\"\n");
    let (code, _, stderr) = project.run(&["check"], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("inventory.toml:12:8")
            && stderr.contains("plugin file")
            && stderr.contains("does not exist"),
        "{stderr}"
    );
}

fn read(dir: &Path, path: &str) -> String {
    std::fs::read_to_string(dir.join("hs1/hs").join(path)).unwrap()
}

#[test]
fn the_example_plugins_add_coturn_turn_settings_and_well_known_locations() {
    let project = Project::new(&examples());
    let (code, out, stderr) = project.render();
    assert_eq!(code, 0, "{stderr}");

    let turn = read(&out, "coturn/turnserver.conf");
    let secret = turn
        .lines()
        .find_map(|l| l.strip_prefix("static-auth-secret="))
        .expect("coturn gets the shared secret");
    assert!(secret.len() >= 40, "a derived secret, not a placeholder");
    let mode = std::fs::metadata(out.join("hs1/hs/coturn/turnserver.conf"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "it holds a secret");

    let hs: serde_norway::Value =
        serde_norway::from_str(&read(&out, "synapse/homeserver.yaml")).unwrap();
    assert_eq!(
        hs["turn_shared_secret"].as_str(),
        Some(secret),
        "Synapse and coturn share the secret"
    );
    assert_eq!(
        hs["turn_uris"][0].as_str(),
        Some("turn:hs.example:3478?transport=udp")
    );
    assert!(
        hs["listeners"].is_sequence(),
        "synprov's own settings are kept"
    );

    let compose: serde_norway::Value =
        serde_norway::from_str(&read(&out, "docker-compose.yml")).unwrap();
    let coturn = &compose["services"]["coturn"];
    assert_eq!(coturn["image"].as_str(), Some("synprov/coturn:4.6"));
    assert_eq!(coturn["network_mode"].as_str(), Some("host"));
    assert!(compose["services"]["synapse"].is_mapping());

    let locations = read(&out, "nginx/locations.conf");
    assert!(
        locations.contains("location = /.well-known/matrix/server {"),
        "{locations}"
    );
    assert!(
        locations.contains(r#"return 200 '{"m.server":"matrix.hs.example:443"}';"#),
        "{locations}"
    );
    assert!(
        locations.contains(r#""m.homeserver":{"base_url":"https://matrix.hs.example/"}"#),
        "{locations}"
    );

    // The same inventory and key give the same secret on the next run.
    let again = Project::new(&examples());
    let (_, out2, _) = again.render();
    assert_eq!(read(&out2, "coturn/turnserver.conf"), turn);
}

#[test]
fn a_plugin_naming_an_unknown_deployment_or_host_is_refused_at_its_line() {
    let project = Project::new(&plugin(
        "well-known",
        "deployments = [\"hs\"]\nhosts = [\"hs1\"]",
    ));
    let (code, _, stderr) = project.run(&["check"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let other = Project::new(&plugin("well-known", "deployments = [\"hz\"]"));
    let (code, _, stderr) = other.run(&["check"], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("inventory.toml:13:16")
            && stderr.contains("names deployment `hz`, which is not defined")
            && stderr.contains("defined deployments: hs"),
        "{stderr}"
    );
    let host = Project::new(&plugin("well-known", "hosts = [\"hs2\"]"));
    let (code, _, stderr) = host.run(&["check"], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("names `hs2`, which is neither a host nor a group")
            && stderr.contains("did you mean `hs1`"),
        "{stderr}"
    );
}

/// Each hostile plugin is refused with its own error, before anything is written: `render`
/// leaves no output, and `apply` fails before connecting to any host.
#[test]
fn hostile_plugins_are_each_refused_with_their_own_error_and_nothing_is_written() {
    let cases = [
        (
            "infinite-loop",
            "plugin `hostile-infinite-loop` ran out of fuel in `contribute` (an endless loop?)",
        ),
        (
            "memory-bomb",
            "plugin `hostile-memory-bomb` went over its memory limit of 64 MiB in `contribute`",
        ),
        (
            "trap",
            "plugin `hostile-trap` crashed in `contribute`: wasm trap: wasm `unreachable` instruction executed",
        ),
        (
            "path-traversal",
            "plugin `hostile-path-traversal` returned something synprov refuses: file path \"../../etc/cron.d/evil\" leaves the deploy directory",
        ),
        (
            "oversized-output",
            "plugin `hostile-oversized-output` returned something synprov refuses: its output is 8.0 MiB, more than the limit of 1 MiB",
        ),
        (
            "service-collision",
            "plugin `hostile-service-collision` returned something synprov refuses: its service `synapse` collides with a service of the deployment",
        ),
        ("wasi-read", "plugin `hostile-wasi-read` imports `wasi:"),
        ("wasi-read", "`wasi:filesystem/preopens@0.2.6`"),
    ];
    for (name, expected) in cases {
        let project = Project::new(&plugin(&format!("hostile-{name}"), ""));
        let (code, out, stderr) = project.render();
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{name}: expected {expected:?} in:\n{stderr}"
        );
        assert!(
            !out.exists() || files(&out).is_empty(),
            "{name}: render wrote files"
        );

        let (code, _, stderr) = project.run(&["apply"], &[]);
        assert_eq!(code, 1, "{name}");
        assert!(stderr.contains(expected), "{name}: apply says {stderr}");
        assert!(
            !stderr.contains("hs1"),
            "{name}: apply got as far as a host: {stderr}"
        );
    }
}
