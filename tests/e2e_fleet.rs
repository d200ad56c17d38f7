//! End to end on several hosts: three bare Debian host containers (systemd and sshd, no
//! Docker) on one private Docker network.
//!
//! - Three independent homeservers, one per host, rolled out in batches of one; a config
//!   change rolled out the same way; then faults: a host stopped in the middle of a rollout,
//!   and a host whose Synapse fails its health check after the apply.
//! - One homeserver spread over three hosts (main, Postgres, Redis and Nginx; the room
//!   workers; the senders and the sync worker), with a client conversation through the
//!   Nginx of the main host, which reaches the workers on the other hosts.
//!
//! Needs a Docker engine and the locally built images: `scripts/build-images.sh` (which
//! starts dockerd when needed). Run alone with `scripts/test.sh e2e_fleet`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::bed::{Bed, Host, PRELOADED_IMAGES};
use common::matrix;
use serde_json::Value;

/// The hosts of the independent homeservers: inventory name, container, address.
const FLEET: [(&str, &str, &str); 3] = [
    ("fleet1", "synprov-fleet1", "172.31.243.11"),
    ("fleet2", "synprov-fleet2", "172.31.243.12"),
    ("fleet3", "synprov-fleet3", "172.31.243.13"),
];

/// Starts the host containers of `hosts` (inventory name, container, address).
fn start(dir: &Path, network: &str, subnet: &str, hosts: [(&str, &str, &str); 3]) -> Bed {
    Bed::start(
        dir,
        network,
        subnet,
        &hosts.map(|(_, container, address)| (container, address)),
    )
}

/// The start of an inventory: every host is reached as root with the bed's key.
fn defaults(dir: &Path) -> String {
    format!(
        "[defaults]\nidentity_file = \"{}\"\nhost_key_checking = \"accept-new\"\n\n",
        dir.join("key").display()
    )
}

/// One homeserver per host, each with one worker of every kind: 10 listeners.
fn fleet_inventory(dir: &Path, name: &str, rollout: &str, homeserver: &[&str; 3]) -> PathBuf {
    let mut text = format!("{}[rollout]\nbatch = 1\n{rollout}\n", defaults(dir));
    for ((host, _, address), extra) in FLEET.iter().zip(homeserver) {
        text += &format!(
            "[hosts.{host}]\naddress = \"{address}\"\n\n\
[deployments.{host}]\nserver_name = \"{host}.example\"\npublic_baseurl = \"http://{address}:8008/\"\nhost = \"{host}\"\n\
[deployments.{host}.workers]\nrooms = 1\nsender = 1\n\
[deployments.{host}.images]\n{PRELOADED_IMAGES}\
[deployments.{host}.postgres]\nmax_connections = 100\n\
[deployments.{host}.nginx]\nadmin_allow = [\"172.16.0.0/12\"]\n\
[deployments.{host}.homeserver]\n{extra}\n\n"
        );
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The JSON events of a `--json` run.
fn events(output: &str) -> Vec<Value> {
    output
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The batches, starts and ends of a rollout, in the order they happened.
fn sequence(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e["event"].as_str()? {
            "batch" => Some(format!("batch {}", e["hosts"])),
            "started" => Some(format!("started {}", e["host"].as_str()?)),
            "finished" => Some(format!(
                "finished {} {}",
                e["host"].as_str()?,
                e["status"].as_str()?
            )),
            _ => None,
        })
        .collect()
}

/// What a batch-of-one rollout over the three hosts looks like when all goes well.
fn one_after_the_other() -> Vec<String> {
    FLEET
        .iter()
        .flat_map(|(host, _, _)| {
            [
                format!("batch [\"{host}\"]"),
                format!("started {host}"),
                format!("finished {host} ok"),
            ]
        })
        .collect()
}

/// The step messages of one host.
fn steps<'a>(events: &'a [Value], host: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e["event"] == "step" && e["host"] == host)
        .filter_map(|e| e["message"].as_str())
        .collect()
}

fn changes(events: &[Value], host: &str) -> u64 {
    events
        .iter()
        .find(|e| e["event"] == "finished" && e["host"] == host)
        .and_then(|e| e["changes"].as_u64())
        .unwrap_or_else(|| panic!("{host} did not finish"))
}

/// The line of `host` in the recap table at the end of a plain run.
fn recap_line<'a>(output: &'a str, host: &str) -> &'a str {
    output
        .lines()
        .skip_while(|l| !l.starts_with("host "))
        .find(|l| l.starts_with(&format!("{host} ")))
        .unwrap_or_else(|| panic!("no recap line for {host}:\n{output}"))
}

/// A user of the homeserver on `host`, registered through its Nginx.
fn user(host: &Host, deployment: &str) -> matrix::Client {
    let config = host.exec(&format!(
        "cat /opt/synapse/{deployment}/synapse/homeserver.yaml"
    ));
    matrix::register(&host.url(8008), "probe", &matrix::shared_secret(&config))
}

/// The upload limit the running homeserver announces to clients (from its media worker):
/// shows that a config change reached the processes, not just the file.
fn upload_limit(user: &matrix::Client) -> u64 {
    user.call("GET", "/_matrix/client/v1/media/config", None)["m.upload.size"]
        .as_u64()
        .expect("m.upload.size")
}

const MIB: u64 = 1024 * 1024;

/// IDs of the containers of the deployment on `host`, to see that nothing touched them.
fn containers(host: &Host, deployment: &str) -> String {
    host.exec(&format!(
        "cd /opt/synapse/{deployment} && docker compose ps -aq | sort"
    ))
}

#[test]
fn e2e_fleet_three_homeservers_roll_out_in_batches_of_one_and_faults_stop_or_let_the_rollout_go_on()
{
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let bed = start(dir, "synprov-fleet", "172.31.243.0/24", FLEET);
    let (fleet2, fleet3) = (&bed.hosts[1], &bed.hosts[2]);
    let run = |args: &[&str], inventory: &Path| common::bed::run(dir, &[], args, inventory);

    // (a) Batches of one: each host is deployed and verified before the next one starts.
    let first = fleet_inventory(dir, "first", "", &[""; 3]);
    let (code, out) = run(&["apply", "--json"], &first);
    assert_eq!(code, 0, "{out}");
    let first_events = events(&out);
    assert_eq!(sequence(&first_events), one_after_the_other());
    for (host, _, _) in FLEET {
        assert!(
            steps(&first_events, host)
                .iter()
                .any(|s| s.ends_with("change(s) applied, 10 listener(s) healthy")),
            "{host} verified"
        );
    }
    // Each homeserver serves a client (Synapse's default upload limit: 50M).
    let users: Vec<matrix::Client> = FLEET
        .iter()
        .zip(&bed.hosts)
        .map(|((host, _, _), container)| user(container, host))
        .collect();
    let [user1, user2, user3] = [&users[0], &users[1], &users[2]];
    for user in &users {
        assert_eq!(upload_limit(user), 50 * MIB);
    }

    // A config change, rolled out the same way: every host reports it and is healthy.
    let bigger = ["max_upload_size = \"20M\""; 3];
    let second = fleet_inventory(dir, "second", "", &bigger);
    let (code, out) = run(&["apply", "--json"], &second);
    assert_eq!(code, 0, "{out}");
    let second_events = events(&out);
    assert_eq!(sequence(&second_events), one_after_the_other());
    for ((host, _, _), user) in FLEET.iter().zip(&users) {
        let steps = steps(&second_events, host);
        assert!(
            steps
                .iter()
                .any(|s| s.contains("~ change synapse/homeserver.yaml")),
            "{host} reports the change: {steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|s| s.ends_with("change(s) applied, 10 listener(s) healthy")),
            "{host} verified: {steps:?}"
        );
        assert_eq!(upload_limit(user), 20 * MIB, "{host} runs with the change");
    }

    // Once more: nothing changed anywhere.
    let (code, out) = run(&["apply", "--json"], &second);
    assert_eq!(code, 0, "{out}");
    let third_events = events(&out);
    assert_eq!(sequence(&third_events), one_after_the_other());
    for (host, _, _) in FLEET {
        assert_eq!(changes(&third_events, host), 0, "{host}: nothing to do");
    }

    // (c) A host stopped in the middle of a rollout: fleet2 is stopped while synprov brings
    // its stack up. With max_failures = 0 the rollout stops there and fleet3 is left
    // untouched.
    let fleet3_before = containers(fleet3, "fleet3");
    let third = fleet_inventory(
        dir,
        "third",
        "max_failures = 0\n",
        &["max_upload_size = \"30M\""; 3],
    );
    let mut child = common::bed::command(dir, &[], &["apply"], &third)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "[fleet2] fleet2: bringing the stack up" {
            common::bed::docker(&["stop", &fleet2.name]);
        }
        out += &line;
        out.push('\n');
    }
    let status = child.wait_with_output().unwrap();
    out += &String::from_utf8_lossy(&status.stderr);
    println!("synprov apply (fleet2 stopped):\n{out}");
    assert_eq!(status.status.code(), Some(1), "the rollout failed");
    let failed = recap_line(&out, "fleet2");
    assert!(
        failed.contains(" yes ") && failed.contains("fleet2"),
        "the recap names fleet2 and why: {failed}"
    );
    assert!(
        recap_line(&out, "fleet3").contains("skipped"),
        "fleet3 was not started"
    );
    assert!(out.contains("stopping: 1 host(s) failed, 0 allowed; not started: fleet3"));
    assert_eq!(upload_limit(user1), 30 * MIB, "fleet1 runs with the change");
    assert_eq!(
        containers(fleet3, "fleet3"),
        fleet3_before,
        "fleet3 untouched"
    );
    assert_eq!(upload_limit(user3), 20 * MIB, "fleet3 untouched, serving");
    // Once the host is back, the same apply completes it.
    fleet2.start();
    let (code, out) = run(&["apply", "--limit", "fleet2"], &third);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[fleet2] ok"), "{out}");
    assert_eq!(upload_limit(user2), 30 * MIB, "fleet2 runs with the change");

    // A host whose Synapse fails its health check after the apply (a config value it
    // refuses, on fleet2 only). With max_failures = 1 the rollout goes on to fleet3; fleet2
    // is rolled back to its previous files.
    let broken = fleet_inventory(
        dir,
        "broken",
        "max_failures = 1\nhealth_timeout = 60\nrollback_on_failure = true\n",
        &[
            "max_upload_size = \"30M\"",
            "max_upload_size = \"30M\"\nevent_cache_size = \"lots\"",
            "max_upload_size = \"30M\"",
        ],
    );
    let (code, out) = run(&["apply"], &broken);
    assert_eq!(code, 1, "{out}");
    let failed = recap_line(&out, "fleet2");
    assert!(
        failed.contains(" yes ") && failed.contains("fleet2: ") && failed.contains("unhealthy"),
        "the recap names fleet2 and why: {failed}"
    );
    assert!(out.contains("rolled back"), "{out}");
    assert!(
        recap_line(&out, "fleet1").contains(" 0 "),
        "fleet1 had nothing to change"
    );
    assert!(
        !recap_line(&out, "fleet3").contains("skipped"),
        "the rollout went on to fleet3"
    );
    // fleet1 and fleet3 with the change, fleet2 rolled back to it: all serve.
    for user in &users {
        assert_eq!(upload_limit(user), 30 * MIB);
    }

    // Day two on several hosts: one command in main's container on each, its output grouped
    // under each host and a recap of the exit statuses; then each host's logs.
    let (code, out) = run(
        &[
            "exec",
            "--limit",
            "fleet1,fleet3",
            "--service",
            "main",
            "--",
            "sh",
            "-c",
            "grep '^server_name' /data/homeserver.yaml; exit 3",
        ],
        &broken,
    );
    assert_eq!(code, 1, "a host whose command failed fails exec: {out}");
    let one = out.find("== fleet1/fleet1 ==").expect(&out);
    let three = out.find("== fleet3/fleet3 ==").expect(&out);
    assert!(
        one < three
            && out[one..three].contains("server_name: \"fleet1.example\"")
            && out[three..].contains("server_name: \"fleet3.example\""),
        "{out}"
    );
    let recap: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("host")).collect();
    assert_eq!(
        recap,
        [
            "host           exit",
            "fleet1/fleet1  3",
            "fleet3/fleet3  3"
        ],
        "{out}"
    );
    let (code, out) = run(
        &[
            "exec",
            "--limit",
            "fleet1,fleet2,fleet3",
            "db",
            "--",
            "true",
        ],
        &broken,
    );
    assert_eq!(code, 0, "{out}");
    for host in ["fleet1", "fleet3"] {
        let (code, out) = run(&["logs", "--host", host, "main", "--tail", "5"], &broken);
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            out.lines().filter(|l| l.starts_with("main | ")).count(),
            5,
            "main's last lines, from its log file: {out}"
        );
    }
}

/// The hosts of the spread homeserver: inventory name, container, address. In inventory
/// order the edge host comes first, but it needs the main host's Postgres and Redis.
const SPREAD: [(&str, &str, &str); 3] = [
    ("spread-edge", "synprov-spread-edge", "172.31.244.12"),
    ("spread-main", "synprov-spread-main", "172.31.244.10"),
    ("spread-rooms", "synprov-spread-rooms", "172.31.244.11"),
];

fn spread_inventory(dir: &Path) -> PathBuf {
    let mut text = defaults(dir);
    for (host, _, address) in SPREAD {
        text += &format!(
            "[hosts.{host}]\naddress = \"{address}\"\nprivate_address = \"{address}\"\n\n"
        );
    }
    text += &format!(
        "[deployments.big]\nserver_name = \"big.example\"\npublic_baseurl = \"http://172.31.244.10:8008/\"\nhost = \"spread-main\"\n\
[deployments.big.workers]\nrooms = 2\nsender = 2\n\
[deployments.big.placement]\nrooms = \"spread-rooms\"\nsender = \"spread-edge\"\nclient_sync = \"spread-edge\"\n\
[deployments.big.images]\n{PRELOADED_IMAGES}\
[deployments.big.nginx]\nadmin_allow = [\"172.16.0.0/12\"]\n\
[deployments.big.postgres]\nmax_connections = 100\n"
    );
    let path = dir.join("spread.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn e2e_spread_one_homeserver_over_three_hosts_serves_a_client_through_the_main_hosts_nginx() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let bed = start(dir, "synprov-spread", "172.31.244.0/24", SPREAD);
    let [edge, main, rooms] = [&bed.hosts[0], &bed.hosts[1], &bed.hosts[2]];
    let inventory = spread_inventory(dir);

    let (code, out) = common::bed::run(dir, &[], &["apply"], &inventory);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("batch 1/2: spread-main\n")
            && out.contains("batch 2/2: spread-edge, spread-rooms\n"),
        "the workers' hosts come after the main host: {out}"
    );
    // main, federation_reader1, media1 and tasks1; rooms1-2; client_sync1 and sender1-2.
    for (host, listeners) in [("spread-main", 6), ("spread-rooms", 2), ("spread-edge", 4)] {
        let verified = format!("change(s) applied, {listeners} listener(s) healthy");
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("[{host}] ")) && l.ends_with(&verified)),
            "{host}: {listeners} listeners verified by synprov"
        );
    }
    let services = |host: &Host| host.exec("docker ps --format '{{.Names}}' | sort");
    assert_eq!(services(rooms), "big-rooms1-1\nbig-rooms2-1");
    assert_eq!(
        services(edge),
        "big-client-sync1-1\nbig-sender1-1\nbig-sender2-1"
    );

    let secret = matrix::shared_secret(&main.exec("cat /opt/synapse/big/synapse/homeserver.yaml"));
    matrix::conversation(&main.url(8008), &secret, "big.example", "");

    let (code, out) = common::bed::run(dir, &[], &["apply"], &inventory);
    assert_eq!(code, 0, "{out}");
    for (host, _, _) in SPREAD {
        assert!(
            recap_line(&out, host).contains(" 0 "),
            "{host}: nothing to change the second time"
        );
    }

    // An upgrade of Synapse across the three hosts: a new config the new image refuses
    // touches no host; then the upgrade itself stops the workers on every host before main
    // starts on the new image, and starts them only after it.
    common::bed::build_image(
        SPREAD_NEXT,
        "FROM synprov/synapse:1.163\nLABEL org.opencontainers.image.version=1.163.2-spread\n",
    );
    let today = std::fs::read_to_string(&inventory).unwrap();
    let next = dir.join("spread-next.toml");
    std::fs::write(
        &next,
        today.replace("\"synprov/synapse:1.163\"", &format!("\"{SPREAD_NEXT}\"")),
    )
    .unwrap();
    let refused = dir.join("spread-refused.toml");
    std::fs::write(
        &refused,
        format!(
            "{}[deployments.big.homeserver]\nevent_cache_size = \"lots\"\n",
            std::fs::read_to_string(&next).unwrap()
        ),
    )
    .unwrap();
    let before: Vec<_> = bed.hosts.iter().map(synapse_starts).collect();
    let (code, out) = common::bed::run(dir, &[], &["apply"], &refused);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("refuses the new config") && out.contains("no host was touched"),
        "{out}"
    );
    let after: Vec<_> = bed.hosts.iter().map(synapse_starts).collect();
    assert_eq!(after, before, "no Synapse process was touched on any host");

    let logins = |host: &Host| -> usize {
        host.exec("journalctl -u ssh -o cat | grep -c 'Accepted publickey' || true")
            .trim()
            .parse()
            .unwrap()
    };
    let logins_before: Vec<usize> = bed.hosts.iter().map(logins).collect();
    let (code, out) = common::bed::run(dir, &[], &["apply"], &next);
    assert_eq!(code, 0, "{out}");
    let logins_after: Vec<usize> = bed.hosts.iter().map(logins).collect();
    for ((host, _, _), (after, before)) in
        SPREAD.iter().zip(logins_after.iter().zip(&logins_before))
    {
        assert_eq!(
            after - before,
            1,
            "{host}: one connection for the check, the stop and the upgrade"
        );
    }
    let starts: Vec<(String, u128, String)> = bed.hosts.iter().flat_map(synapse_starts).collect();
    let main_start = (starts.iter())
        .find(|(name, _, _)| name == "big-synapse-1")
        .map(|(_, start, _)| *start)
        .expect("main runs");
    assert_eq!(
        starts.len(),
        before.iter().map(Vec::len).sum::<usize>(),
        "{starts:?}"
    );
    assert!(before.iter().all(|host| !host.is_empty()), "{before:?}");
    for (name, start, image) in &starts {
        assert_eq!(image, SPREAD_NEXT, "{name} runs the new image");
        assert!(
            name == "big-synapse-1" || *start > main_start,
            "{name} started after main: {starts:?}"
        );
    }
    matrix::conversation(&main.url(8008), &secret, "big.example", "2");
}

/// The same Synapse with another version label, for the spread homeserver's upgrade.
const SPREAD_NEXT: &str = "synprov/synapse:1.163-spread";

/// Each Synapse container on `host`: its name, its start (ns since the epoch) and image.
fn synapse_starts(host: &Host) -> Vec<(String, u128, String)> {
    host.exec(
        "for c in $(docker ps -aq); do \
         set -- $(docker inspect --format '{{.Name}} {{.State.StartedAt}} {{.Config.Image}}' \"$c\"); \
         echo \"${1#/} $(date -d \"$2\" +%s%N) $3\"; done",
    )
    .lines()
    .filter_map(|l| {
        let mut fields = l.split(' ');
        let (name, start, image) = (fields.next()?, fields.next()?, fields.next()?);
        image.starts_with("synprov/synapse").then(|| {
            (name.to_string(), start.parse().unwrap(), image.to_string())
        })
    })
    .collect()
}
