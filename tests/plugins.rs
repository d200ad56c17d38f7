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
        let project = Project { dir, inventory };
        project.set_plugins(plugins);
        project
    }

    /// Rewrites the inventory with other `[[plugins]]` entries; the cache is kept, so a
    /// test trying many configs of one plugin compiles it once.
    fn set_plugins(&self, plugins: &str) {
        std::fs::write(
            &self.inventory,
            format!(
                "[hosts.hs1]\naddress = \"127.0.0.1\"\nport = 1\nuser = \"root\"\n\n\
                 [deployments.hs]\nserver_name = \"hs.example\"\npublic_baseurl = \"https://matrix.hs.example/\"\nhost = \"hs1\"\n\n{plugins}"
            ),
        )
        .unwrap();
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
    plugin(
        "turn",
        "allow = [\"host-network\"]\n[plugins.config]\nimage = \"synprov/coturn:4.6\"\n",
    ) + &plugin("well-known", "")
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
    assert!(first.contains("  allow: host-network\n"), "{first}");
    assert!(
        first.contains("  allow: nothing beyond the confined default\n"),
        "{first}"
    );
    assert!(first.contains("  sha256: not pinned\n"), "{first}");
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

    let turn = read(&out, "plugins/turn/coturn/turnserver.conf");
    let secret = turn
        .lines()
        .find_map(|l| l.strip_prefix("static-auth-secret="))
        .expect("coturn gets the shared secret");
    assert!(secret.len() >= 40, "a derived secret, not a placeholder");
    let mode = std::fs::metadata(out.join("hs1/hs/plugins/turn/coturn/turnserver.conf"))
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
    assert_eq!(
        coturn["volumes"][0].as_str(),
        Some("./plugins/turn/coturn:/etc/coturn:ro"),
        "the plugin's mount is its own directory"
    );
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
    assert_eq!(read(&out2, "plugins/turn/coturn/turnserver.conf"), turn);
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
            "plugin `hostile-path-traversal` returned something synprov refuses: file path \"../../etc/cron.d/evil\" leaves the plugin's directory",
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

/// The `hostile-abuse` component doing the abuse `name`, with `extra` inventory lines.
fn abuse(name: &str, extra: &str) -> String {
    plugin(
        "hostile-abuse",
        &format!("{extra}\n[plugins.config]\nabuse = \"{name}\"\n"),
    )
}

/// Renders and applies `project`, both of which must fail with `expected` before anything
/// is written: `render` leaves no output, `apply` stops before connecting to any host.
fn assert_refused_before_any_write(project: &Project, case: &str, expected: &[&str]) {
    let (code, out, stderr) = project.render();
    assert_eq!(code, 1, "{case}: {stderr}");
    for part in expected {
        assert!(
            stderr.contains(part),
            "{case}: expected {part:?} in:\n{stderr}"
        );
    }
    assert!(
        !out.exists() || files(&out).is_empty(),
        "{case}: render wrote files"
    );
    let (code, _, stderr) = project.run(&["apply"], &[]);
    assert_eq!(code, 1, "{case}");
    assert!(stderr.contains(expected[0]), "{case}: apply says {stderr}");
    assert!(
        !stderr.contains("hs1"),
        "{case}: apply got as far as a host: {stderr}"
    );
}

/// One hostile plugin per capability: each is refused naming the plugin, its service and
/// the field, with the grant that would allow it when there is one, and nothing is written.
#[test]
fn a_plugin_service_beyond_the_confined_default_is_refused_per_capability_before_any_write() {
    let cases = [
        ("privileged", "privileged", Some("privileged")),
        ("host-network", "network_mode", Some("host-network")),
        ("host-pid", "pid", Some("host-pid")),
        ("host-ipc", "ipc", Some("host-ipc")),
        ("cap-add", "cap_add[0]", Some("cap:SYS_ADMIN")),
        ("devices", "devices[0]", Some("device:/dev/sda")),
        ("low-port", "ports[0]", Some("privileged-ports")),
        ("security-opt", "security_opt[0]", None),
        ("userns", "userns_mode", None),
        ("docker-socket", "volumes[0]", None),
        ("root-mount", "volumes[0]", None),
        ("long-bind", "volumes[0]", None),
        ("parent-mount", "volumes[0]", None),
        ("extends", "extends", None),
        ("env-file", "env_file", None),
        ("build", "build", None),
        ("join-synapse", "network_mode", None),
        ("unknown-key", "sysctls", None),
    ];
    let project = Project::new("");
    for (name, field, grant) in cases {
        project.set_plugins(&abuse(name, ""));
        let head = format!("plugin `hostile-abuse`, service `evil`, field `{field}`");
        let help = grant.map(|g| format!("allow = [\"{g}\"]"));
        let mut expected = vec![head.as_str()];
        expected.extend(help.as_deref());
        assert_refused_before_any_write(&project, name, &expected);
    }
}

#[test]
fn a_granted_capability_lets_the_service_through_and_the_grant_is_listed() {
    let project = Project::new(&abuse("cap-add", "allow = [\"cap:SYS_ADMIN\"]"));
    let (code, out, stderr) = project.render();
    assert_eq!(code, 0, "{stderr}");
    let compose: serde_norway::Value =
        serde_norway::from_str(&read(&out, "docker-compose.yml")).unwrap();
    assert_eq!(
        compose["services"]["evil"]["cap_add"][0].as_str(),
        Some("SYS_ADMIN")
    );
    let (_, list, _) = project.run(&["plugins", "list"], &[]);
    assert!(list.contains("  allow: cap:SYS_ADMIN\n"), "{list}");
}

#[test]
fn the_turn_example_without_its_grant_is_refused_before_any_write() {
    let project = Project::new(&plugin(
        "turn",
        "[plugins.config]\nimage = \"synprov/coturn:4.6\"\n",
    ));
    assert_refused_before_any_write(
        &project,
        "turn",
        &[
            "plugin `turn`, service `coturn`, field `network_mode`",
            "allow = [\"host-network\"]",
        ],
    );
}

/// What a plugin returns beside its services: Nginx, YAML and paths, each refused by name.
#[test]
fn hostile_locations_yaml_and_paths_are_refused_naming_the_plugin_before_any_write() {
    let cases = [
        (
            "comment-braces",
            "plugin `hostile-abuse` returned something synprov refuses: Nginx location \"= /hostile\" has a `}` in its body, which would close the location block",
        ),
        (
            "admin-shadow",
            "its Nginx location `^~ /_synapse/admin/v1/` is under `/_synapse`, which synprov routes",
        ),
        ("variable", "which Nginx reads as a variable"),
        ("alias-bomb", "it uses a YAML alias"),
        (
            "nested",
            "plugin `hostile-abuse` returned something synprov refuses: file a is also the directory of its file a/b",
        ),
    ];
    let project = Project::new("");
    for (name, expected) in cases {
        project.set_plugins(&abuse(name, ""));
        assert_refused_before_any_write(&project, name, &[expected]);
    }
}

#[test]
fn a_plugins_compose_file_names_land_in_its_own_directory_not_beside_docker_compose_yml() {
    let project = Project::new(&abuse("compose-override", ""));
    let (code, out, stderr) = project.render();
    assert_eq!(code, 0, "{stderr}");
    let deployment = out.join("hs1/hs");
    assert!(!deployment.join("compose.yaml").exists());
    assert!(!deployment.join("docker-compose.override.yml").exists());
    assert!(
        deployment
            .join("plugins/hostile-abuse/compose.yaml")
            .is_file()
    );
    assert!(
        deployment
            .join("plugins/hostile-abuse/docker-compose.override.yml")
            .is_file()
    );
}

#[test]
fn a_plugin_file_holding_a_derived_secret_is_0600_even_when_the_plugin_asks_0644() {
    let project = Project::new(&abuse("secret-mode", ""));
    let (code, out, stderr) = project.render();
    assert_eq!(code, 0, "{stderr}");
    let mode = std::fs::metadata(out.join("hs1/hs/plugins/hostile-abuse/secret.conf"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn an_unknown_grant_is_refused_at_its_line_with_a_close_spelling() {
    let project = Project::new(&plugin(
        "turn",
        "allow = [\"host-netwrok\"]\n[plugins.config]\nimage = \"x\"",
    ));
    let (code, _, stderr) = project.run(&["check"], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("inventory.toml:13:10")
            && stderr.contains("plugin `turn`: `host-netwrok` is not a grant synprov knows")
            && stderr.contains("did you mean `host-network`?"),
        "{stderr}"
    );
}

fn sha256_of(name: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(dist(name)).unwrap()))
}

#[test]
fn a_plugin_pinned_by_sha256_loads_only_with_that_content() {
    let digest = sha256_of("well-known");
    let pinned = Project::new(&plugin("well-known", &format!("sha256 = \"{digest}\"")));
    let (code, out, stderr) = pinned.run(&["plugins", "list"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        out.contains(&format!("  sha256: {digest} (pinned)")),
        "{out}"
    );

    let other = sha256_of("echo");
    let wrong = Project::new(&plugin("well-known", &format!("sha256 = \"{other}\"")));
    let (code, _, stderr) = wrong.run(&["check"], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("inventory.toml:13:10")
            && stderr.contains(&format!("has SHA-256 {digest}, not the pinned one")),
        "{stderr}"
    );
}

#[test]
fn a_plugin_name_that_is_not_a_plain_directory_name_is_refused() {
    let project = Project::new(&plugin("echo", "name = \"..\""));
    let (code, _, stderr) = project.run(&["check"], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("inventory.toml:13:8")
            && stderr.contains("invalid plugin name `..`")
            && stderr.contains("start with a letter or a digit"),
        "{stderr}"
    );
}

#[test]
fn the_turn_example_refuses_an_external_ip_that_is_not_an_ip_address() {
    let project = Project::new(&plugin(
        "turn",
        "allow = [\"host-network\"]\n[plugins.config]\nexternal_ip = \"203.0.113.7\\nallowed-peer-ip=10.0.0.1\"\n",
    ));
    let (code, _, stderr) = project.run(&["plugins", "check"], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("plugin `turn` refused its config")
            && stderr.contains("invalid IP address"),
        "{stderr}"
    );
}

#[test]
fn the_well_known_example_never_lets_nginx_interpolate_a_variable() {
    let project = Project::new(&plugin(
        "well-known",
        "[plugins.config.client_extra]\n\"org.example\" = \"$http_authorization 'x' \\\\ \\\"y\\\"\"\n",
    ));
    let (code, out, stderr) = project.render();
    assert_eq!(code, 0, "{stderr}");
    let locations = read(&out, "nginx/locations.conf");
    let line = locations
        .lines()
        .find(|l| l.contains("org.example"))
        .unwrap();
    assert!(!line.contains('$'), "{line}");
    // What Nginx answers is the JSON with `$` as its escape, which a client reads as `$`.
    let quoted = line
        .trim()
        .strip_prefix("return 200 '")
        .and_then(|l| l.strip_suffix("';"))
        .unwrap();
    let mut answered = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        answered.push(if c == '\\' { chars.next().unwrap() } else { c });
    }
    let json: serde_json::Value = serde_json::from_str(&answered).unwrap();
    assert_eq!(
        json["org.example"].as_str(),
        Some("$http_authorization 'x' \\ \"y\"")
    );
}
