//! Rendering the example inventories: the files, their modes, determinism, the worker
//! settings of homeserver.yaml, and snapshots of every file.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{TEST_KEY, files, inventory, render, require, root, synprov};
use serde_norway::Value;

fn yaml(path: &Path) -> Value {
    serde_norway::from_str(&fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn names(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect(),
        Value::Mapping(map) => map
            .keys()
            .map(|k| k.as_str().unwrap().to_string())
            .collect(),
        other => vec![other.as_str().unwrap().to_string()],
    }
}

#[test]
fn the_example_renders_every_file_of_the_guides_topology() {
    let out = render(&root().join("inventory/example.toml"));
    let dir = out.path().join("hs1/example");
    let listed: Vec<String> = files(&dir)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut expected = vec![
        ".env",
        ".postgres.env",
        ".synapse.env",
        "docker-compose.yml",
        "nginx/locations.conf",
        "nginx/maps.conf",
        "nginx/nginx.conf",
        "nginx/private.conf",
        "nginx/proxy.conf",
        "nginx/upstreams.conf",
        "postgres/password",
        "postgres/postgresql.conf",
        "synapse/example.org.signing.key",
        "synapse/homeserver.yaml",
    ];
    let workers = [
        "client_sync1",
        "federation_reader1",
        "media1",
        "rooms1",
        "rooms2",
        "rooms3",
        "rooms4",
        "sender1",
        "sender2",
        "sender3",
        "sender4",
        "tasks1",
    ];
    let log_types = [
        "client_sync",
        "federation_reader",
        "media",
        "rooms",
        "sender",
        "synapse",
        "tasks",
    ];
    let worker_files: Vec<String> = workers
        .iter()
        .map(|w| format!("synapse/workers/{w}.yaml"))
        .collect();
    let log_files: Vec<String> = log_types
        .iter()
        .map(|t| format!("synapse/log.config/{t}.log.config"))
        .collect();
    expected.extend(worker_files.iter().map(String::as_str));
    expected.extend(log_files.iter().map(String::as_str));
    expected.sort();
    assert_eq!(listed, expected);

    let compose = yaml(&dir.join("docker-compose.yml"));
    let services = names(&compose["services"]);
    let expected_services = [
        "redis",
        "db",
        "synapse",
        "client-sync1",
        "federation-reader1",
        "media1",
        "rooms1",
        "rooms2",
        "rooms3",
        "rooms4",
        "sender1",
        "sender2",
        "sender3",
        "sender4",
        "tasks1",
        "nginx",
    ];
    assert_eq!(services, expected_services, "16 services, hyphenated");
    for service in &services {
        assert!(
            !compose["services"][service.as_str()]["healthcheck"]["test"].is_null(),
            "{service} has no healthcheck"
        );
    }

    for worker in workers {
        let config = yaml(&dir.join(format!("synapse/workers/{worker}.yaml")));
        assert_eq!(config["worker_name"].as_str(), Some(worker));
        let service = worker.replace('_', "-");
        let command = compose["services"][service.as_str()]["command"]
            .as_str()
            .unwrap();
        assert!(
            command.ends_with(&format!("/data/workers/{worker}.yaml")),
            "{command}"
        );
    }
}

#[test]
fn homeserver_yaml_has_the_guides_duties_and_instance_map() {
    let out = render(&root().join("inventory/example.toml"));
    let hs = yaml(&out.path().join("hs1/example/synapse/homeserver.yaml"));
    assert_eq!(
        names(&hs["instance_map"]),
        [
            "main",
            "client_sync1",
            "media1",
            "sender1",
            "sender2",
            "sender3",
            "sender4",
            "tasks1"
        ]
    );
    assert_eq!(
        hs["instance_map"]["main"]["path"].as_str(),
        Some("/sockets/synapse_replication_main.sock")
    );
    assert_eq!(
        names(&hs["federation_sender_instances"]),
        ["sender1", "sender2", "sender3", "sender4"]
    );
    for stream in [
        "account_data",
        "presence",
        "receipts",
        "to_device",
        "typing",
    ] {
        assert_eq!(
            names(&hs["stream_writers"][stream]),
            ["client_sync1"],
            "{stream}"
        );
    }
    assert_eq!(names(&hs["stream_writers"]["events"]), ["tasks1"]);
    // Synapse 1.163 calls main "master" in stream_writers; the media worker serves quarantine.
    assert_eq!(
        names(&hs["stream_writers"]["quarantined_media_changes"]),
        ["master", "media1"]
    );
    assert_eq!(
        hs["stream_writers"]["device_lists"],
        Value::Null,
        "unassigned streams stay on master"
    );
    assert_eq!(names(&hs["pusher_instances"]), ["tasks1"]);
    assert_eq!(hs["run_background_tasks_on"].as_str(), Some("tasks1"));
    assert_eq!(
        hs["media_instance_running_background_jobs"].as_str(),
        Some("media1")
    );
    assert_eq!(
        hs["update_user_directory_from_worker"].as_str(),
        Some("client_sync1")
    );
    assert_eq!(hs["enable_media_repo"].as_bool(), Some(false));
    assert_eq!(
        hs["redis"]["path"].as_str(),
        Some("/sockets/synapse_redis.sock")
    );
    assert!(
        hs.get("federation_ip_range_blacklist").is_none(),
        "the legacy key would shrink the default blocklist"
    );
    let media = yaml(&out.path().join("hs1/example/synapse/workers/media1.yaml"));
    assert_eq!(
        media["worker_app"].as_str(),
        Some("synapse.app.media_repository")
    );
    assert_eq!(
        names(&media["worker_listeners"][1]["resources"][0]["names"]),
        ["media", "client", "federation"]
    );
}

#[test]
fn each_process_logs_to_its_own_file() {
    let out = render(&root().join("inventory/example.toml"));
    let dir = out.path().join("hs1/example");
    let compose = yaml(&dir.join("docker-compose.yml"));
    let mut log_dirs = Vec::new();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        if let Some(volumes) = service["volumes"].as_sequence() {
            log_dirs.extend(
                volumes
                    .iter()
                    .filter_map(|v| v.as_str())
                    .filter(|v| v.ends_with(":/data/logs"))
                    .map(|v| (name.as_str().unwrap().to_string(), v.to_string())),
            );
        }
    }
    assert_eq!(
        log_dirs.len(),
        13,
        "every Synapse process mounts a logs directory"
    );
    let mut unique: Vec<&String> = log_dirs.iter().map(|(_, v)| v).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 13, "and no two share one: {log_dirs:?}");
    let rooms = yaml(&dir.join("synapse/log.config/rooms.log.config"));
    assert_eq!(
        rooms["handlers"]["file"]["filename"].as_str(),
        Some("/data/logs/rooms.log")
    );
    for entry in fs::read_dir(dir.join("synapse/log.config")).unwrap() {
        let log_config = entry.unwrap().path();
        let config = yaml(&log_config);
        let log_config = log_config.display();
        let loggers = config["loggers"].as_mapping().unwrap();
        assert!(
            loggers.values().all(|l| l.get("handlers").is_none()),
            "{log_config}: a logger with handlers of its own writes each line twice (once more through root)"
        );
        assert_eq!(
            config["root"]["handlers"],
            serde_norway::from_str::<Value>("[buffer, console]").unwrap(),
            "{log_config}: root writes to the file and, from WARNING, to the console"
        );
        assert_eq!(
            config["handlers"]["console"]["level"].as_str(),
            Some("WARNING")
        );
    }
}

#[test]
fn rendering_is_deterministic() {
    let a = render(&root().join("inventory/fleet.toml"));
    let b = render(&root().join("inventory/fleet.toml"));
    let listed = files(a.path());
    assert_eq!(listed, files(b.path()));
    for file in listed {
        assert_eq!(
            fs::read(a.path().join(&file)).unwrap(),
            fs::read(b.path().join(&file)).unwrap(),
            "{}",
            file.display()
        );
    }
}

#[test]
fn files_holding_secrets_are_0600_and_secrets_never_reach_the_output() {
    let out = tempfile::tempdir().unwrap();
    let output = synprov(&root())
        .args(["render", "inventory/example.toml", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8_lossy(&output.stdout);
    let dir = out.path().join("hs1/example");
    let hs = yaml(&dir.join("synapse/homeserver.yaml"));
    let secret = hs["macaroon_secret_key"].as_str().unwrap().to_string();
    assert!(!printed.contains(&secret));
    for file in files(&dir) {
        let mode = fs::metadata(dir.join(&file)).unwrap().permissions().mode() & 0o777;
        let text = fs::read_to_string(dir.join(&file)).unwrap();
        let holds_secret = [
            "homeserver.yaml",
            "postgres/password",
            "example.org.signing.key",
        ]
        .iter()
        .any(|s| file.ends_with(s));
        assert_eq!(
            mode,
            if holds_secret { 0o600 } else { 0o644 },
            "{}",
            file.display()
        );
        if !holds_secret {
            assert!(!text.contains(&secret), "{}", file.display());
        }
    }
    let check = synprov(&root())
        .args(["check", "inventory/example.toml"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&check.stdout).contains(&secret));
}

#[test]
fn the_master_key_file_is_created_0600_and_a_loose_one_is_refused() {
    let (dir, path) = inventory(
        "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"h\"\n",
    );
    let out = dir.path().join("out");
    let run = || {
        synprov(dir.path())
            .env_remove("SYNPROV_MASTER_KEY")
            .arg("render")
            .arg(&path)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    assert!(run().status.success());
    let key = dir.path().join("inventory.master-key");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let first = fs::read(out.join("h/d/synapse/homeserver.yaml")).unwrap();
    fs::remove_dir_all(&out).unwrap();
    assert!(run().status.success());
    assert_eq!(
        first,
        fs::read(out.join("h/d/synapse/homeserver.yaml")).unwrap(),
        "the same key gives the same secrets"
    );

    fs::remove_dir_all(&out).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let output = run();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("can be read by others (mode 644)") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn worker_counts_from_one_to_hundreds_render_correctly() {
    for (rooms, senders) in [(1, 1), (300, 120)] {
        let (_dir, path) = inventory(&format!(
            "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"h\"\n[deployments.d.workers]\nrooms = {rooms}\nsender = {senders}\n[deployments.d.postgres]\nmax_connections = 3000\n"
        ));
        let out = render(&path);
        let dir = out.path().join("h/d");
        let hs = yaml(&dir.join("synapse/homeserver.yaml"));
        assert_eq!(names(&hs["federation_sender_instances"]).len(), senders);
        assert_eq!(names(&hs["instance_map"]).len(), 4 + senders);
        let compose = yaml(&dir.join("docker-compose.yml"));
        assert_eq!(
            compose["services"].as_mapping().unwrap().len(),
            3 + 1 + 1 + 1 + 1 + rooms + senders + 1
        );
        let upstreams = fs::read_to_string(dir.join("nginx/upstreams.conf")).unwrap();
        assert_eq!(upstreams.matches("synapse_inbound_rooms").count(), rooms);
        assert!(
            dir.join(format!("synapse/workers/rooms{rooms}.yaml"))
                .exists()
        );
        assert!(
            !dir.join(format!("synapse/workers/rooms{}.yaml", rooms + 1))
                .exists()
        );
    }
}

#[test]
fn a_spread_deployment_renders_each_hosts_part_over_tcp() {
    let out = render(&root().join("inventory/spread.toml"));
    let main = out.path().join("hs-main/big");
    let rooms = out.path().join("hs-rooms/big");
    assert!(main.join("nginx/upstreams.conf").exists() && !rooms.join("nginx").exists());
    let hs = yaml(&main.join("synapse/homeserver.yaml"));
    assert_eq!(
        hs["instance_map"]["main"]["host"].as_str(),
        Some("10.20.0.10")
    );
    assert_eq!(hs["redis"]["host"].as_str(), Some("10.20.0.10"));
    assert!(hs["worker_replication_secret"].as_str().is_some());
    let rooms1 = yaml(&rooms.join("synapse/workers/rooms1.yaml"));
    assert_eq!(
        names(&rooms1["worker_listeners"][0]["bind_addresses"]),
        ["10.20.0.11"]
    );
    let compose = yaml(&rooms.join("docker-compose.yml"));
    assert_eq!(
        names(&compose["services"]),
        (1..=8).map(|i| format!("rooms{i}")).collect::<Vec<_>>()
    );
    let upstreams = fs::read_to_string(main.join("nginx/upstreams.conf")).unwrap();
    assert!(upstreams.contains("server 10.20.0.11:"), "{upstreams}");
    assert_eq!(
        fs::read(main.join("synapse/homeserver.yaml")).unwrap(),
        fs::read(rooms.join("synapse/homeserver.yaml")).unwrap()
    );
}

#[test]
fn host_filter_renders_one_host_and_an_unknown_host_is_refused() {
    let out = tempfile::tempdir().unwrap();
    let ok = synprov(&root())
        .args(["render", "inventory/fleet.toml", "--host", "hs2", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(ok.status.success());
    let hosts: Vec<_> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(hosts, ["hs2"]);
    let target = out.path().join("none");
    let bad = synprov(&root())
        .args(["render", "inventory/fleet.toml", "--host", "hs9", "--out"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("host `hs9` is not in the inventory"));
    assert!(!target.exists());
}

#[test]
fn homeserver_settings_from_the_inventory_are_merged() {
    let out = render(&root().join("inventory/fleet.toml"));
    let hs = yaml(&out.path().join("hs2/gamma/synapse/homeserver.yaml"));
    assert_eq!(hs["max_upload_size"].as_str(), Some("100M"));
    assert_eq!(hs["server_name"].as_str(), Some("gamma.example"));
}

/// `synprov render` of the example inventory into a fresh directory, with a `--roles`
/// directory holding one template: `template` (`ROLE/templates/NAME.hbs`) reading `text`.
fn render_with_template(template: &str, text: &str) -> (std::process::Output, tempfile::TempDir) {
    let roles = tempfile::tempdir().unwrap();
    let path = roles.path().join(template);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = synprov(&root())
        .args(["render", "inventory/example.toml", "--roles"])
        .arg(roles.path())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    (output, out)
}

#[test]
fn a_roles_directory_overrides_a_template() {
    let (output, out) = render_with_template(
        "nginx/templates/private.conf.hbs",
        "allow 10.9.9.9;\ndeny all;\n",
    );
    assert!(output.status.success());
    assert_eq!(
        fs::read_to_string(out.path().join("hs1/example/nginx/private.conf")).unwrap(),
        "allow 10.9.9.9;\ndeny all;\n"
    );
}

/// The rendered YAML is read back: a template that emits broken YAML is refused before
/// anything is written, naming the file it rendered.
#[test]
fn a_roles_template_emitting_broken_yaml_is_refused_naming_the_file() {
    let (output, out) = render_with_template(
        "synapse/templates/worker.yaml.hbs",
        "worker_name: {{yaml name}}\nworker_listeners: [\n",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("rendered synapse/workers/") && stderr.contains("is not valid YAML"),
        "{stderr}"
    );
    assert!(
        stderr.contains("check your own templates (--roles)"),
        "{stderr}"
    );
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn snapshots_of_the_example_inventory() {
    let out = render(&root().join("inventory/example.toml"));
    let dir = out.path().join("hs1/example");
    for file in files(&dir) {
        let name = file.display().to_string().replace('/', "__");
        let contents = fs::read_to_string(dir.join(&file)).unwrap();
        insta::assert_snapshot!(name, contents);
    }
}

/// `synprov render INVENTORY --out OUT` under strace: the names of the calls it made (those of
/// `trace`), and its output.
fn traced_render(inventory: &str, out: &Path, trace: &str) -> (Vec<String>, std::process::Output) {
    let strace = require("strace", "apt-get install strace");
    let log = tempfile::NamedTempFile::new().unwrap();
    let traced = std::process::Command::new(strace)
        .args(["-f", "-qq", "-o"])
        .arg(log.path())
        .args(["-e", trace])
        .arg(assert_cmd::cargo::cargo_bin("synprov"))
        .args(["render", inventory, "--out"])
        .arg(out)
        .current_dir(root())
        .env("SYNPROV_MASTER_KEY", TEST_KEY)
        .output()
        .unwrap();
    // Each line is `PID NAME(ARGS) = RESULT`; a call cut by another thread's shows once
    // as `NAME(ARGS <unfinished ...>` and once as `<... NAME resumed>`, counted once here.
    let calls = fs::read_to_string(log.path())
        .unwrap()
        .lines()
        .filter_map(|line| {
            let (name, args) = line.split_once(' ')?.1.split_once('(')?;
            Some(format!("{}({args}", name.trim()))
        })
        .collect();
    (calls, traced)
}

/// Every file under `dir` whose name marks it staged (`.NAME.synprov-new`).
fn staged_left(dir: &Path) -> Vec<String> {
    let mut left = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().contains(".synprov-new") {
                left.push(path.display().to_string());
            } else if path.is_dir() {
                dirs.push(path);
            }
        }
    }
    left
}

/// `render --out` is a preview: no reader ever sees a file partial or wider than its mode,
/// but nothing is synced, so that its time is the render's and not the disk's (a sync per
/// file made 1000 deployments take 16 s or more). A deployment rendered for the first time
/// appears whole, by one rename of its directory; over an earlier render, only what
/// changed is written, each file renamed over its target, and the rest is left alone.
#[test]
fn render_out_puts_a_deployment_in_place_whole_then_rewrites_only_what_changed() {
    const TRACE: &str =
        "trace=fsync,fdatasync,syncfs,sync,sync_file_range,rename,renameat,renameat2,openat";
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rendered");
    let (calls, first) = traced_render("inventory/example.toml", &out, TRACE);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let syncs: Vec<&String> = calls
        .iter()
        .filter(|call| {
            call.split('(')
                .next()
                .is_some_and(|name| name.contains("sync"))
        })
        .collect();
    assert!(syncs.is_empty(), "render --out synced: {syncs:?}");
    let renames: Vec<&String> = calls.iter().filter(|c| c.starts_with("rename")).collect();
    assert_eq!(renames.len(), 1, "{renames:?}");
    assert!(renames[0].contains(".example.synprov-new"), "{renames:?}");
    let deployment = out.join("hs1/example");
    let rendered = files(&deployment);
    assert!(rendered.len() > 20, "{rendered:?}");

    // The same render again: nothing created, nothing renamed, not a byte rewritten.
    let compose = deployment.join("docker-compose.yml");
    let inode = |path: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(path).unwrap());
    let compose_inode = inode(&compose);
    let (calls, again) = traced_render("inventory/example.toml", &out, TRACE);
    assert!(again.status.success());
    let writes: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("rename") || c.contains("O_CREAT"))
        .collect();
    assert!(
        writes.is_empty(),
        "a render of nothing new wrote: {writes:?}"
    );
    assert_eq!(inode(&compose), compose_inode);

    // An edited file and a widened one are put back; only they are written.
    let homeserver = deployment.join("synapse/homeserver.yaml");
    let original = fs::read_to_string(&homeserver).unwrap();
    fs::write(&homeserver, format!("{original}# edited\n")).unwrap();
    let nginx = deployment.join("nginx/nginx.conf");
    fs::set_permissions(&nginx, fs::Permissions::from_mode(0o666)).unwrap();
    let (calls, mended) = traced_render("inventory/example.toml", &out, TRACE);
    assert!(mended.status.success());
    let renamed: Vec<&String> = calls.iter().filter(|c| c.starts_with("rename")).collect();
    assert_eq!(renamed.len(), 2, "{renamed:?}");
    assert_eq!(fs::read_to_string(&homeserver).unwrap(), original);
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&homeserver), 0o600);
    assert_eq!(mode(&nginx), 0o644);
    assert_eq!(inode(&compose), compose_inode);
    assert_eq!(files(&deployment), rendered);
    assert_eq!(staged_left(&out), Vec::<String>::new());
}

/// Hosts are written while others still render, but an error anywhere leaves no file of the
/// render behind: neither a new deployment, nor a change to an earlier render, nor a staged
/// file.
#[test]
fn a_render_failing_on_one_host_leaves_every_other_hosts_files_as_they_were() {
    let out = tempfile::tempdir().unwrap();
    let first = synprov(&root())
        .args(["render", "inventory/fleet.toml", "--host", "hs1", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(first.status.success());
    let alpha = out.path().join("hs1/alpha/synapse/workers");
    let before: Vec<(String, String)> = fs::read_dir(&alpha)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (
                path.display().to_string(),
                fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    // A worker template that changes every worker's file, and breaks delta's alone (hs3).
    let roles = tempfile::tempdir().unwrap();
    let template = roles.path().join("synapse/templates/worker.yaml.hbs");
    fs::create_dir_all(template.parent().unwrap()).unwrap();
    let builtin =
        fs::read_to_string(root().join("roles/synapse/templates/worker.yaml.hbs")).unwrap();
    fs::write(
        &template,
        format!("# changed\n{builtin}{{{{#if (eq server_name \"delta.example\")}}}}broken: [\n{{{{/if}}}}"),
    )
    .unwrap();
    let failed = synprov(&root())
        .args(["render", "inventory/fleet.toml", "--roles"])
        .arg(roles.path())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not valid YAML"), "{stderr}");
    for (path, contents) in &before {
        assert_eq!(&fs::read_to_string(path).unwrap(), contents, "{path}");
    }
    assert!(!out.path().join("hs2/gamma").exists());
    assert_eq!(staged_left(out.path()), Vec::<String>::new());
}
