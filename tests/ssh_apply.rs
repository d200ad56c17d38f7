//! plan and apply over a real OpenSSH server on loopback: authentication, host keys, a plan
//! that changes nothing, an idempotent apply, scripts cut short in transit, a hostile deploy
//! directory. (The host lock and its holders: tests/lock.rs.)
//! (`--files-only`: the Docker steps are covered by the end-to-end test.)

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use common::files;
use common::sshd::{Sshd, deployed};
use synprov::apply::images::SavedImages;
use synprov::generations::Origin;
use synprov::inventory;
use synprov::transport::Locking;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every file under `dir` with its contents and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    if !dir.exists() {
        return BTreeMap::new();
    }
    files(dir)
        .into_iter()
        .map(|f| {
            let path = dir.join(&f);
            (
                f.display().to_string(),
                (
                    std::fs::read(&path).unwrap(),
                    std::fs::metadata(&path).unwrap().modified().unwrap(),
                ),
            )
        })
        .collect()
}

#[test]
fn key_auth_plan_then_apply_then_a_second_apply_changes_nothing() {
    let sshd = Sshd::start();
    let deploy = sshd.path("deploy");
    let inventory = sshd.inventory(&deploy, "client_key", "");

    let plan = sshd.run(&["plan"], &inventory);
    assert_eq!(
        plan.status.code(),
        Some(2),
        "changes pending: {}",
        stderr(&plan)
    );
    assert!(String::from_utf8_lossy(&plan.stdout).contains("+ create synapse/homeserver.yaml"));
    assert!(!deploy.exists(), "plan changed nothing");

    let apply = sshd.run(&["apply", "--files-only"], &inventory);
    assert!(apply.status.success(), "{}", stderr(&apply));
    assert_eq!(
        files(&deploy)
            .iter()
            .filter(|f| !f.starts_with(".synprov"))
            .count(),
        33
    );
    let before = snapshot(&deploy);

    let again = sshd.run(&["apply", "--files-only"], &inventory);
    assert!(again.status.success(), "{}", stderr(&again));
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(
        out.contains("host loop: no changes") && out.contains("0 change(s) applied"),
        "{out}"
    );
    assert_eq!(snapshot(&deploy), before, "no file touched");

    let plan = sshd.run(&["plan"], &inventory);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "nothing pending: {}",
        String::from_utf8_lossy(&plan.stdout)
    );
}

#[test]
fn plan_shows_a_masked_diff_and_changes_nothing() {
    let (sshd, deploy, inventory) = deployed();
    let homeserver = deploy.join("synapse/homeserver.yaml");
    let text = std::fs::read_to_string(&homeserver).unwrap();
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("macaroon_secret_key: "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    std::fs::write(
        &homeserver,
        text.replace("enable_registration: false", "enable_registration: true"),
    )
    .unwrap();
    // The password of another master key (rotated, or another install's files): no longer
    // one of the deployment's secrets, so no mask of a known value covers it.
    let foreign = "cBASISLR_g0VokPJosnCrys06cB8wB1U1PF01Yi6vtM";
    std::fs::write(deploy.join("postgres/password"), format!("{foreign}\n")).unwrap();
    let before = snapshot(&deploy);

    let plan = sshd.run(&["plan"], &inventory);
    let out = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(2));
    assert!(
        out.contains("~ change synapse/homeserver.yaml")
            && out.contains("-enable_registration: true")
            && out.contains("+enable_registration: false"),
        "{out}"
    );
    assert!(!out.contains(&secret), "no secret printed");
    assert!(
        out.contains("~ change postgres/password\n      (Postgres password: contents hidden)"),
        "{out}"
    );
    assert!(!out.contains(foreign), "{out}");
    assert_eq!(snapshot(&deploy), before, "plan changed nothing");

    let dry = sshd.run(&["apply", "--dry-run"], &inventory);
    assert_eq!(dry.status.code(), Some(2));
    assert_eq!(snapshot(&deploy), before, "a dry run changed nothing");
}

#[test]
fn plan_names_the_size_of_a_file_too_large_to_diff_and_fetches_it_no_more() {
    let (sshd, deploy, inventory) = deployed();
    let homeserver = deploy.join("synapse/homeserver.yaml");
    let log_config = deploy.join("synapse/log.config");
    let rendered = std::fs::read_to_string(&homeserver).unwrap().len();
    // 200,000 distinct lines (2.6 MB), and a file one byte over the 1 MiB limit.
    let lines: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&homeserver, &lines).unwrap();
    let over_limit = std::fs::read_dir(&log_config)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let log_rendered = std::fs::read_to_string(&over_limit).unwrap().len();
    std::fs::write(&over_limit, "x".repeat((1 << 20) + 1)).unwrap();

    let plan = sshd.run(&["plan"], &inventory);
    let out = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
    for expected in [
        format!(
            "(changed, {} bytes on the host, {rendered} bytes now: diff omitted above 1048576 bytes)",
            lines.len()
        ),
        format!(
            "(changed, 1048577 bytes on the host, {log_rendered} bytes now: diff omitted above 1048576 bytes)"
        ),
    ] {
        assert!(out.contains(&expected), "{expected} in:\n{out}");
    }
    assert!(!out.contains("line 1") && !out.contains("xxx"), "{out}");
}

#[test]
fn a_wrong_key_is_refused() {
    let sshd = Sshd::start();
    let deploy = sshd.path("deploy");
    let inventory = sshd.inventory(&deploy, "other_key", "");
    let output = sshd.run(&["apply", "--files-only"], &inventory);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("loop: authentication as root failed"),
        "{}",
        stderr(&output)
    );
    assert!(!deploy.exists());
}

#[test]
fn a_changed_host_key_is_refused_before_anything_is_sent() {
    let sshd = Sshd::start();
    sshd.write_known_hosts(&sshd.path("other_key.pub"));
    let deploy = sshd.path("deploy");
    let inventory = sshd.inventory(&deploy, "client_key", "");
    let output = sshd.run(&["apply", "--files-only"], &inventory);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        err.contains("loop: THE HOST KEY HAS CHANGED") && err.contains("SHA256:"),
        "{err}"
    );
    assert!(!deploy.exists(), "nothing changed");
}

#[test]
fn an_unknown_host_key_is_refused_strictly_and_recorded_with_accept_new() {
    let sshd = Sshd::start();
    std::fs::write(sshd.path("known_hosts"), "").unwrap();
    let deploy = sshd.path("deploy");
    let inventory = sshd.inventory(&deploy, "client_key", "");
    let output = sshd.run(&["plan"], &inventory);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("the host key is not in"),
        "{}",
        stderr(&output)
    );

    let inventory = sshd.inventory(&deploy, "client_key", "host_key_checking = \"accept-new\"");
    let output = sshd.run(&["plan"], &inventory);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let recorded = std::fs::read_to_string(sshd.path("known_hosts")).unwrap();
    let host_key = std::fs::read_to_string(sshd.path("host_key.pub")).unwrap();
    assert!(
        recorded.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port))
            && recorded.contains(host_key.split_whitespace().nth(1).unwrap()),
        "{recorded}"
    );
}

/// Writes `to`: the inventory `from` with `rooms` room workers.
fn with_rooms(from: &Path, to: &Path, rooms: u32) {
    let text = std::fs::read_to_string(from).unwrap();
    std::fs::write(
        to,
        format!("{text}[deployments.d.workers]\nrooms = {rooms}\n"),
    )
    .unwrap();
}

#[test]
fn a_write_cut_short_in_transit_changes_no_file() {
    let (sshd, deploy, inventory_path) = deployed();
    let before = snapshot(&deploy);

    // The script of a real change, cut at many points as a dropped connection would.
    let changed = sshd.path("changed.toml");
    with_rooms(&inventory_path, &changed, 6);
    let inventory = inventory::load(&changed).unwrap();
    let host_files = common::render_hosts(&inventory, Some("loop"));
    let connection = sshd.connect(&changed);
    let facts =
        synprov::apply::gather(&connection, &host_files[0].survey(), &BTreeMap::new()).unwrap();
    let prepared = synprov::apply::prepare(
        &connection,
        &host_files[0],
        facts,
        &BTreeMap::new(),
        &SavedImages::not_sent(),
    )
    .unwrap();
    let plan = &prepared.plan.deployments[0];
    assert!(
        plan.changes.len() >= 4,
        "rooms5, rooms6 and the shared files change"
    );
    // As `apply` writes them: marked pending until the stack is up on them.
    let script = synprov::apply::files::write_script(&host_files[0].deployments[0], plan, true);
    for cut in [
        10,
        script.text().len() / 4,
        script.text().len() / 2,
        script.text().len() - 20,
        script.text().len() - 14,
    ] {
        let output = connection
            .exec(&connection.shell(), &mut &script.as_bytes()[..cut])
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&output.stdout).contains("synprov-written"),
            "cut at {cut} ran"
        );
        assert_eq!(
            snapshot(&deploy),
            before,
            "a script cut at byte {cut} of {} changed files",
            script.text().len()
        );
    }
    let output = connection.run_script(&script).unwrap();
    assert!(
        output.success() && String::from_utf8_lossy(&output.stdout).contains("synprov-written")
    );
    assert!(deploy.join("synapse/workers/rooms6.yaml").exists());

    // The files are in place but the stack was never brought up on them (an apply cut
    // there): the next plan says so, with the services still to recreate, and exits 2.
    let plan = sshd.run(&["plan"], &changed);
    let out = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(2), "{out}{}", stderr(&plan));
    let pending = std::fs::read_to_string(deploy.join(".synprov/pending")).unwrap();
    let mut expected =
        "~ d: bring the stack up: the last apply wrote files but stopped before".to_string();
    let services: Vec<&str> = pending.lines().skip(1).collect();
    if !services.is_empty() {
        expected.push_str(&format!(" (recreating {})", services.join(", ")));
    }
    assert!(out.contains(&expected), "{out}");
}

#[test]
fn a_hostile_deploy_dir_reaches_the_host_as_data_through_the_login_shell() {
    let sshd = Sshd::start();
    let inventory = sshd.inventory(&sshd.path("deploy"), "client_key", "");
    let connection = sshd.connect(&inventory);
    let marker = sshd.path("pwned");
    let hostile = sshd.path(&format!(
        "x';touch${{IFS}}{m};'$(touch {m})\n-x;touch${{IFS}}{m};",
        m = marker.display()
    ));
    let holder = Origin::here("apply", None).holder();
    let lock = connection.lock(hostile.to_str().unwrap(), &holder).unwrap();
    assert!(matches!(lock, Locking::Taken(_)));
    assert!(hostile.join(".synprov/lock").is_file());
    assert!(!marker.exists(), "a command in the deploy directory ran");
    drop(lock);
}

/// The generations of a deployment over a real SSH connection: each recorded complete
/// (files, record, audit line), listed back oldest first, pruned to `keep`, a build left
/// half-done by a dropped connection never listed, and a kept generation's files read back
/// byte for byte, without the inventory they came from.
#[test]
fn generations_are_recorded_whole_listed_pruned_and_read_back_without_the_inventory() {
    use synprov::apply::rollback::{To, list, prepare_rollback};
    use synprov::generations::{Record, scripts};

    let (sshd, deploy, inventory_path) = deployed();
    let inventory = inventory::load(&inventory_path).unwrap();
    let connection = sshd.connect(&inventory_path);
    let rendered = common::render_with_facts(&inventory, "loop", &connection);
    let files = &rendered.deployments[0];
    let dir = deploy.to_str().unwrap();
    let paths: Vec<&str> = files.files.iter().map(|f| f.path.as_str()).collect();
    let save = |command: &str| {
        let origin = Origin::here(command, None);
        let record = Record::of(files, &BTreeMap::new(), origin.clone());
        let json = serde_json::to_string(&record).unwrap();
        let script = scripts::save(dir, &paths, &json, &[], 2, &origin.entry(None, "ok"));
        let output = connection.run_script(&script).unwrap();
        assert!(output.success(), "{}", output.tail(5));
        output.stdout_text()
    };
    assert_eq!(save("apply").trim(), "generation=1");
    assert_eq!(save("apply again").trim(), "generation=2");
    // A build cut short in transit leaves `.new` behind: never a generation.
    std::fs::create_dir_all(deploy.join(".synprov/generations/.new/files")).unwrap();
    assert_eq!(save("third").trim(), "generation=3");

    let listing = list(&connection, dir).unwrap();
    let numbers: Vec<u32> = listing.generations.iter().map(|g| g.number).collect();
    assert_eq!(numbers, [2, 3], "the newest two are kept");
    let record = listing.current().unwrap().record.as_ref().unwrap();
    assert_eq!(record.origin.command, "third");
    assert_eq!(record.files.len(), files.files.len());
    let commands: Vec<&str> = listing.audit.iter().map(|e| e.command.as_str()).collect();
    assert_eq!(commands, ["apply", "apply again", "third"]);
    assert_eq!(listing.audit[2].generation, Some(3));

    // Generation 2, read back from the host alone: the same files, and nothing to change.
    let (restored, prepared, chosen) = prepare_rollback(
        &connection,
        inventory.hosts["loop"].docker_source,
        &[(files.deployment.clone(), dir.to_string())],
        To::Number(2),
        false,
    )
    .unwrap();
    assert_eq!(chosen, [2]);
    assert_eq!(restored.deployments[0].files, files.files);
    assert_eq!(restored.deployments[0].health, files.health);
    assert_eq!(prepared.plan.change_count(), 0);
    let missing = prepare_rollback(
        &connection,
        inventory.hosts["loop"].docker_source,
        &[(files.deployment.clone(), dir.to_string())],
        To::Number(1),
        false,
    )
    .err()
    .unwrap();
    assert!(
        missing.to_string().contains("no generation 1 (kept: 2, 3)"),
        "{missing}"
    );
    let no_dump = prepare_rollback(
        &connection,
        inventory.hosts["loop"].docker_source,
        &[(files.deployment.clone(), dir.to_string())],
        To::Number(2),
        true,
    )
    .err()
    .unwrap();
    assert!(
        no_dump.to_string().contains("generation 2 of")
            && no_dump.to_string().contains("has no database dump"),
        "--restore-db without a dump is refused: {no_dump}"
    );
}

#[test]
fn the_ssh_agent_authenticates_when_no_identity_file_is_given() {
    let sshd = Sshd::start();
    let agent_socket = sshd.path("agent.sock");
    let agent = std::process::Command::new(common::require(
        "ssh-agent",
        "apt-get install openssh-client",
    ))
    .arg("-D")
    .arg("-a")
    .arg(&agent_socket)
    .stdout(std::process::Stdio::null())
    .spawn()
    .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _agent = Kill(agent);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !agent_socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "ssh-agent did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Another key first: synprov must try the agent's keys in turn, not only the first.
    for key in ["other_key", "client_key"] {
        let added = std::process::Command::new("ssh-add")
            .arg(sshd.path(key))
            .env("SSH_AUTH_SOCK", &agent_socket)
            .output()
            .unwrap();
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
    }
    let deploy = sshd.path("deploy");
    let inventory = sshd
        .inventory(&deploy, "client_key", "")
        .to_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(&inventory).unwrap();
    let without_key: String = text
        .lines()
        .filter(|l| !l.starts_with("identity_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&inventory, without_key).unwrap();
    let output = common::synprov(sshd.dir.path())
        .env("SSH_AUTH_SOCK", &agent_socket)
        .arg("plan")
        .arg(&inventory)
        .arg("--known-hosts")
        .arg(sshd.path("known_hosts"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

/// A worker removed from the inventory leaves nothing behind: its config (the manifest),
/// and with the next apply its log directory, sockets and `.sock.lock` files; the plan
/// names it first.
#[test]
fn removing_a_worker_removes_its_logs_sockets_and_their_locks() {
    let sshd = Sshd::start();
    let deploy = sshd.path("deploy");
    let base = sshd.inventory(&deploy, "client_key", "");
    let (six, five) = (sshd.path("six.toml"), sshd.path("five.toml"));
    with_rooms(&base, &six, 6);
    with_rooms(&base, &five, 5);
    let output = sshd.run(&["apply", "--files-only"], &six);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(deploy.join("logs/rooms6").is_dir());
    // What a running worker leaves: its sockets, the locks Twisted keeps, a log file.
    let leftovers = [
        "sockets/synapse_inbound_rooms6.sock",
        "sockets/synapse_inbound_rooms6.sock.lock",
        "sockets/synapse_replication_rooms6.sock.lock",
        "logs/rooms6/rooms6.log",
    ];
    let kept = [
        "sockets/synapse_inbound_rooms5.sock.lock",
        "logs/rooms5/rooms5.log",
    ];
    for path in leftovers.iter().chain(&kept) {
        std::fs::write(deploy.join(path), "x").unwrap();
    }

    let plan = sshd.run(&["plan"], &five);
    let out = String::from_utf8_lossy(&plan.stdout);
    assert!(
        out.contains("- workers removed, with their logs and sockets: rooms6"),
        "{out}"
    );
    let output = sshd.run(&["apply", "--files-only"], &five);
    assert!(output.status.success(), "{}", stderr(&output));
    for path in leftovers {
        assert!(!deploy.join(path).exists(), "{path} is left");
    }
    assert!(!deploy.join("logs/rooms6").exists());
    assert!(!deploy.join("synapse/workers/rooms6.yaml").exists());
    for path in kept {
        assert!(
            deploy.join(path).exists(),
            "{path} of a kept worker is gone"
        );
    }
}

/// What a deployed host holds beyond synprov's files, written as its processes would:
/// the database, the media, the generations and audit log (data destroy keeps), sockets
/// with their locks and logs (what it removes with synprov's files).
const DATA: [&str; 4] = [
    "pgsql/PG_VERSION",
    "media/local_content/ab/cdef",
    ".synprov/generations/1/record.json",
    ".synprov/audit.log",
];
const SCRATCH: [&str; 4] = [
    "sockets/synapse_inbound_main.sock",
    "sockets/synapse_inbound_main.sock.lock",
    "logs/main/homeserver.log",
    "logs/nginx/access.log",
];

fn write_all(deploy: &Path, paths: &[&str]) {
    for path in paths {
        let path = deploy.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "data\n").unwrap();
    }
}

#[test]
fn destroy_keeps_the_data_removes_the_rest_and_the_next_apply_brings_the_files_back() {
    let (sshd, deploy, inventory) = deployed();
    let written = snapshot(&deploy);
    let key = "synapse/example.org.signing.key";
    let signing_key = std::fs::read(deploy.join(key)).unwrap();
    write_all(&deploy, &DATA);
    write_all(&deploy, &SCRATCH);

    // Another run holds the lock: destroy waits for nobody and touches nothing.
    let connection = sshd.connect(&inventory);
    let holder = Origin::here("apply", None).holder();
    let lock = connection.lock(deploy.to_str().unwrap(), &holder).unwrap();
    let locked = sshd.run(&["destroy", "--host", "loop", "--files-only"], &inventory);
    assert_eq!(locked.status.code(), Some(1));
    assert!(
        stderr(&locked).contains(&format!("is locked by {}@", holder.user)),
        "{}",
        stderr(&locked)
    );
    assert!(deploy.join("docker-compose.yml").exists());
    drop(lock);

    let destroy = sshd.run(&["destroy", "--host", "loop", "--files-only"], &inventory);
    let out = String::from_utf8_lossy(&destroy.stdout);
    assert!(destroy.status.success(), "{out}{}", stderr(&destroy));
    assert!(
        out.contains(&format!(
            "kept in {}: pgsql, media, .synprov/generations, .synprov/audit.log, {key}",
            deploy.display()
        )),
        "{out}"
    );
    let mut left: Vec<String> = common::files(&deploy)
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    left.retain(|f| f != ".synprov/lock");
    let mut expected: Vec<String> = DATA.iter().map(|p| p.to_string()).collect();
    expected.push(key.into());
    expected.sort();
    assert_eq!(left, expected, "only the data is left");
    for dir in ["sockets", "logs", "nginx", "synapse/workers", "postgres"] {
        assert!(!deploy.join(dir).exists(), "{dir} is left");
    }
    let audit = std::fs::read_to_string(deploy.join(".synprov/audit.log")).unwrap();
    assert!(
        audit
            .lines()
            .last()
            .unwrap()
            .ends_with("\tdestroy\t-\tok: data kept"),
        "{audit}"
    );
    let history = sshd.run(&["history", "--host", "loop"], &inventory);
    assert!(
        String::from_utf8_lossy(&history.stdout).contains("destroy  -  ok: data kept"),
        "{}",
        String::from_utf8_lossy(&history.stdout)
    );

    // Destroyed twice: still fine, nothing more to remove.
    let again = sshd.run(&["destroy", "--host", "loop", "--files-only"], &inventory);
    assert!(again.status.success(), "{}", stderr(&again));

    let apply = sshd.run(&["apply", "--files-only"], &inventory);
    assert!(apply.status.success(), "{}", stderr(&apply));
    let back = snapshot(&deploy);
    // The lock file records its last holder: this apply.
    for (path, (contents, _)) in written.iter().filter(|(p, _)| *p != ".synprov/lock") {
        assert_eq!(
            back.get(path).map(|(c, _)| c),
            Some(contents),
            "{path} is back as it was"
        );
    }
    assert_eq!(std::fs::read(deploy.join(key)).unwrap(), signing_key);
    for path in DATA {
        assert!(deploy.join(path).exists(), "{path} survived");
    }
    let plan = sshd.run(&["plan"], &inventory);
    assert_eq!(plan.status.code(), Some(0), "{}", stderr(&plan));
}

#[test]
fn purge_without_yes_and_without_a_terminal_refuses_and_changes_nothing() {
    let (sshd, deploy, inventory) = deployed();
    write_all(&deploy, &DATA);
    let before = snapshot(&deploy);
    // `output()` gives synprov no terminal: its standard input is closed.
    let purge = sshd.run(
        &["destroy", "--host", "loop", "--purge", "--files-only"],
        &inventory,
    );
    assert_eq!(purge.status.code(), Some(1));
    let err = stderr(&purge);
    assert!(
        err.contains("no terminal to confirm it on: nothing was changed") && err.contains("--yes"),
        "{err}"
    );
    assert_eq!(snapshot(&deploy), before, "nothing changed");
}

/// `synprov ARGS INVENTORY` run on a terminal (`script` gives it a pseudo-terminal), with
/// `typed` as what the operator types.
fn on_a_terminal(sshd: &Sshd, args: &[&str], inventory: &Path, typed: &str) -> Output {
    use std::io::Write;
    let script = common::require("script", "apt-get install bsdutils");
    let mut words = vec![
        assert_cmd::cargo::cargo_bin("synprov")
            .display()
            .to_string(),
    ];
    words.extend(args.iter().map(|a| a.to_string()));
    words.push(inventory.display().to_string());
    words.push("--known-hosts".into());
    words.push(sshd.path("known_hosts").display().to_string());
    let line: Vec<String> = words.iter().map(|w| synprov::shell::quote(w)).collect();
    let mut child = std::process::Command::new(script)
        .args(["-qec", &line.join(" "), "/dev/null"])
        .current_dir(sshd.dir.path())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(typed.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn purge_on_a_terminal_goes_ahead_only_once_the_deployment_name_is_typed_back() {
    let (sshd, deploy, inventory) = deployed();
    write_all(&deploy, &DATA);
    let before = snapshot(&deploy);
    let args = ["destroy", "--host", "loop", "--purge", "--files-only"];

    let wrong = on_a_terminal(&sshd, &args, &inventory, "e\n");
    let said = String::from_utf8_lossy(&wrong.stdout);
    assert_eq!(wrong.status.code(), Some(1), "{said}");
    assert!(
        said.contains("Type the deployment's name (d) to confirm")
            && said.contains("`e` is not `d`: nothing was changed"),
        "{said}"
    );
    assert_eq!(snapshot(&deploy), before, "nothing changed");

    let right = on_a_terminal(&sshd, &args, &inventory, "d\n");
    let said = String::from_utf8_lossy(&right.stdout);
    assert!(right.status.success(), "{said}");
    assert!(said.contains("removed with all its data"), "{said}");
    assert!(!deploy.exists());
}

/// `destroy --purge --yes`, files only (no Docker on the test's host).
const PURGE_YES: [&str; 6] = [
    "destroy",
    "--host",
    "loop",
    "--purge",
    "--yes",
    "--files-only",
];

#[test]
fn purge_with_yes_removes_the_whole_deploy_directory() {
    let (sshd, deploy, inventory) = deployed();
    write_all(&deploy, &DATA);
    write_all(&deploy, &SCRATCH);
    let purge = sshd.run(&PURGE_YES, &inventory);
    let out = String::from_utf8_lossy(&purge.stdout);
    assert!(purge.status.success(), "{out}{}", stderr(&purge));
    assert!(out.contains("removed with all its data"), "{out}");
    assert!(!deploy.exists(), "the deploy directory is gone");

    // Nothing there any more: nothing to do, and no directory made to say so.
    let again = sshd.run(&PURGE_YES, &inventory);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing deployed in"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert!(!deploy.exists());
}
