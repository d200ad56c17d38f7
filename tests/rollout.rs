//! Rollouts over several real sshd instances on loopback (`--files-only`: the Docker side is
//! the end-to-end test's): batches, the failure threshold, `--limit`, JSON events, the recap.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::sshd::Sshd;
use common::synprov;

/// Four hosts, each with its own deployment; `hs2` points at a port where nothing listens.
struct Fleet {
    servers: Vec<Sshd>,
    dir: tempfile::TempDir,
}

impl Fleet {
    fn new() -> Fleet {
        let servers: Vec<Sshd> = (0..3).map(|_| Sshd::start()).collect();
        let dir = tempfile::tempdir().unwrap();
        let known: String = servers
            .iter()
            .map(|s| std::fs::read_to_string(s.path("known_hosts")).unwrap())
            .collect();
        std::fs::write(dir.path().join("known_hosts"), known).unwrap();
        Fleet { servers, dir }
    }

    fn deploy_dir(&self, host: &str) -> PathBuf {
        self.dir.path().join(format!("deploy-{host}"))
    }

    fn inventory(&self, rollout: &str) -> PathBuf {
        let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ports = [
            self.servers[0].port,
            dead_port,
            self.servers[1].port,
            self.servers[2].port,
        ];
        let mut text = format!(
            "[defaults]\nuser = \"root\"\nidentity_file = \"{}\"\n\n[groups.eu]\n\n{rollout}\n",
            self.servers[0].path("client_key").display()
        );
        for (i, port) in ports.iter().enumerate() {
            let host = format!("hs{}", i + 1);
            let group = if i >= 2 { "groups = [\"eu\"]\n" } else { "" };
            text += &format!(
                "[hosts.{host}]\naddress = \"127.0.0.1\"\nport = {port}\n{group}\n[deployments.d{i}]\nserver_name = \"hs{i}.example\"\nhost = \"{host}\"\ndeploy_dir = \"{}\"\n\n",
                self.deploy_dir(&host).display()
            );
        }
        // One client key for all servers.
        for server in &self.servers[1..] {
            std::fs::copy(
                self.servers[0].path("client_key.pub"),
                server.path("authorized_keys"),
            )
            .unwrap();
        }
        let path = self.dir.path().join("fleet.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run(&self, inventory: &Path, args: &[&str]) -> Output {
        synprov(self.dir.path())
            .args(["apply", "--files-only"])
            .args(args)
            .arg(inventory)
            .arg("--known-hosts")
            .arg(self.dir.path().join("known_hosts"))
            .output()
            .unwrap()
    }

    fn written(&self, host: &str) -> bool {
        self.deploy_dir(host)
            .join("synapse/homeserver.yaml")
            .exists()
    }
}

#[test]
fn an_unreachable_host_stops_a_rollout_in_batches_of_one() {
    let fleet = Fleet::new();
    let inventory = fleet.inventory("[rollout]\nbatch = 1\nmax_failures = 0\n");
    let output = fleet.run(&inventory, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(fleet.written("hs1"));
    assert!(
        !fleet.written("hs3") && !fleet.written("hs4"),
        "the hosts after the failure stay untouched"
    );
    let recap: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("host "))
        .collect();
    assert!(
        recap[2].starts_with("hs2")
            && recap[2].contains("yes")
            && recap[2].contains("cannot connect"),
        "{}",
        recap.join("\n")
    );
    assert!(
        recap[3].starts_with("hs3") && recap[3].contains("skipped"),
        "{}",
        recap.join("\n")
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("hs2: cannot connect to 127.0.0.1:"));
}

#[test]
fn a_failure_within_max_failures_lets_the_rollout_go_on() {
    let fleet = Fleet::new();
    let inventory = fleet.inventory("[rollout]\nbatch = \"50%\"\nmax_failures = 1\nparallel = 2\n");
    let output = fleet.run(&inventory, &[]);
    assert_eq!(output.status.code(), Some(1), "one host failed");
    for host in ["hs1", "hs3", "hs4"] {
        assert!(fleet.written(host), "{host} was deployed");
    }
}

#[test]
fn limit_picks_hosts_or_groups_and_json_reports_every_event() {
    let fleet = Fleet::new();
    let inventory = fleet.inventory("");
    let output = fleet.run(&inventory, &["--limit", "eu", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!fleet.written("hs1") && fleet.written("hs3") && fleet.written("hs4"));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let finished: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "finished").collect();
    assert_eq!(finished.len(), 2);
    assert!(
        finished
            .iter()
            .all(|e| e["status"] == "ok" && e["changes"] == 33),
        "{finished:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "step" && e["host"] == "hs3")
    );
    // Every event carries its time; each step that ended says how long it took.
    assert!(
        (events.iter()).all(|e| e["time"]
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())),
        "{events:?}"
    );
    let writing = (events.iter())
        .find(|e| {
            e["event"] == "step_done"
                && e["host"] == "hs3"
                && e["step"]
                    .as_str()
                    .is_some_and(|s| s.ends_with("writing 33 file(s)"))
        })
        .unwrap_or_else(|| panic!("no step_done for the files: {events:?}"));
    assert!(writing["seconds"].as_f64().is_some_and(|s| s >= 0.0));

    let again = fleet.run(&inventory, &["--limit", "hs3,hs4", "--timings"]);
    assert!(again.status.success());
    let stdout = String::from_utf8_lossy(&again.stdout);
    let slowest: Vec<&str> = stdout
        .lines()
        .skip_while(|l| *l != "slowest steps:")
        .collect();
    assert!(
        slowest.len() > 2 && slowest[1].starts_with("host") && slowest[1].ends_with("step"),
        "--timings lists the slowest steps:\n{stdout}"
    );
    assert!(
        stdout
            .lines()
            .take_while(|l| *l != "slowest steps:")
            .filter(|l| l.starts_with("hs"))
            .all(|l| l.contains(" 0 ")),
        "no changes the second time:\n{stdout}"
    );

    let unknown = fleet.run(&inventory, &["--limit", "mars"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("`mars` is neither a host nor a group")
    );
}
