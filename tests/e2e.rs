//! End to end: a bare Debian host (a container booting systemd and sshd, no Docker) gets the
//! guide's whole stack from `synprov apply`, as a user other than root (every step through
//! sudo), with the images streamed over SSH. Then a real
//! Matrix client conversation goes through its Nginx, and one more room worker is rolled
//! out: the plan shows exactly that, the apply recreates only what changed.
//!
//! Needs a Docker engine and the locally built images: `scripts/build-images.sh` (which
//! starts dockerd when needed). Run alone with `scripts/test.sh e2e`.

mod common;

use std::path::Path;

use common::bed::{Bed, PRELOADED_IMAGES};
use common::matrix;

const SUBNET: &str = "172.31.240.0/24";
const HOST_IP: &str = "172.31.240.10";
const CONTAINER: &str = "synprov-e2e-host";
/// This machine on the bed's network (Docker's bridge gateway): where Pebble listens.
const GATEWAY: &str = "172.31.240.1";

fn on_host(script: &str) -> String {
    common::bed::docker(&["exec", CONTAINER, "sh", "-c", script])
}

fn inventory(dir: &Path, rooms: u32) -> std::path::PathBuf {
    let path = dir.join(format!("e2e-{rooms}-rooms.toml"));
    std::fs::write(
        &path,
        format!(
            "[hosts.e2e]\naddress = \"{HOST_IP}\"\n# Not root: every step goes through sudo.\nuser = \"deploy\"\nbecome = true\nidentity_file = \"{key}\"\nhost_key_checking = \"accept-new\"\n\n\
[deployments.e2e]\nserver_name = \"e2e.example\"\npublic_baseurl = \"http://{HOST_IP}:8008/\"\nhost = \"e2e\"\ndeploy_dir = \"/opt/synapse/e2e\"\n\
[deployments.e2e.workers]\nrooms = {rooms}\n\
[deployments.e2e.images]\n{PRELOADED_IMAGES}\
[deployments.e2e.nginx]\nadmin_allow = [\"172.16.0.0/12\", \"127.0.0.1\"]\n\
[deployments.e2e.postgres]\nmax_connections = 200\n\
[deployments.e2e.metrics]\nenabled = true\n",
            key = dir.join("key").display()
        ),
    )
    .unwrap();
    path
}

fn synprov_run(dir: &Path, args: &[&str], inventory: &Path) -> (i32, String) {
    common::bed::run(dir, &[], args, inventory)
}

/// Sends SIGINT to an apply once it loads the images (one stream): the stream in flight
/// finishes (the host has every image), no later step starts, the lock is released, no file is half-written,
/// and the exit status is 130; `plan` shows the rest as pending.
fn interrupted_while_loading_the_images(dir: &Path, inventory: &Path) {
    use std::io::BufRead;
    let mut child = common::bed::command(dir, &[], &["apply"], inventory)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = String::new();
    let mut loading = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        out += &line;
        out.push('\n');
        if let Some(images) = line.split("loading images ").nth(1) {
            loading = Some(
                images
                    .trim()
                    .split(", ")
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            );
            common::sshd::send_signal(child.id(), "INT");
            break;
        }
    }
    for line in lines {
        out += &line.unwrap();
        out.push('\n');
    }
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    println!("interrupted apply:\n{out}{err}");
    let images = loading.expect("the apply loads the images in one stream");
    assert_eq!(output.status.code(), Some(130), "{out}{err}");
    assert!(out.contains("installing Docker"), "{out}");
    let recap = out
        .lines()
        .find(|l| l.starts_with("e2e "))
        .unwrap_or_default();
    assert!(recap.contains("interrupted"), "{out}");
    assert_eq!(images.len(), 4, "{images:?}");
    for image in images {
        assert_eq!(
            on_host(&format!("docker image inspect --format ok {image}")),
            "ok",
            "the stream in flight finished loading"
        );
    }
    assert_eq!(
        on_host(
            "ls /opt/synapse/e2e/synapse 2>/dev/null; find /opt/synapse/e2e -name '*.synprov-new'"
        ),
        "",
        "no file written, none half-written"
    );
    assert_eq!(
        on_host("flock -n -E 75 /opt/synapse/e2e/.synprov/lock echo free"),
        "free",
        "the lock was released"
    );
    let (code, plan) = synprov_run(dir, &["plan"], inventory);
    assert_eq!(code, 2, "the rest is pending: {plan}");
}

/// `docker inspect` of every container of the stack: all capabilities dropped (and only an
/// entrypoint's user switch added back), no-new-privileges, a read-only root, process and
/// memory limits, and no port published but Nginx's. Synapse runs as the deployment's
/// user (its entrypoint dropped root, as the official image's does).
fn hardened_containers() {
    let inspect = on_host(
        "cd /opt/synapse/e2e && docker inspect --format \
         '{{index .Config.Labels \"com.docker.compose.service\"}} {{json .HostConfig.CapDrop}} \
         {{json .HostConfig.CapAdd}} {{json .HostConfig.SecurityOpt}} {{.HostConfig.ReadonlyRootfs}} \
         {{.HostConfig.PidsLimit}} {{.HostConfig.Memory}} {{json .HostConfig.PortBindings}}' \
         $(docker compose ps -q)",
    );
    let lines: Vec<&str> = inspect.lines().collect();
    assert_eq!(lines.len(), 16, "{inspect}");
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let [
            service,
            drop,
            _add,
            security,
            read_only,
            pids,
            memory,
            ports,
        ] = fields[..]
        else {
            panic!("unexpected inspect line: {line}");
        };
        assert_eq!(drop, r#"["ALL"]"#, "{line}");
        assert_eq!(security, r#"["no-new-privileges:true"]"#, "{line}");
        assert_eq!(read_only, "true", "{line}");
        assert!(pids.parse::<u64>().unwrap() > 0, "{line}");
        assert!(memory.parse::<u64>().unwrap() > 0, "{line}");
        if service == "nginx" {
            assert!(ports.contains(r#""HostPort":"8008""#), "{line}");
        } else {
            assert!(
                ports == "{}" || ports == "null",
                "{service} publishes: {line}"
            );
        }
    }
    assert_eq!(
        on_host("cd /opt/synapse/e2e && docker compose exec -T synapse stat -c %u:%g /proc/1"),
        "1000:1000",
        "Synapse runs as the deployment's user, not root"
    );
}

/// What `docker inspect` shows anyone in the docker group (environment, command,
/// healthcheck, labels of every container) holds none of the deployment's secrets: Postgres
/// reads its password from a file (`POSTGRES_PASSWORD_FILE`), Synapse from homeserver.yaml.
fn no_secret_in_docker_inspect() {
    let homeserver: serde_norway::Value =
        serde_norway::from_str(&on_host("cat /opt/synapse/e2e/synapse/homeserver.yaml")).unwrap();
    let secrets: Vec<&str> = [
        &homeserver["database"]["args"]["password"],
        &homeserver["registration_shared_secret"],
        &homeserver["macaroon_secret_key"],
        &homeserver["form_secret"],
        &homeserver["worker_replication_secret"],
    ]
    .map(|v| v.as_str().expect("a secret of homeserver.yaml"))
    .to_vec();
    let inspect = on_host("cd /opt/synapse/e2e && docker inspect $(docker compose ps -q)");
    assert!(inspect.contains("POSTGRES_PASSWORD_FILE"), "{inspect}");
    for secret in secrets {
        assert!(
            !inspect.contains(secret),
            "docker inspect shows a secret of homeserver.yaml"
        );
    }
}

/// Every target of the rendered Prometheus file answers with Prometheus' text format, from
/// inside the stack's network (the targets are never published on the host).
fn every_metrics_target_answers() {
    let file: Vec<serde_json::Value> =
        serde_json::from_str(&on_host("cat /opt/synapse/e2e/prometheus/targets.json")).unwrap();
    assert_eq!(file.len(), 13, "one target per Synapse process");
    let urls: Vec<String> = file
        .iter()
        .map(|group| {
            format!(
                "http://{}{}",
                group["targets"][0].as_str().unwrap(),
                group["labels"]["__metrics_path__"].as_str().unwrap()
            )
        })
        .collect();
    let answers = on_host(&format!(
        "cd /opt/synapse/e2e && docker compose exec -T nginx sh -c \
         'for url in {}; do echo \"$url $(wget -q -O - \"$url\" | grep -c \"^# TYPE \")\"; done'",
        urls.join(" ")
    ));
    let counts: Vec<(&str, u32)> = answers
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(url, n)| (url, n.parse().unwrap_or(0)))
        .collect();
    assert_eq!(counts.len(), urls.len(), "{answers}");
    for (url, types) in counts {
        assert!(types > 10, "{url} answers Prometheus metrics: {answers}");
    }
}

/// Container ID and start time of each service, to see what an apply recreated.
fn containers() -> std::collections::BTreeMap<String, String> {
    on_host("cd /opt/synapse/e2e && docker compose ps -a --format '{{.Service}} {{.ID}}'")
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(s, id)| (s.to_string(), id.to_string()))
        })
        .collect()
}

#[test]
fn e2e_apply_deploys_a_healthy_stack_a_client_can_use_and_rolls_out_one_more_room_worker() {
    let dir = tempfile::tempdir().unwrap();
    let _bed = Bed::start(dir.path(), CONTAINER, SUBNET, &[(CONTAINER, HOST_IP)]);
    assert!(
        on_host("command -v docker || echo none").ends_with("none"),
        "the host starts without Docker"
    );
    let first = inventory(dir.path(), 4);

    let (code, out) = synprov_run(dir.path(), &["plan"], &first);
    assert_eq!(code, 2, "changes pending");
    assert!(
        out.contains("+ install Docker") && out.contains("+ load image synprov/synapse:1.163"),
        "{out}"
    );
    // Sized from this host's memory, and shown with the reason.
    let planned_buffers = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("postgres: shared_buffers "))
        .and_then(|sized| sized.split(' ').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("the plan shows how Postgres is sized:\n{out}"));

    // Ctrl-C while the first image streams: that image finishes, nothing else starts.
    interrupted_while_loading_the_images(dir.path(), &first);

    let (code, out) = synprov_run(dir.path(), &["apply"], &first);
    assert_eq!(code, 0, "apply failed");
    assert!(
        !out.contains("installing Docker") && out.contains("16 listener(s) healthy"),
        "the interrupted apply is completed: {out}"
    );
    assert_eq!(
        on_host("systemctl is-active docker"),
        "active",
        "Docker runs under systemd"
    );
    let status =
        on_host("cd /opt/synapse/e2e && docker compose ps -a --format '{{.Service}} {{.Health}}'");
    let services: Vec<&str> = status.lines().collect();
    assert_eq!(services.len(), 16, "{status}");
    assert!(
        services.iter().all(|l| l.ends_with(" healthy")),
        "every container healthy:\n{status}"
    );
    assert_eq!(
        on_host(
            "cd /opt/synapse/e2e && docker compose exec -T db sh -c \
             'PGPASSWORD=\"$(cat \"$POSTGRES_PASSWORD_FILE\")\" exec psql -h /sockets -U \"$POSTGRES_USER\" \
             -d \"$POSTGRES_DB\" -tAc \"SHOW shared_buffers\"'"
        ),
        planned_buffers,
        "Postgres runs with the shared buffers the plan showed"
    );

    hardened_containers();
    no_secret_in_docker_inspect();
    every_metrics_target_answers();

    // A client conversation through Nginx.
    let secret = matrix::shared_secret(&on_host("cat /opt/synapse/e2e/synapse/homeserver.yaml"));
    matrix::conversation(
        &format!("http://{HOST_IP}:8008"),
        &secret,
        "e2e.example",
        "",
    );

    // Nothing changed: nothing to do.
    let before = containers();
    let (code, out) = synprov_run(dir.path(), &["apply"], &first);
    assert_eq!(code, 0);
    assert!(
        out.contains("host e2e: no changes") && out.contains("0 change(s) applied"),
        "{out}"
    );
    assert_eq!(containers(), before, "no container touched");

    // One more room worker.
    let second = inventory(dir.path(), 5);
    let (code, out) = synprov_run(dir.path(), &["plan"], &second);
    assert_eq!(code, 2);
    for expected in [
        "+ create synapse/workers/rooms5.yaml",
        "~ change docker-compose.yml",
        "new services: rooms5",
        "~ change nginx/upstreams.conf",
    ] {
        assert!(out.contains(expected), "plan lacks {expected:?}:\n{out}");
    }
    assert!(
        !out.contains("change synapse/homeserver.yaml"),
        "the shared config does not change"
    );
    let (code, out) = synprov_run(dir.path(), &["apply"], &second);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("17 listener(s) healthy"), "{out}");
    let after = containers();
    assert!(after.contains_key("rooms5"));
    for (service, id) in &before {
        if service == "nginx" {
            assert_ne!(
                after[service], *id,
                "nginx is recreated for its new upstream"
            );
        } else {
            assert_eq!(after[service], *id, "{service} was not touched");
        }
    }
    let status =
        on_host("cd /opt/synapse/e2e && docker compose ps -a --format '{{.Service}} {{.Health}}'");
    assert!(
        status.lines().count() == 17 && status.lines().all(|l| l.ends_with(" healthy")),
        "{status}"
    );

    // Roll the last apply back (with the inventory of before): rooms5 is gone, the stack is
    // healthy on the old files, and the first inventory has nothing left to change.
    let (code, out) = synprov_run(dir.path(), &["rollback", "--host", "e2e"], &first);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("16 listener(s) healthy"), "{out}");
    assert!(!containers().contains_key("rooms5"));
    let (code, out) = synprov_run(dir.path(), &["plan"], &first);
    assert_eq!(code, 0, "nothing to change after the rollback: {out}");

    // Status reads what the host recorded: all as recorded and healthy, exit 0.
    let (code, out) = synprov_run(dir.path(), &["status"], &first);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("e2e (/opt/synapse/e2e): generation 3 of ")
            && out.contains("ok, 16 check(s) healthy"),
        "{out}"
    );

    // Day two, as `deploy` through sudo: main's full log (its file, INFO lines included,
    // where the container's console has only warnings), Postgres' from its container, and
    // commands in the containers of main and db, each word as given, the exit status
    // passed through.
    let (code, out) = synprov_run(
        dir.path(),
        &[
            "logs", "--host", "e2e", "main", "--tail", "5", "--since", "1h",
        ],
        &first,
    );
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("main | ")).collect();
    assert!(
        lines.len() == 5 && lines.iter().any(|l| l.contains(" - INFO - ")),
        "{out}"
    );
    let (code, out) = synprov_run(
        dir.path(),
        &["logs", "--host", "e2e", "db", "--tail", "3"],
        &first,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().any(|l| l.starts_with("db-1 ")), "{out}");
    let exec = |process: &str, command: &[&str]| {
        let args = [&["exec", "--host", "e2e", process, "--"], command].concat();
        synprov_run(dir.path(), &args, &first)
    };
    let (code, out) = exec(
        "main",
        &[
            "python",
            "-c",
            "import sys, synapse; print(synapse.__version__, sys.argv[1]); sys.exit(4)",
            "a'b $(id);touch${IFS}/tmp/pwned",
        ],
    );
    assert_eq!(code, 4, "{out}");
    assert!(
        out.starts_with("1.163") && out.contains(" a'b $(id);touch${IFS}/tmp/pwned\n"),
        "{out}"
    );
    let (code, out) = exec("db", &["psql", "-U", "synapse", "-tAc", "select 6*7"]);
    assert_eq!((code, out.as_str()), (0, "42\n"));
    let (code, out) = exec("main", &["tail", "-n", "5", "/data/logs/synapse.log"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines().count() == 5 && out.contains(" - INFO - "),
        "Synapse's own log: {out}"
    );

    // A file edited by hand is drift: named, exit 1; undone, all is well again.
    let edited = "/opt/synapse/e2e/synapse/workers/rooms1.yaml";
    on_host(&format!("echo '# edited by hand' >> {edited}"));
    let (code, out) = synprov_run(dir.path(), &["status"], &first);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("synapse/workers/rooms1.yaml was changed since generation 3"),
        "{out}"
    );
    on_host(&format!("sed -i '$d' {edited}"));
    let (code, out) = synprov_run(dir.path(), &["status"], &first);
    assert_eq!(code, 0, "{out}");

    // A worker that is down: status names it, and it fails the apply: named, with the tail
    // of its log, exit 1.
    on_host("docker stop e2e-tasks1-1");
    let (code, out) = synprov_run(dir.path(), &["status", "--json"], &first);
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let problems = report["deployments"][0]["problems"].to_string();
    assert!(
        problems.contains("tasks1 is unhealthy")
            && problems.contains("container of tasks1 is not running healthy"),
        "{out}"
    );
    let impatient = dir.path().join("impatient.toml");
    std::fs::write(
        &impatient,
        format!(
            "{}[rollout]\nhealth_timeout = 10\n",
            std::fs::read_to_string(&first).unwrap()
        ),
    )
    .unwrap();
    let (code, out) = synprov_run(dir.path(), &["apply"], &impatient);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("UNHEALTHY tasks1")
            && out.contains("last log lines of tasks1")
            && out.contains("1 listener(s) unhealthy"),
        "{out}"
    );

    // A change that breaks Synapse (a config value it refuses), with rollback_on_failure: the
    // host fails its health check, is rolled back at once, and is healthy on the old files.
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        format!("{}[deployments.e2e.homeserver]\nevent_cache_size = \"lots\"\n[rollout]\nhealth_timeout = 30\nrollback_on_failure = true\n", std::fs::read_to_string(&first).unwrap()),
    )
    .unwrap();
    let (code, out) = synprov_run(dir.path(), &["apply"], &broken);
    assert_eq!(code, 1, "a rolled-back apply still fails: {out}");
    assert!(
        out.contains("unhealthy: rolling back")
            && out.contains("rolled back, 16 listener(s) healthy"),
        "{out}"
    );
    let (code, out) = synprov_run(dir.path(), &["plan"], &first);
    assert_eq!(code, 0, "the old files are back: {out}");

    // Today's inventory has five room workers; generation 1 had four. Back to it with only
    // today's inventory at hand: its files, services and client flow are back, and history
    // shows every generation and the failed applies of the audit log.
    let (code, out) = synprov_run(dir.path(), &["apply"], &second);
    assert_eq!(code, 0, "{out}");
    assert!(containers().contains_key("rooms5"));
    let (code, out) = synprov_run(
        dir.path(),
        &["rollback", "--to", "1", "--host", "e2e"],
        &second,
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("e2e: back to generation 1") && out.contains("16 listener(s) healthy"),
        "{out}"
    );
    assert!(!containers().contains_key("rooms5"));
    let (code, out) = synprov_run(dir.path(), &["plan"], &first);
    assert_eq!(code, 0, "generation 1's files are back: {out}");
    matrix::conversation(
        &format!("http://{HOST_IP}:8008"),
        &secret,
        "e2e.example",
        "2",
    );
    let (code, out) = synprov_run(dir.path(), &["history", "--host", "e2e"], &second);
    assert_eq!(code, 0, "{out}");
    let generations: Vec<&str> = out.lines().filter(|l| l.contains(" UTC by ")).collect();
    assert!(generations.len() >= 4, "{out}");
    assert!(
        out.contains("rollback --to 1") && out.contains("failed"),
        "{out}"
    );

    upgrade_in_the_order_synapse_requires_and_back_with_the_database(dir.path(), &first, &secret);
    https_with_a_local_ca_and_a_certificate_change_that_reloads_nginx_only(
        dir.path(),
        &first,
        &secret,
    );
    certificates_from_an_acme_ca_issued_in_apply_and_renewed_on_the_host(
        dir.path(),
        &first,
        &secret,
    );
}

/// The same Synapse with another version label: an image to upgrade to.
const NEXT: &str = "synprov/synapse:1.163-next";

/// Each container's start (ns since the epoch) and image, by Compose service.
fn starts() -> std::collections::BTreeMap<String, (u128, String)> {
    on_host(
        "cd /opt/synapse/e2e && for c in $(docker compose ps -q); do \
         set -- $(docker inspect --format '{{index .Config.Labels \"com.docker.compose.service\"}} {{.State.StartedAt}} {{.Config.Image}}' \"$c\"); \
         echo \"$1 $(date -d \"$2\" +%s%N) $3\"; done",
    )
    .lines()
    .filter_map(|l| {
        let mut fields = l.split(' ');
        let (service, start, image) = (fields.next()?, fields.next()?, fields.next()?);
        Some((
            service.to_string(),
            (start.parse().unwrap(), image.to_string()),
        ))
    })
    .collect()
}

/// [`starts`] of the Synapse processes.
fn synapse_starts() -> std::collections::BTreeMap<String, (u128, String)> {
    starts()
        .into_iter()
        .filter(|(_, (_, image))| image.starts_with("synprov/synapse"))
        .collect()
}

/// The two figures of `MARK 12.3 of 590.0 MB` in the line of `out` that holds `mark`.
fn megabytes_of(out: &str, mark: &str) -> (f64, f64) {
    let line = out
        .lines()
        .find(|l| l.contains(mark))
        .unwrap_or_else(|| panic!("no line with {mark:?}: {out}"));
    let words: Vec<&str> = line.split_once(mark).unwrap().1.split(' ').collect();
    let figures = match words.as_slice() {
        [sent, "of", of, "MB", ..] => sent.parse().ok().zip(of.parse().ok()),
        _ => None,
    };
    figures.unwrap_or_else(|| panic!("no `X of Y MB` after {mark:?}: {line}"))
}

/// A Synapse upgrade: refused before anything is touched when the new image refuses the
/// config; then done in Synapse's order (database dumped, main healthy on the new image
/// before any worker starts); then undone with the database as it was before.
fn upgrade_in_the_order_synapse_requires_and_back_with_the_database(
    dir: &Path,
    first: &Path,
    secret: &str,
) {
    // One small layer on the running image: only that layer goes to the host.
    common::bed::build_image(
        NEXT,
        "FROM synprov/synapse:1.163\nRUN echo 1.163.2-next > /synprov-next\n\
         LABEL org.opencontainers.image.version=1.163.2-next\n",
    );
    let base = format!("http://{HOST_IP}:8008");
    let next = dir.join("next.toml");
    let today = std::fs::read_to_string(first).unwrap();
    std::fs::write(
        &next,
        today.replace("\"synprov/synapse:1.163\"", &format!("\"{NEXT}\"")),
    )
    .unwrap();
    let refused = dir.join("next-refused.toml");
    std::fs::write(
        &refused,
        format!(
            "{}[deployments.e2e.homeserver]\nevent_cache_size = \"lots\"\n",
            std::fs::read_to_string(&next).unwrap()
        ),
    )
    .unwrap();

    let (code, out) = synprov_run(dir, &["plan"], &next);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "upgrade Synapse synprov/synapse:1.163 -> {NEXT}: config check on the new image"
        )),
        "{out}"
    );
    let (sent, size) = megabytes_of(&out, &format!("+ load image {NEXT}: "));
    assert!(
        sent * 10.0 < size && out.contains("MB to send (layers the host has are skipped)"),
        "the plan sends the new layer alone: {out}"
    );

    let before = synapse_starts();
    let (code, out) = synprov_run(dir, &["apply"], &refused);
    assert_eq!(code, 1, "{out}");
    // The image goes before the config check refuses it: the new layer alone.
    let (sent, of) = megabytes_of(&out, &format!("loading image {NEXT}: "));
    assert!(
        sent * 10.0 < of && of >= size,
        "{sent} MB of {of} MB sent, the image is {size} MB: {out}"
    );
    assert!(
        out.contains("refuses the new config; nothing was changed")
            && out.contains("event_cache_size"),
        "Synapse's own message: {out}"
    );
    assert_eq!(synapse_starts(), before, "no process was touched");
    let (code, out) = synprov_run(dir, &["plan"], first);
    assert_eq!(code, 0, "no file was changed: {out}");

    let psql = |sql: &str| {
        on_host(&format!(
            "docker exec e2e-db-1 psql -U synapse -d synapse -tAc \"{sql}\""
        ))
    };
    // A one-time key a device uploaded: Synapse's backup guide says a restored one would be
    // handed out a second time, so neither the dump nor the restore may keep it.
    psql(
        "INSERT INTO e2e_one_time_keys_json (user_id, device_id, algorithm, key_id, ts_added_ms, key_json) \
         VALUES ('@alice2:e2e.example', 'DEV', 'signed_curve25519', 'AAAAAQ', 0, '{}')",
    );
    let (code, out) = synprov_run(dir, &["apply"], &next);
    assert_eq!(code, 0, "{out}");
    let dumped = out
        .lines()
        .find_map(|l| l.split_once("database dumped beside generation "))
        .map(|(_, n)| n.trim().to_string())
        .unwrap_or_else(|| panic!("no dump: {out}"));
    assert!(
        on_host(&format!(
            "test -s /opt/synapse/e2e/.synprov/generations/{dumped}/db.dump && echo dumped"
        ))
        .ends_with("dumped")
    );
    let after = synapse_starts();
    let (main_start, main_image) = &after["synapse"];
    assert_eq!(main_image, NEXT);
    for (service, (start, image)) in &after {
        assert_eq!(image, NEXT, "{service} runs the new image");
        if service != "synapse" {
            assert!(
                start > main_start,
                "{service} started after main: {after:?}"
            );
        }
    }
    matrix::conversation(&base, secret, "e2e.example", "3");
    // A table the dump does not have (as a newer Synapse's migrations would add).
    psql("CREATE TABLE created_after_the_dump (x int)");

    // The same tag rebuilt (another image ID behind it) is an upgrade too, in the same order.
    common::bed::build_image(
        NEXT,
        "FROM synprov/synapse:1.163\nLABEL org.opencontainers.image.version=1.163.3-rebuilt\n",
    );
    let rebuilt_id = String::from_utf8(
        std::process::Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", NEXT])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let (code, out) = synprov_run(dir, &["plan"], &next);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "upgrade Synapse {NEXT} (same tag, new image ID sha256:"
        )) && out.contains(&format!("-> {}..)", &rebuilt_id[..19])),
        "{out}"
    );
    let (code, out) = synprov_run(dir, &["apply"], &next);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("database dumped beside generation"), "{out}");
    let after = synapse_starts();
    let main_start = after["synapse"].0;
    assert!(
        after
            .iter()
            .all(|(service, (start, _))| service == "synapse" || *start > main_start),
        "every worker started after main: {after:?}"
    );
    assert_eq!(
        on_host("docker inspect --format '{{.Image}}' e2e-synapse-1 e2e-rooms1-1"),
        format!("{rebuilt_id}\n{rebuilt_id}"),
        "main and the workers run the rebuilt image"
    );

    // Back, with the database of before the first upgrade: the users registered since are
    // gone, those of before log in, and the table created since is gone too.
    let (code, out) = synprov_run(
        dir,
        &[
            "rollback",
            "--host",
            "e2e",
            "--to",
            dumped.as_str(),
            "--restore-db",
        ],
        &next,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        psql("SELECT count(*) FROM pg_tables WHERE tablename = 'created_after_the_dump'"),
        "0",
        "the database is exactly as dumped"
    );
    assert_eq!(
        psql("SELECT count(*) FROM e2e_one_time_keys_json"),
        "0",
        "no one-time key comes back from a dump"
    );
    assert!(
        out.contains(&format!(
            "restoring the database dumped beside generation {dumped}"
        )),
        "{out}"
    );
    assert!(
        synapse_starts()
            .values()
            .all(|(_, image)| image == "synprov/synapse:1.163")
    );
    assert!(matrix::logs_in(&base, "alice2"));
    assert!(
        !matrix::logs_in(&base, "alice3"),
        "alice3 came after the dump"
    );
}

/// Nginx serving HTTPS itself with a certificate of a CA made here: the client flow over
/// HTTPS with the chain verified against that CA alone, plain HTTP redirected, federation's
/// key endpoint on 8448; then a renewed certificate, which Nginx reloads with no container
/// recreated or restarted.
fn https_with_a_local_ca_and_a_certificate_change_that_reloads_nginx_only(
    dir: &Path,
    first: &Path,
    secret: &str,
) {
    let ca = common::tls::TestCa::new("synprov e2e CA");
    let issue = || {
        let (cert, key) = ca.issue(&[&format!("IP:{HOST_IP}")]);
        std::fs::write(dir.join("fullchain.pem"), &cert).unwrap();
        std::fs::write(dir.join("privkey.pem"), &key).unwrap();
        (cert, key)
    };
    let (cert, _) = issue();
    let tls = dir.join("tls.toml");
    let today = std::fs::read_to_string(first).unwrap();
    std::fs::write(
        &tls,
        format!(
            "{}[deployments.e2e.tls]\ncertificate = \"fullchain.pem\"\nkey = \"privkey.pem\"\n",
            today.replace(
                &format!("public_baseurl = \"http://{HOST_IP}:8008/\""),
                &format!("public_baseurl = \"https://{HOST_IP}/\""),
            )
        ),
    )
    .unwrap();
    let (code, out) = synprov_run(dir, &["apply"], &tls);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("16 listener(s) healthy"), "{out}");
    assert_eq!(
        on_host("stat -c '%a %U' /opt/synapse/e2e/nginx/tls-key.pem"),
        "600 root",
        "the key is root's alone"
    );

    let base = format!("https://{HOST_IP}");
    matrix::trust(&ca.pem());
    matrix::conversation(&base, secret, "e2e.example", "4");
    let versions = matrix::agent()
        .get(&format!("{base}/_matrix/client/versions"))
        .call()
        .unwrap();
    assert_eq!(
        versions.header("strict-transport-security"),
        Some("max-age=63072000")
    );
    assert_redirects_to(&base, HOST_IP);
    let keys = federation_keys(HOST_IP);
    assert_eq!(keys["server_name"], "e2e.example", "{keys}");
    assert_eq!(
        common::tls::served_certificate(HOST_IP, 443, HOST_IP, &ca.pem()),
        cert
    );

    // A renewed certificate: the plan shows it without the key, Nginx reloads it.
    let (renewed, renewed_key) = issue();
    let (code, out) = synprov_run(dir, &["plan"], &tls);
    assert_eq!(code, 2, "{out}");
    for expected in [
        "~ change nginx/tls-certificate.pem",
        "~ change nginx/tls-key.pem",
        "(TLS key: contents hidden)",
        "services reloaded for changed files: nginx",
    ] {
        assert!(out.contains(expected), "plan lacks {expected:?}:\n{out}");
    }
    assert!(!out.contains("recreated"), "{out}");
    assert!(
        !out.contains(renewed_key.lines().nth(1).unwrap()),
        "the key is never shown"
    );
    let before = starts();
    let (code, out) = synprov_run(dir, &["apply"], &tls);
    assert_eq!(code, 0, "{out}");
    assert_eq!(starts(), before, "no container recreated or restarted");
    let served = || common::tls::served_certificate(HOST_IP, 443, HOST_IP, &ca.pem());
    assert_eq!(
        wait_for_another_certificate(served, &cert, String::new),
        renewed
    );
}

/// Plain HTTP on port 80 for `path`, as a client of `host` sends it, redirects not followed.
fn plain_http(path: &str, host: &str) -> ureq::Response {
    ureq::AgentBuilder::new()
        .redirects(0)
        .build()
        .get(&format!("http://{HOST_IP}{path}"))
        .set("Host", host)
        .call()
        .unwrap()
}

/// Port 80 sends a client's request for `host` on to the same URI at `base` (301).
fn assert_redirects_to(base: &str, host: &str) {
    let redirect = plain_http("/_matrix/client/versions", host);
    assert_eq!(redirect.status(), 301);
    assert_eq!(
        redirect.header("location"),
        Some(format!("{base}/_matrix/client/versions").as_str())
    );
}

/// The server's keys, as federation fetches them on port 8448 of `host`.
fn federation_keys(host: &str) -> serde_json::Value {
    matrix::agent()
        .get(&format!("https://{host}:8448/_matrix/key/v2/server"))
        .call()
        .unwrap()
        .into_json()
        .unwrap()
}

/// What `served` gives once it no longer gives `old`: Nginx's reload is asynchronous, its
/// new workers take over within moments (10 s at most; `why` says more when they do not).
fn wait_for_another_certificate(
    served: impl Fn() -> String,
    old: &str,
    why: impl Fn() -> String,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = served();
        if now != old {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Nginx still serves the old certificate{}",
            why()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The name of the deployment in ACME mode, which the test's DNS points at the host.
const ACME_NAME: &str = "matrix.e2e.test";

/// The certificate Nginx serves on `port` for [`ACME_NAME`], verified against `root`.
fn served_for_acme_name(port: u16, root: &str) -> String {
    common::tls::served_certificate(HOST_IP, port, ACME_NAME, root)
}

/// The end of validity of certificate `pem`, as `status` shows it.
fn not_after(pem: &str) -> String {
    let cert = openssl::x509::X509::from_pem(pem.as_bytes()).unwrap();
    let diff = openssl::asn1::Asn1Time::from_unix(0)
        .unwrap()
        .diff(cert.not_after())
        .unwrap();
    let seconds = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    chrono::DateTime::from_timestamp(seconds, 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// The same deployment switched from certificate files to an ACME CA: Pebble on this
/// machine, whose validation reaches the host's port 80 through a DNS server of the
/// test's that knows [`ACME_NAME`] alone. The first apply issues the certificate through
/// the deployment's Nginx; clients verify it against Pebble's root on 443 and 8448; a
/// renewal forced on the host replaces it with no container recreated; a name the CA
/// cannot validate fails the apply with the CA's reason and leaves the deployment as it was.
fn certificates_from_an_acme_ca_issued_in_apply_and_renewed_on_the_host(
    dir: &Path,
    first: &Path,
    secret: &str,
) {
    let pebble = common::pebble::Pebble::start(dir, GATEWAY, &[(ACME_NAME, HOST_IP)]);
    std::fs::write(dir.join("pebble-https.pem"), &pebble.https_ca).unwrap();
    let today = std::fs::read_to_string(first).unwrap();
    let acme =
        |file: &str, names: &str| {
            let path = dir.join(file);
            std::fs::write(
            &path,
            format!(
                "{}[deployments.e2e.tls]\n[deployments.e2e.tls.acme]\nemail = \"admin@e2e.test\"\n\
                 directory = \"{}\"\nca_bundle = \"pebble-https.pem\"\n{names}",
                today
                    .replace(
                        &format!("public_baseurl = \"http://{HOST_IP}:8008/\""),
                        &format!("public_baseurl = \"https://{ACME_NAME}/\""),
                    )
                    .replace("preload = true\n", "preload = true\nacme = \"synprov/lego:4.9\"\n"),
                pebble.directory
            ),
        )
        .unwrap();
            path
        };
    let good = acme("acme.toml", "");
    let (code, out) = synprov_run(dir, &["apply"], &good);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("e2e: asking the ACME CA for its certificate")
            && out.contains(&format!("certificate: {ACME_NAME}, valid until"))
            && out.contains("a new certificate installed"),
        "{out}"
    );
    assert_eq!(
        on_host("stat -c '%a %U' /opt/synapse/e2e/tls/key.pem /opt/synapse/e2e/acme/state"),
        "600 root\n700 root",
        "the keys are root's alone"
    );
    assert_eq!(
        on_host(
            "systemctl is-enabled synprov-acme-e2e.timer && systemctl is-active synprov-acme-e2e.timer"
        ),
        "enabled\nactive",
        "the renewal runs twice a day on the host"
    );

    let root = pebble.issuing_root();
    matrix::trust_resolving(&root, &[(ACME_NAME, HOST_IP)]);
    let base = format!("https://{ACME_NAME}");
    matrix::conversation(&base, secret, "e2e.example", "5");
    let keys = federation_keys(ACME_NAME);
    assert_eq!(keys["server_name"], "e2e.example", "{keys}");
    let issued = served_for_acme_name(443, &root);
    assert_eq!(served_for_acme_name(8448, &root), issued);

    // Port 80 answers the CA's challenge path and redirects everything else.
    on_host(
        "mkdir -p /opt/synapse/e2e/acme-challenge/.well-known/acme-challenge && \
         echo probe-token > /opt/synapse/e2e/acme-challenge/.well-known/acme-challenge/probe",
    );
    let token = plain_http("/.well-known/acme-challenge/probe", ACME_NAME);
    assert_eq!(token.status(), 200);
    assert_eq!(token.into_string().unwrap(), "probe-token\n");
    on_host("rm /opt/synapse/e2e/acme-challenge/.well-known/acme-challenge/probe");
    assert_redirects_to(&base, ACME_NAME);

    // A plan saved before the renewal below (a new contact address for the CA).
    let contact = dir.join("acme-contact.toml");
    std::fs::write(
        &contact,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("admin@e2e.test", "hostmaster@e2e.test"),
    )
    .unwrap();
    let saved = dir.join("contact.plan");
    let (code, out) = synprov_run(dir, &["plan", "--out", saved.to_str().unwrap()], &contact);
    assert_eq!(code, 2, "{out}");

    // A renewal forced on the host, by the service the timer starts: a new certificate,
    // Nginx reloaded, no container recreated; status, the journal and the audit log show it.
    let before = starts();
    on_host(
        "systemctl set-environment SYNPROV_ACME_DAYS=36500 && \
         systemctl start synprov-acme-e2e.service; systemctl unset-environment SYNPROV_ACME_DAYS",
    );
    let renewed = wait_for_another_certificate(
        || served_for_acme_name(443, &root),
        &issued,
        || {
            format!(
                ": {}",
                on_host("journalctl -u synprov-acme-e2e --no-pager | tail -n 20")
            )
        },
    );
    assert_eq!(starts(), before, "no container recreated or restarted");
    assert!(
        on_host("journalctl -u synprov-acme-e2e --no-pager").contains("renewed, Nginx reloaded")
    );
    let (code, out) = synprov_run(dir, &["status"], &good);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "certificate: {ACME_NAME}, valid until {}",
            not_after(&renewed)
        )),
        "status shows the renewed certificate's expiry:\n{out}"
    );
    let (code, out) = synprov_run(dir, &["history", "--host", "e2e"], &good);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("acme renew"), "{out}");
    let (code, out) = synprov_run(dir, &["plan"], &good);
    assert_eq!(code, 0, "a renewal is no drift: {out}");
    let (code, out) = common::bed::run(dir, &[], &["apply"], &saved);
    assert_eq!(
        code, 0,
        "the plan made before the renewal still holds: {out}"
    );
    assert!(
        out.contains("a new certificate installed"),
        "lego registers the new address by issuing anew: {out}"
    );
    assert_eq!(starts(), before, "a new contact recreates nothing");
    let renewed = served_for_acme_name(443, &root);

    // A name the CA cannot validate: the CA's reason, and the deployment as it was.
    let refused = acme(
        "acme-refused.toml",
        &format!("names = [\"{ACME_NAME}\", \"nowhere.e2e.test\"]\n"),
    );
    let before = starts();
    let (code, out) = synprov_run(dir, &["apply"], &refused);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the ACME CA did not issue the certificate")
            && out.contains("nowhere.e2e.test")
            && out.contains("help: every name needs a DNS record")
            && out.contains("the certificate was refused: rolling back")
            && out.contains("rolled back"),
        "{out}"
    );
    assert_eq!(served_for_acme_name(443, &root), renewed);
    assert_eq!(starts(), before, "no container recreated or restarted");
    let (code, out) = synprov_run(dir, &["plan"], &contact);
    assert_eq!(code, 0, "the files are those of before: {out}");
}

/// A host whose only Compose is the distribution's legacy docker-compose v1: synprov
/// installs it (no v2 plugin to send) and deploys and verifies through it.
#[test]
fn e2e_a_host_with_compose_v1_only_is_deployed_through_it() {
    const NAME: &str = "synprov-e2e-v1";
    const ADDRESS: &str = "172.31.242.10";
    let dir = tempfile::tempdir().unwrap();
    let _bed = Bed::start(dir.path(), NAME, "172.31.242.0/24", &[(NAME, ADDRESS)]);
    let inventory = dir.path().join("v1.toml");
    std::fs::write(
        &inventory,
        format!(
            "[hosts.v1]\naddress = \"{ADDRESS}\"\nidentity_file = \"{}\"\nhost_key_checking = \"accept-new\"\n\n\
[deployments.v1]\nserver_name = \"v1.example\"\nhost = \"v1\"\n\
[deployments.v1.workers]\nrooms = 1\nsender = 1\n\
[deployments.v1.nginx]\nadmin_allow = [\"172.16.0.0/12\", \"127.0.0.1\"]\n\
[deployments.v1.images]\n{PRELOADED_IMAGES}",
            dir.path().join("key").display()
        ),
    )
    .unwrap();
    let run = || {
        common::bed::run(
            dir.path(),
            &[("SYNPROV_COMPOSE_PLUGIN", "none")],
            &["apply"],
            &inventory,
        )
    };
    let (code, out) = run();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("installing docker-compose (v1)") && out.contains("10 listener(s) healthy"),
        "{out}"
    );
    let version = common::bed::docker(&["exec", NAME, "docker-compose", "version", "--short"]);
    assert!(version.starts_with("1."), "legacy Compose: {version}");
    let (code, out) = run();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 change(s) applied"), "{out}");

    // Destroyed, then applied again: the same server comes back, with its data.
    let on_host = |script: &str| common::bed::docker(&["exec", NAME, "sh", "-c", script]);
    let base = format!("http://{ADDRESS}:8008");
    let deploy = "/opt/synapse/v1";
    let secret = matrix::shared_secret(&on_host(&format!("cat {deploy}/synapse/homeserver.yaml")));
    matrix::register(&base, "carol", &secret);
    let key = format!("cat {deploy}/synapse/v1.example.signing.key");
    let signing_key = on_host(&key);
    let (code, out) = common::bed::run(dir.path(), &[], &["destroy", "--host", "v1"], &inventory);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("v1: stack down, ")
            && out.contains(&format!(
                "kept in {deploy}: pgsql, media, .synprov/generations, .synprov/audit.log, \
                 synapse/v1.example.signing.key"
            )),
        "{out}"
    );
    assert_eq!(on_host("docker ps -aq"), "", "no container is left");
    assert_eq!(
        on_host(&format!("ls -A {deploy} | tr '\\n' ' '")),
        ".synprov media pgsql synapse",
        "only the data is left"
    );
    let (code, out) = run();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("10 listener(s) healthy"), "{out}");
    assert_eq!(on_host(&key), signing_key, "the same signing key");
    let carol = matrix::login(&base, "carol");
    let whoami = carol.call("GET", "/_matrix/client/v3/account/whoami", None);
    assert_eq!(whoami["user_id"], "@carol:v1.example", "the same database");

    // Out of the inventory (renamed, so in another directory): `plan` names the deployment
    // still on the host as an orphan and leaves it; `destroy` finds it in the host's index.
    let renamed = dir.path().join("renamed.toml");
    std::fs::write(
        &renamed,
        std::fs::read_to_string(&inventory)
            .unwrap()
            .replace("[deployments.v1", "[deployments.v2"),
    )
    .unwrap();
    let plan = |inventory: &Path| common::bed::run(dir.path(), &[], &["plan"], inventory);
    let (code, out) = plan(&renamed);
    assert_eq!(code, 2, "v2 is to create: {out}");
    assert!(
        out.contains(&format!(
            "? orphan: v1 in {deploy} is on the host but not in the inventory; left as it is"
        )),
        "{out}"
    );
    let (code, out) = common::bed::run(
        dir.path(),
        &[],
        &[
            "destroy",
            "--host",
            "v1",
            "--deployment",
            "v1",
            "--purge",
            "--yes",
        ],
        &renamed,
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(on_host("docker ps -aq"), "", "no container is left");
    assert_eq!(on_host("ls -A /opt/synapse"), "", "nothing of v1 is left");
    let (code, out) = plan(&renamed);
    assert!(code == 2 && !out.contains("orphan"), "{out}");
}
