//! Hosts that lie: what a host sends back (its manifest, pending mark, generation records,
//! images lists, audit log, the files it hashes) is written by whoever controls the host or
//! can write into the deploy directory. With the local transport, each case plants such a
//! file and runs synprov as a process: nothing outside the deploy directory is touched
//! (a canary directory beside it stays), nothing is counted healthy that lies elsewhere,
//! memory stays bounded, a FIFO is refused and a read that never ends fails at the deadline, and no value prints
//! a line of its own or a raw control character.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use common::{TEST_KEY, inventory, synprov};

/// A deploy directory `d` with a canary directory beside it, and an inventory of one local
/// host deploying `d` there, with `extra` appended.
struct Bed {
    base: tempfile::TempDir,
    inventory_dir: tempfile::TempDir,
    inventory: PathBuf,
}

impl Bed {
    fn new(extra: &str) -> Bed {
        let base = tempfile::tempdir().unwrap();
        let canary = base.path().join("canary");
        std::fs::create_dir_all(&canary).unwrap();
        std::fs::write(canary.join("x"), "canary").unwrap();
        let (inventory_dir, inventory) = inventory(&format!(
            "[hosts.here]\ntransport = \"local\"\n[deployments.d]\nserver_name = \"example.org\"\n\
             host = \"here\"\ndeploy_dir = \"{}\"\n{extra}",
            base.path().join("d").display()
        ));
        Bed {
            base,
            inventory_dir,
            inventory,
        }
    }

    fn deploy(&self) -> PathBuf {
        self.base.path().join("d")
    }

    fn synprov(&self, args: &[&str]) -> Output {
        let (command, rest) = args.split_first().unwrap();
        synprov(self.inventory_dir.path())
            .arg(command)
            .arg(&self.inventory)
            .args(rest)
            .output()
            .unwrap()
    }

    /// Plants `file` (relative to the deploy directory) with `contents`.
    fn plant(&self, file: &str, contents: &[u8]) {
        let path = self.deploy().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    /// Plants a FIFO at `file` (relative to the deploy directory): opening it blocks.
    fn plant_fifo(&self, file: &str) {
        let path = self.deploy().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
    }

    fn canary_untouched(&self) -> bool {
        std::fs::read_to_string(self.base.path().join("canary/x")).is_ok_and(|c| c == "canary")
    }
}

/// A generation record as synprov writes one, with `command` as the recorded command and
/// `health` as its health targets.
fn record(command: &str, files: &[&str], health: serde_json::Value) -> Vec<u8> {
    let files: Vec<_> = (files.iter())
        .map(|path| serde_json::json!({"path": path, "sha256": "0".repeat(64), "mode": 420}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "format": 1, "deployment": "d", "server_name": "example.org",
        "origin": {"at": "2026-12-01T10:00:00Z", "user": "ops", "controller": "laptop",
                   "command": command, "synprov": "0.1.0"},
        "files": files, "health": health,
    }))
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The raw control characters of `bytes` that a terminal would act on: C0 but line break,
/// DEL, C1 and the bidirectional controls.
fn raw_controls(bytes: &[u8]) -> Vec<char> {
    text(bytes)
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

/// An entry of the manifest that leaves the deploy directory (`..`, absolute) or names its
/// data never becomes a deletion: the plan is refused, naming the host, the file and the
/// entry, and the canary beside the deploy directory stays, as does the database.
#[test]
fn a_manifest_entry_outside_the_deploy_directory_never_becomes_a_deletion() {
    let bed = Bed::new("");
    let first = bed.synprov(&["apply", "--files-only"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let manifest = bed.deploy().join(".synprov/manifest");
    let written = std::fs::read(&manifest).unwrap();
    let absolute = bed.base.path().join("canary/x");
    bed.plant("pgsql/PG_VERSION", b"16");
    let entries = [
        "../canary/x".to_string(),
        absolute.display().to_string(),
        "pgsql/PG_VERSION".to_string(),
    ];
    for entry in entries {
        let mut hostile = written.clone();
        hostile.extend_from_slice(entry.as_bytes());
        hostile.push(0);
        std::fs::write(&manifest, &hostile).unwrap();
        for args in [&["apply", "--files-only"][..], &["plan"]] {
            let out = bed.synprov(args);
            let stderr = text(&out.stderr);
            assert!(
                bed.canary_untouched() && bed.deploy().join("pgsql/PG_VERSION").exists(),
                "{args:?} {entry} deleted the canary or the data"
            );
            assert!(
                !out.status.success(),
                "{args:?} {entry}: {}",
                text(&out.stdout)
            );
            assert!(
                stderr.contains(&format!(".synprov/manifest holds `{entry}`")),
                "{args:?}: {stderr}"
            );
        }
    }
}

/// A health check that a record places outside the deploy directory is never connected
/// to, nor counted healthy: `status` names it instead.
#[test]
fn a_health_socket_outside_the_deploy_directory_is_never_counted_healthy() {
    let bed = Bed::new("");
    let elsewhere = bed.base.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("sockets")).unwrap();
    let listener = UnixListener::bind(elsewhere.join("sockets/main.sock")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let health = serde_json::json!([{
        "deployment": "d", "deploy_dir": elsewhere.display().to_string(), "process": "main",
        "service": "synapse", "probe": {"synapse": {"unix": {"path": "/sockets/main.sock"}}}
    }]);
    bed.plant(
        ".synprov/generations/1/record.json",
        &record("apply", &[], health),
    );
    // Answers any number of checks `200 OK` until the test ends, counting them.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = answered.clone();
    std::thread::spawn(move || {
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = stream.read(&mut [0; 1024]);
                    let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    let out = bed.synprov(&["status"]);
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(!stdout.contains("healthy"), "{stdout}");
    assert!(
        stdout.contains("lies in") && stdout.contains("outside the deploy directory"),
        "{stdout}"
    );
    assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// A line break or escape sequence inside a recorded command, an audit line or a pending
/// mark prints no line of its own (no forged generation, no forged "no changes") and no
/// raw control character, in `history`, `status`, `status --json` and `plan`.
#[test]
fn values_from_host_records_cannot_forge_a_line_or_reach_the_terminal_raw() {
    let bed = Bed::new("");
    let forged = "apply\n  *    7  2026-12-07 09:00:00 UTC by ops@laptop (apply), synprov 0.1.0, 0 file(s)\x1b[2J\u{9b}1m\u{202e}";
    bed.plant(
        ".synprov/generations/1/record.json",
        &record(forged, &[], serde_json::json!([])),
    );
    bed.plant(
        ".synprov/audit.log",
        "2026-12-01T10:00:00Z\tops@laptop\tapply\x1b]0;pwned\x07\tgeneration 1\tok\r  7 forged\n"
            .as_bytes(),
    );
    let history = bed.synprov(&["history", "--host", "here"]);
    assert!(history.status.success(), "{}", text(&history.stderr));
    let stdout = text(&history.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[1].starts_with("  *    1  2026-12-01 10:00:00 UTC by ops@laptop (apply\\n  *    7"),
        "{stdout}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("  *    7")), "{stdout}");
    assert_eq!(
        raw_controls(&history.stdout),
        Vec::<char>::new(),
        "{stdout}"
    );

    for args in [&["status"][..], &["status", "--json"]] {
        let out = bed.synprov(args);
        let stdout = text(&out.stdout);
        assert_eq!(
            raw_controls(&out.stdout),
            Vec::<char>::new(),
            "{args:?} {stdout}"
        );
        assert_eq!(raw_controls(&out.stderr), Vec::<char>::new(), "{args:?}");
        assert!(!stdout.contains("\n  *    7"), "{args:?} {stdout}");
    }

    // A pending mark naming a "service" with a line break: refused, named escaped.
    bed.plant(
        ".synprov/pending",
        b"up\0synapse\nhost here: no changes\x1b[1m\0",
    );
    let plan = bed.synprov(&["plan"]);
    let (stdout, stderr) = (text(&plan.stdout), text(&plan.stderr));
    assert!(!plan.status.success());
    assert!(
        !stdout
            .lines()
            .chain(stderr.lines())
            .any(|l| l.starts_with("host here: no changes")),
        "{stdout}{stderr}"
    );
    assert!(
        stderr.contains(".synprov/pending holds `synapse\\nhost here: no changes\\x1b[1m`"),
        "{stderr}"
    );
    assert_eq!(raw_controls(&plan.stdout), Vec::<char>::new(), "{stdout}");
    assert_eq!(raw_controls(&plan.stderr), Vec::<char>::new(), "{stderr}");
}

/// `synprov COMMAND INVENTORY ARGS` (under an address-space limit of `limit` bytes, if
/// any), run until it ends or `guard` passes (then killed: a hang, which the caller reports).
fn run_limited(
    bed: &Bed,
    args: &[&str],
    limit: Option<u64>,
    env: &[(&str, &str)],
    guard: Duration,
) -> Option<Output> {
    let (command, rest) = args.split_first().unwrap();
    let mut limited = Command::new("prlimit");
    limited.arg(format!(
        "--as={}",
        limit.map_or("unlimited".into(), |l| l.to_string())
    ));
    let mut child = limited
        .arg(cargo_bin("synprov"))
        .arg(command)
        .arg(&bed.inventory)
        .args(rest)
        .current_dir(bed.inventory_dir.path())
        .env("SYNPROV_MASTER_KEY", TEST_KEY)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > guard {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(child.wait_with_output().unwrap())
}

/// A file of a gigabyte where the host keeps a manifest, a pending mark, a generation
/// record, an images list and an audit log: `plan`, `status` and `history` refuse with a
/// message naming the host, the step and the limit, under an address-space limit that
/// reading any of them whole would pass, and without a panic or an abort.
#[test]
fn gigabyte_files_on_the_host_are_refused_within_bounded_memory() {
    common::require("prlimit", "util-linux");
    let bed = Bed::new("");
    for file in [
        ".synprov/manifest",
        ".synprov/pending",
        ".synprov/generations/1/record.json",
        ".synprov/generations/1/images",
        ".synprov/audit.log",
    ] {
        let path = bed.deploy().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::File::create(&path)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
    }
    const LIMIT: u64 = 768 << 20;
    for (args, step) in [
        (&["plan"][..], "facts"),
        (&["status"], "facts"),
        (&["history", "--host", "here"], "facts"),
    ] {
        let out = run_limited(&bed, args, Some(LIMIT), &[], Duration::from_secs(600))
            .unwrap_or_else(|| panic!("{args:?} did not end"));
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}{stderr}");
        let said = format!("{stdout}{stderr}");
        assert!(
            said.contains("here: the host sent more than")
                && said.contains(&format!("on standard output during {step}")),
            "{args:?}: {said}"
        );
        assert!(
            !said.contains("panicked") && !said.contains("memory allocation"),
            "{said}"
        );
    }
}

/// A FIFO where synprov reads or locks (a recorded file it hashes, the lock file) is not a
/// regular file: the guard refuses it at once and names it, before anything opens it.
#[test]
fn a_fifo_where_synprov_reads_or_locks_is_refused_at_once_and_named() {
    for (args, fifo) in [
        (&["status"][..], "docker-compose.yml"),
        (&["apply", "--files-only"], ".synprov/lock"),
    ] {
        let bed = Bed::new("");
        bed.plant(
            ".synprov/generations/1/record.json",
            &record("apply", &["docker-compose.yml"], serde_json::json!([])),
        );
        bed.plant_fifo(fifo);
        let out = run_limited(&bed, args, None, &[], Duration::from_secs(120))
            .unwrap_or_else(|| panic!("{args:?} hung"));
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!out.status.success(), "{args:?}: {said}");
        let named = format!("refusing to act on {}", bed.deploy().join(fifo).display());
        assert!(
            said.contains(&named) && said.contains("it is not a regular file"),
            "{args:?}: {said}"
        );
    }
}

/// A host command that never ends (here a `docker` that sleeps, as a hung daemon does):
/// `status` and `history` fail at the deadline of `[rollout.deadlines]` instead of hanging.
#[test]
fn a_read_that_never_ends_fails_at_the_deadline() {
    let bed = Bed::new("[rollout.deadlines]\nfacts = \"2s\"\n");
    let bin = bed.base.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let docker = bin.join("docker");
    std::fs::write(&docker, "#!/bin/sh\nexec sleep 600\n").unwrap();
    std::fs::set_permissions(&docker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    for args in [&["status"][..], &["plan"]] {
        let out = run_limited(
            &bed,
            args,
            None,
            &[("PATH", &path)],
            Duration::from_secs(120),
        )
        .unwrap_or_else(|| panic!("{args:?} hung past its deadline"));
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!out.status.success(), "{args:?}: {said}");
        assert!(
            said.contains("step facts did not finish within its deadline"),
            "{args:?}: {said}"
        );
    }
}

/// Over SSH, a command that prints more than its limit is ended and fails naming the host,
/// the step and the limit; the connection is spent (its command's state is unknown).
#[test]
fn over_ssh_a_command_printing_past_its_limit_is_ended_and_named() {
    use synprov::sh;
    use synprov::transport::OutputLimit;
    use synprov::transport::watch::Step;

    let sshd = common::sshd::Sshd::start();
    let inventory = sshd.inventory(&sshd.path("deploy"), "client_key", "");
    let bed = Bed::new("");
    let loaded = synprov::inventory::load(&bed.inventory).unwrap();
    let local = synprov::transport::Connection::open(
        &loaded.hosts["here"],
        &synprov::transport::ConnectOptions::default(),
    )
    .unwrap();
    // The local transport says the same.
    for (connection, host) in [(sshd.connect(&inventory), "loop"), (local, "here")] {
        connection.begin(Step::Facts).unwrap();
        let error = connection
            .run_script_within(&sh!("exec cat /dev/zero\n"), OutputLimit::stdout(1 << 20))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{host}: the host sent more than 1 MiB on standard output during facts: \
                 synprov stopped reading and ended the command"
            )
        );
        let again = connection.run_script(&sh!("echo hi\n")).unwrap_err();
        assert_eq!(again.to_string(), error.to_string(), "spent");
    }
}
