//! End to end, the backups of a deployment, on three bare Debian host containers (systemd
//! and sshd, no Docker) on one private Docker network: A runs the homeserver, C holds its
//! restic repository over SFTP, B is where it comes back after A is gone.
//!
//! One test, in the order an operator lives it: deploy on A with `[backup]` to C; users
//! talk and upload media; the timer's service backs up by itself (audit log, `status`);
//! `synprov backup` again, and retention keeps one snapshot of the day (`backups`); the
//! restore drill passes (`backup verify`, `status`), and fails naming a damaged pack file;
//! host A removed entirely; `synprov restore` onto bare host B: the users log in with their
//! passwords, the messages and media are there, the server's key is the same, and the
//! one-time keys are gone.
//!
//! Needs a Docker engine and the locally built images (`scripts/build-images.sh`, which
//! builds synprov/restic:0.14 too). Run alone with `scripts/test.sh e2e_backup`.

mod common;

use std::path::{Path, PathBuf};

use common::bed::{self, Bed, Host, PRELOADED_IMAGES};
use common::matrix;
use serde_json::{Value, json};

const NETWORK: &str = "synprov-bk";
const SUBNET: &str = "172.31.250.0/24";
const A: (&str, &str) = ("synprov-bk-a", "172.31.250.11");
const B: (&str, &str) = ("synprov-bk-b", "172.31.250.12");
const C: (&str, &str) = ("synprov-bk-c", "172.31.250.13");
const RESTIC_IMAGE: &str = "synprov/restic:0.14";

/// The inventory with the deployment on `host` (`a` or `b`); C holds the repository.
fn inventory(dir: &Path, host: &str) -> PathBuf {
    let address = if host == "a" { A.1 } else { B.1 };
    let text = format!(
        "[defaults]\nidentity_file = \"{key}\"\nhost_key_checking = \"accept-new\"\n\n\
         [hosts.a]\naddress = \"{a}\"\n[hosts.b]\naddress = \"{b}\"\n[hosts.c]\naddress = \"{c}\"\n\n\
         [deployments.bk]\nserver_name = \"bk.example\"\npublic_baseurl = \"http://{address}:8008/\"\nhost = \"{host}\"\n\
         [deployments.bk.workers]\nrooms = 1\nsender = 1\n\
         [deployments.bk.images]\n{PRELOADED_IMAGES}\
         [deployments.bk.postgres]\nmax_connections = 100\n\
         [deployments.bk.nginx]\nadmin_allow = [\"172.16.0.0/12\"]\n\
         [deployments.bk.backup]\nsftp = \"c:/srv/restic/bk\"\nimage = \"{RESTIC_IMAGE}\"\n\
         [deployments.bk.backup.retention]\ndaily = 1\nweekly = 0\nmonthly = 0\n",
        key = dir.join("key").display(),
        a = A.1,
        b = B.1,
        c = C.1,
    );
    let path = dir.join(format!("on-{host}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `synprov ARGS` on `inventory`, asserting its exit code; returns what it printed.
fn synprov(dir: &Path, inventory: &Path, args: &[&str], code: i32) -> String {
    let (got, out) = bed::run(dir, &[], args, inventory);
    assert_eq!(got, code, "synprov {args:?} exits {code}:\n{out}");
    out
}

/// `synprov backup verify --host a` on `inventory`, asserting its exit code.
fn verify(dir: &Path, inventory: &Path, code: i32) -> String {
    let output = common::synprov(dir)
        .args(["backup", "verify", "--known-hosts"])
        .arg(dir.join("known_hosts"))
        .arg(inventory)
        .args(["--host", "a"])
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("synprov backup verify:\n{out}");
    assert_eq!(output.status.code(), Some(code), "{out}");
    out
}

/// A query's one value, in the deployment's Postgres on `host`.
fn sql(host: &Host, query: &str) -> String {
    host.exec(&format!(
        "docker exec bk-db-1 psql -U synapse -d synapse -tAc \"{query}\""
    ))
}

/// The server's published signing keys (`/_matrix/key/v2/server`): key ID to key.
fn server_keys(host: &Host, server_name: &str) -> Value {
    let keys: Value = matrix::agent()
        .get(&format!("{}/_matrix/key/v2/server", host.url(8008)))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(keys["server_name"], server_name, "{keys}");
    keys["verify_keys"].clone()
}

/// The inventory of `old`, a homeserver on host C; with `imported`, naming the secrets
/// `synprov import` took from it.
fn old_inventory(dir: &Path, imported: bool) -> PathBuf {
    let text = format!(
        "[defaults]\nidentity_file = \"{key}\"\nhost_key_checking = \"accept-new\"\n\n\
         [hosts.c]\naddress = \"{c}\"\n\n\
         [deployments.old]\nserver_name = \"old.example\"\npublic_baseurl = \"http://{c}:8008/\"\nhost = \"c\"\n{imported}\
         [deployments.old.workers]\nrooms = 1\nsender = 1\n\
         [deployments.old.images]\n{PRELOADED_IMAGES}\
         [deployments.old.postgres]\nmax_connections = 100\n\
         [deployments.old.nginx]\nadmin_allow = [\"172.16.0.0/12\"]\n",
        key = dir.join("key").display(),
        c = C.1,
        imported = if imported {
            "imported = \"old.imported.toml\"\n"
        } else {
            ""
        },
    );
    let path = dir.join("old.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `docker exec -i CONTAINER sh -c SCRIPT` reading `input`'s standard output.
fn pipe(input: &mut std::process::Command, container: &str, script: &str) {
    use std::process::Stdio;
    let mut from = input.stdout(Stdio::piped()).spawn().unwrap();
    let status = std::process::Command::new("docker")
        .args(["exec", "-i", container, "sh", "-c", script])
        .stdin(Stdio::from(from.stdout.take().unwrap()))
        .status()
        .unwrap();
    assert!(
        from.wait().unwrap().success() && status.success(),
        "{script}"
    );
}

/// A homeserver deployed on C by a plain script, as the guide does it by hand: Docker from
/// the distribution, the Compose plugin and the images copied over, the guide's files
/// (rendered with another master key: its own signing key and secrets) and `compose up`.
fn deploy_by_hand(dir: &Path, c: &Host) {
    c.exec(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
         --no-install-recommends docker.io >/dev/null",
    );
    let plugin = std::fs::canonicalize(
        PathBuf::from(std::env::var("HOME").unwrap()).join(".docker/cli-plugins/docker-compose"),
    )
    .expect("the Compose v2 plugin: scripts/install-compose.sh");
    pipe(
        std::process::Command::new("cat").arg(plugin),
        C.0,
        "install -D -m 755 /dev/stdin /usr/local/lib/docker/cli-plugins/docker-compose",
    );
    pipe(
        std::process::Command::new("docker")
            .arg("save")
            .args(&bed::IMAGES[1..]),
        C.0,
        "docker load -q >/dev/null",
    );
    let rendered = dir.join("rendered-old");
    let output = common::synprov(dir)
        .env(
            "SYNPROV_MASTER_KEY",
            "another-master-key-of-the-old-deployment-42",
        )
        .arg("render")
        .arg(old_inventory(dir, false))
        .arg("--out")
        .arg(&rendered)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    pipe(
        std::process::Command::new("tar")
            .arg("-C")
            .arg(rendered.join("c/old"))
            .args(["-c", "."]),
        C.0,
        "mkdir -p /opt/synapse/old && tar -C /opt/synapse/old -x && cd /opt/synapse/old && \
         mkdir -p media sockets redis && chmod 777 sockets && \
         logs=$(grep -o '\\./logs/[^:]*' docker-compose.yml | sort -u) && mkdir -p $logs && \
         chown -R 1000:1000 synapse media redis $(printf '%s\\n' $logs | grep -v /nginx) && \
         docker compose -f docker-compose.yml up -d --wait >/dev/null 2>&1",
    );
}

/// What the users did on A, to be found again on B.
struct Conversation {
    room: String,
    media: String,
}

const MEDIA: &[u8] = b"a picture of the old host";

/// alice and bob register; alice makes a room with bob, writes, uploads media and
/// publishes one-time keys for her device.
fn converse(host: &Host) -> Conversation {
    let config = host.exec("cat /opt/synapse/bk/synapse/homeserver.yaml");
    let secret = matrix::shared_secret(&config);
    let base = host.url(8008);
    let alice = matrix::register(&base, "alice", &secret);
    matrix::register(&base, "bob", &secret);
    let room = alice.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(json!({ "invite": ["@bob:bk.example"], "name": "before the move" })),
    )["room_id"]
        .as_str()
        .unwrap()
        .to_string();
    let encoded = room.replace('!', "%21").replace(':', "%3A");
    alice.call(
        "PUT",
        &format!("/_matrix/client/v3/rooms/{encoded}/send/m.room.message/t1"),
        Some(json!({ "msgtype": "m.text", "body": "hello from host A" })),
    );
    let upload: Value = matrix::agent()
        .post(&format!("{base}/_matrix/media/v3/upload?filename=a.txt"))
        .set("Authorization", &format!("Bearer {}", alice.token))
        .set("Content-Type", "text/plain")
        .send_bytes(MEDIA)
        .unwrap()
        .into_json()
        .unwrap();
    let keys = alice.call(
        "POST",
        "/_matrix/client/v3/keys/upload",
        Some(json!({ "one_time_keys": {
            "signed_curve25519:AAAAAQ": { "key": "one", "signatures": {} },
            "curve25519:AAAAAg": "two"
        } })),
    );
    assert!(keys["one_time_key_counts"].is_object(), "{keys}");
    Conversation {
        room,
        media: upload["content_uri"]
            .as_str()
            .unwrap()
            .trim_start_matches("mxc://")
            .to_string(),
    }
}

/// The conversation as a client finds it on `host`: alice logs in with her password, reads
/// her message, downloads her media.
fn find_again(host: &Host, conversation: &Conversation) {
    let base = host.url(8008);
    assert!(
        matrix::logs_in(&base, "bob"),
        "bob logs in with his password"
    );
    let alice = matrix::login(&base, "alice");
    let encoded = conversation.room.replace('!', "%21").replace(':', "%3A");
    let messages = alice.call(
        "GET",
        &format!("/_matrix/client/v3/rooms/{encoded}/messages?dir=b&limit=20"),
        None,
    );
    assert!(
        messages.to_string().contains("hello from host A"),
        "{messages}"
    );
    let media = matrix::agent()
        .get(&format!(
            "{base}/_matrix/client/v1/media/download/{}",
            conversation.media
        ))
        .set("Authorization", &format!("Bearer {}", alice.token))
        .call()
        .unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut media.into_reader(), &mut bytes).unwrap();
    assert_eq!(bytes, MEDIA);
}

#[test]
fn a_homeserver_backed_up_to_another_host_comes_back_on_a_third() {
    bed::require_image(RESTIC_IMAGE);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let bed = Bed::start(dir, NETWORK, SUBNET, &[A, B, C]);
    let [a, b, c] = [&bed.hosts[0], &bed.hosts[1], &bed.hosts[2]];
    let on_a = inventory(dir, "a");

    // Deployed on A, the backup key is made there and authorised on C.
    let out = synprov(dir, &on_a, &["apply", "--limit", "a"], 0);
    assert!(
        out.contains("bk: backup key authorised for root@c"),
        "{out}"
    );
    let authorised = c.exec("cat /root/.ssh/authorized_keys");
    let public = a.exec("cat /opt/synapse/bk/.synprov/backup/ssh/id_ed25519.pub");
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    assert!(
        authorised.contains(&format!("restrict {} {}", public[0], public[1])),
        "{authorised}"
    );
    assert!(
        !out.contains("PRIVATE KEY"),
        "the private key is never printed"
    );
    for timer in ["synprov-backup-bk.timer", "synprov-backup-verify-bk.timer"] {
        assert_eq!(a.exec(&format!("systemctl is-enabled {timer}")), "enabled");
        assert_eq!(a.exec(&format!("systemctl is-active {timer}")), "active");
    }
    let out = synprov(dir, &on_a, &["apply", "--limit", "a"], 0);
    assert!(
        out.contains("host a: no changes") && !out.contains("authorised"),
        "a second apply changes nothing and leaves C alone: {out}"
    );
    let conversation = converse(a);
    assert_ne!(sql(a, "SELECT count(*) FROM e2e_one_time_keys_json"), "0");
    let keys = server_keys(a, "bk.example");

    // The timer's service, started on the host as the timer does: a real restic backup.
    a.exec("systemctl start synprov-backup-bk.service");
    let out = synprov(dir, &on_a, &["history", "--host", "a"], 0);
    assert!(
        out.contains("backup (timer)") && out.contains("backup ok: snapshot"),
        "{out}"
    );
    let out = synprov(dir, &on_a, &["status", "--limit", "a"], 0);
    assert!(out.contains("last good backup: "), "{out}");
    assert!(!out.contains("warning:"), "a fresh backup: {out}");

    // A backup now, by hand; retention (one a day) keeps the newer snapshot only.
    let out = synprov(dir, &on_a, &["backup", "--host", "a"], 0);
    assert!(out.contains("[a] bk: backing up... ok in "), "{out}");
    let out = synprov(dir, &on_a, &["backups", "--host", "a"], 0);
    assert!(out.contains("bk (1 snapshot(s)):"), "{out}");
    let snapshot_line = out.lines().last().unwrap();
    assert!(
        snapshot_line.trim_end().ends_with(" 1"),
        "taken at generation 1: {out}"
    );

    // The restore drill passes, and shows in status.
    let out = verify(dir, &on_a, 0);
    assert!(
        out.contains("the dump loads, schema version ")
            && out.contains("2 users (live 2)")
            && out.contains("1 media files as stored"),
        "{out}"
    );
    assert_eq!(
        sql(
            a,
            "SELECT count(*) FROM pg_database WHERE datname = 'synprov_drill'"
        ),
        "0",
        "the scratch database is gone"
    );
    let out = synprov(dir, &on_a, &["status", "--limit", "a"], 0);
    assert!(out.contains("last restore drill: "), "{out}");

    // A damaged pack file fails the drill, named.
    let pack = c.exec("find /srv/restic/bk/data -type f -size +1k | head -n 1");
    let id = pack.rsplit('/').next().unwrap().to_string();
    c.exec(&format!(
        "cp -p {pack} /root/pack.orig && chmod u+w {pack} && \
         printf 'XXXXXXXX' | dd of={pack} bs=1 seek=100 conv=notrunc 2>/dev/null"
    ));
    let out = verify(dir, &on_a, 1);
    assert!(
        out.contains(&format!("damaged pack file: data/{}/{id}", &id[..2])),
        "{out}"
    );
    let out = synprov(dir, &on_a, &["status", "--limit", "a"], 1);
    assert!(out.contains("the last restore drill"), "{out}");
    c.exec(&format!("cp -p /root/pack.orig {pack}"));

    // Host A is gone; the inventory names bare host B for the deployment.
    bed::docker(&["rm", "-f", "-v", A.0]);
    bed::docker(&["volume", "rm", "-f", &format!("{}-docker", A.0)]);
    let on_b = inventory(dir, "b");
    let out = synprov(
        dir,
        &on_b,
        &["restore", "--host", "b", "--deployment", "bk"],
        0,
    );
    assert!(out.contains("bk: restored from snapshot latest"), "{out}");
    find_again(b, &conversation);
    assert_eq!(
        server_keys(b, "bk.example"),
        keys,
        "the same key ID and key"
    );
    assert_eq!(sql(b, "SELECT count(*) FROM e2e_one_time_keys_json"), "0");
    // Restored, not applied over: a second restore is refused.
    let out = synprov(
        dir,
        &on_b,
        &["restore", "--host", "b", "--deployment", "bk"],
        1,
    );
    assert!(out.contains("already runs `bk`"), "{out}");

    // A homeserver deployed by hand on C, with its own key and secrets, taken over.
    deploy_by_hand(dir, c);
    let config = c.exec("cat /opt/synapse/old/synapse/homeserver.yaml");
    matrix::register(&c.url(8008), "carol", &matrix::shared_secret(&config));
    let old_keys = server_keys(c, "old.example");
    let old = old_inventory(dir, false);
    let out = synprov(
        dir,
        &old,
        &["import", "--host", "c", "--deployment", "old"],
        0,
    );
    assert!(out.contains("old.imported.toml (0600)"), "{out}");
    let macaroon = config
        .lines()
        .find_map(|l| l.strip_prefix("macaroon_secret_key: "))
        .unwrap()
        .trim_matches('\'');
    assert!(!out.contains(macaroon), "no secret is printed: {out}");
    let imported = dir.join("old.imported.toml");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&imported).unwrap().permissions()
        ) & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&imported)
            .unwrap()
            .contains(macaroon)
    );
    let old = old_inventory(dir, true);
    let out = synprov(dir, &old, &["plan"], 2);
    assert!(
        !out.contains("signing.key") && !out.contains(macaroon),
        "the key is kept and no secret shown: {out}"
    );
    synprov(dir, &old, &["apply"], 0);
    assert_eq!(server_keys(c, "old.example"), old_keys, "the same key");
    assert!(
        matrix::logs_in(&c.url(8008), "carol"),
        "carol still logs in"
    );
    synprov(dir, &old, &["plan"], 0);
}
