//! Rollouts that are interrupted or meet a host that stops answering, over real sshd
//! instances on loopback whose commands are slowed (`Sshd::start_slow`), so that a test
//! knows which step a host is in: a real SIGINT sent to synprov, a real SIGSTOP sent to a
//! host's sshd (`--files-only`: the Docker side is the end-to-end test's).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::sshd::{Sshd, send_signal};

/// Three slowed hosts; `hs1` has two deployments (`a` and `b`), the others one each.
struct Fleet {
    servers: Vec<Sshd>,
    dir: tempfile::TempDir,
    inventory: PathBuf,
}

impl Fleet {
    fn new(delay_secs: u32, rollout: &str) -> Fleet {
        let servers: Vec<Sshd> = (0..3).map(|_| Sshd::start_slow(delay_secs)).collect();
        let dir = tempfile::tempdir().unwrap();
        let known: String = (servers.iter())
            .map(|s| std::fs::read_to_string(s.path("known_hosts")).unwrap())
            .collect();
        std::fs::write(dir.path().join("known_hosts"), known).unwrap();
        let mut text = format!(
            "[defaults]\nuser = \"root\"\nidentity_file = \"{}\"\n\n{rollout}\n",
            servers[0].path("client_key").display()
        );
        for (i, server) in servers.iter().enumerate() {
            let host = format!("hs{}", i + 1);
            text += &format!(
                "[hosts.{host}]\naddress = \"127.0.0.1\"\nport = {}\n\n",
                server.port
            );
            std::fs::copy(
                servers[0].path("client_key.pub"),
                server.path("authorized_keys"),
            )
            .unwrap();
        }
        let mut fleet = Fleet {
            servers,
            dir,
            inventory: PathBuf::new(),
        };
        for (host, deployment) in [("hs1", "a"), ("hs1", "b"), ("hs2", "c"), ("hs3", "d")] {
            text += &format!(
                "[deployments.{deployment}]\nserver_name = \"{deployment}.example\"\nhost = \"{host}\"\ndeploy_dir = \"{}\"\n\n",
                fleet.deploy_dir(deployment).display()
            );
        }
        text += "[deployments.b.nginx]\nhttp_port = 8009\n";
        fleet.inventory = fleet.dir.path().join("fleet.toml");
        std::fs::write(&fleet.inventory, text).unwrap();
        fleet
    }

    fn deploy_dir(&self, deployment: &str) -> PathBuf {
        self.dir.path().join(format!("deploy-{deployment}"))
    }

    fn synprov(&self, command: &str) -> std::process::Command {
        let mut synprov = common::synprov(self.dir.path());
        synprov
            .arg(command)
            .arg("--known-hosts")
            .arg(self.dir.path().join("known_hosts"))
            .arg(&self.inventory);
        synprov
    }

    fn start_apply(&self) -> Child {
        self.synprov("apply")
            .arg("--files-only")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn apply(&self) -> Output {
        self.synprov("apply").arg("--files-only").output().unwrap()
    }

    fn written(&self, deployment: &str) -> bool {
        self.deploy_dir(deployment)
            .join("synapse/homeserver.yaml")
            .exists()
    }
}

/// Waits until `server` has started `count` commands (while synprov, `child`, runs).
fn wait_for_command(server: &Sshd, count: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.commands() < count {
        if let Some(status) = child.try_wait().unwrap() {
            let mut said = String::new();
            if let Some(mut out) = child.stdout.take() {
                let _ = std::io::Read::read_to_string(&mut out, &mut said);
            }
            if let Some(mut err) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut err, &mut said);
            }
            panic!("synprov ended ({status}) before command {count}:\n{said}");
        }
        assert!(
            Instant::now() < deadline,
            "the host never reached command {count}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn interrupt(child: &Child) {
    send_signal(child.id(), "INT");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The recap line of `host`.
fn recap_line(stdout: &str, host: &str) -> String {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("host "))
        .find(|l| l.starts_with(&format!("{host} ")))
        .unwrap_or_else(|| panic!("no recap line for {host} in:\n{stdout}"))
        .to_string()
}

/// Nothing holds the lock of `deploy_dir` (a `flock -n` on it succeeds at once).
fn assert_unlocked(deploy_dir: &Path) {
    let lock = deploy_dir.join(".synprov/lock");
    if !lock.exists() {
        return;
    }
    let status = std::process::Command::new("flock")
        .args(["-n", "-E", "75"])
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{} is still locked", lock.display());
}

/// No staged file (`.NAME.synprov-new`) is left anywhere under `dir`.
fn assert_no_staged_file(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".synprov-new"),
            "half-written: {}",
            entry.path().display()
        );
        if entry.file_type().unwrap().is_dir() {
            assert_no_staged_file(&entry.path());
        }
    }
}

#[test]
fn sigint_lets_the_step_in_flight_finish_starts_nothing_new_and_the_next_apply_completes() {
    // One host at a time; hs1's commands: facts, lock a, lock b, write a, write b.
    let fleet = Fleet::new(1, "[rollout]\nparallel = 1\n");
    let mut child = fleet.start_apply();
    wait_for_command(&fleet.servers[0], 4, &mut child);
    interrupt(&child);
    let output = child.wait_with_output().unwrap();
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(130),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(
        fleet.written("a"),
        "the file batch in flight when the signal came was finished"
    );
    assert!(!fleet.written("b"), "no new step after the signal");
    for deployment in ["c", "d"] {
        assert!(!fleet.written(deployment), "no new host after the signal");
    }
    let hs1 = recap_line(&stdout, "hs1");
    assert!(
        hs1.contains("interrupted") && hs1.contains("a: writing"),
        "{hs1}"
    );
    for host in ["hs2", "hs3"] {
        assert!(recap_line(&stdout, host).contains("skipped"), "{stdout}");
    }
    for deployment in ["a", "b", "c", "d"] {
        assert_unlocked(&fleet.deploy_dir(deployment));
        assert_no_staged_file(&fleet.deploy_dir(deployment));
    }

    let plan = fleet.synprov("plan").output().unwrap();
    assert_eq!(plan.status.code(), Some(2), "the rest is pending");
    let next = fleet.apply();
    assert!(next.status.success(), "{}", text(&next.stderr));
    for deployment in ["a", "b", "c", "d"] {
        assert!(fleet.written(deployment), "{deployment} completed");
    }
    let plan = fleet.synprov("plan").output().unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stdout));
}

#[test]
fn a_second_sigint_aborts_the_step_in_flight_and_releases_its_lock() {
    let fleet = Fleet::new(0, "[rollout]\nparallel = 1\n");
    // hs1's fourth command (writing a's files) would sleep for ten minutes.
    std::fs::write(fleet.servers[0].path("delay-4"), "600").unwrap();
    let mut child = fleet.start_apply();
    wait_for_command(&fleet.servers[0], 4, &mut child);
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&child);
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(130), "{stdout}{stderr}");
    assert!(stdout.contains("interrupted again: aborting"), "{stdout}");
    assert!(
        recap_line(&stdout, "hs1").contains("interrupted"),
        "{stdout}"
    );
    assert_unlocked(&fleet.deploy_dir("a"));
    assert_unlocked(&fleet.deploy_dir("b"));
    assert!(!fleet.written("c") && !fleet.written("d"));
}

#[test]
fn a_host_that_stops_answering_fails_within_its_step_deadline_and_the_rollout_goes_on() {
    let fleet = Fleet::new(
        2,
        "[rollout]\nparallel = 3\nmax_failures = 1\n[rollout.deadlines]\nfacts = \"6s\"\n",
    );
    let started = Instant::now();
    let mut child = fleet.start_apply();
    // hs2 is sleeping before its facts command: it stops there, its TCP connection open.
    wait_for_command(&fleet.servers[1], 1, &mut child);
    fleet.servers[1].freeze();
    let output = child.wait_with_output().unwrap();
    let took = started.elapsed();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("hs2: step facts did not finish within its deadline (waited 6s)")
            && stderr.contains("raise `deadlines.facts` in [rollout]"),
        "{stderr}"
    );
    assert!(
        recap_line(&stdout, "hs2").contains("did not finish"),
        "{stdout}"
    );
    for deployment in ["a", "b", "d"] {
        assert!(
            fleet.written(deployment),
            "{deployment}: the others go on\n{stdout}{stderr}"
        );
    }
    // Not libssh2's twenty minutes, nor the one minute of silence: the step's six seconds.
    assert!(took < Duration::from_secs(50), "took {took:?}");
}

#[test]
fn keepalives_find_a_silent_host_within_a_minute_whatever_the_step_allows() {
    let fleet = Fleet::new(
        2,
        "[rollout]\nparallel = 3\nmax_failures = 1\n[rollout.deadlines]\nfacts = \"2h\"\n",
    );
    let mut child = fleet.start_apply();
    wait_for_command(&fleet.servers[1], 1, &mut child);
    fleet.servers[1].freeze();
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("hs2: the host stopped answering during facts (silent for 60s"),
        "{stderr}"
    );
    for deployment in ["a", "b", "d"] {
        assert!(
            fleet.written(deployment),
            "{deployment}: the others go on\n{stdout}{stderr}"
        );
    }
}
