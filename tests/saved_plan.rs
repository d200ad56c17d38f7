//! Saved plans through the binary, over three real sshd hosts on loopback (`--files-only`
//! plans: the Docker side is the end-to-end tests'): `plan --out`, `show`, and `apply PLAN`
//! carrying out the plan reviewed or refusing it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::sshd::Sshd;
use common::synprov;

/// Three loopback hosts `hs1`..`hs3`, each with its own deployment, all in one directory
/// with the inventory, its known_hosts and the plan.
struct Hosts {
    servers: Vec<Sshd>,
    dir: tempfile::TempDir,
}

impl Hosts {
    fn start() -> Hosts {
        let servers: Vec<Sshd> = (0..3).map(|_| Sshd::start()).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut known_hosts = String::new();
        for server in &servers {
            known_hosts += &std::fs::read_to_string(server.path("known_hosts")).unwrap();
        }
        std::fs::write(dir.path().join("known_hosts"), known_hosts).unwrap();
        let hosts = Hosts { servers, dir };
        hosts.write_inventory("");
        hosts
    }

    fn inventory(&self) -> PathBuf {
        self.dir.path().join("fleet.toml")
    }

    fn plan(&self) -> PathBuf {
        self.dir.path().join("fleet.plan")
    }

    /// Writes the inventory, with `setting` (a line of TOML) in every deployment.
    fn write_inventory(&self, setting: &str) {
        let mut text = String::new();
        for (n, server) in (1..).zip(&self.servers) {
            text += &format!(
                "[hosts.hs{n}]\naddress = \"127.0.0.1\"\nport = {}\nuser = \"root\"\nidentity_file = \"{}\"\n\n\
                 [deployments.d{n}]\nserver_name = \"hs{n}.example\"\nhost = \"hs{n}\"\ndeploy_dir = \"{}\"\n{setting}\n\n",
                server.port,
                server.path("client_key").display(),
                self.homeserver(n)
                    .parent()
                    .unwrap()
                    .parent()
                    .unwrap()
                    .display()
            );
        }
        std::fs::write(self.inventory(), text).unwrap();
    }

    /// Host `n`'s `homeserver.yaml`, where its deployment lives.
    fn homeserver(&self, n: usize) -> PathBuf {
        (self.dir.path().join(format!("deploy-hs{n}"))).join("synapse/homeserver.yaml")
    }

    fn homeserver_text(&self, n: usize) -> String {
        std::fs::read_to_string(self.homeserver(n)).unwrap_or_default()
    }

    /// `synprov ARGS` in the hosts' directory; `--known-hosts` is added to the commands
    /// that connect.
    fn synprov(&self, args: &[&str]) -> Output {
        let mut command = synprov(self.dir.path());
        command.args(args);
        if args[0] != "show" {
            command
                .arg("--known-hosts")
                .arg(self.dir.path().join("known_hosts"));
        }
        command.output().unwrap()
    }

    /// `synprov ARGS`, which must fail saying `expected`; returns all it said.
    fn fails_saying(&self, args: &[&str], expected: &str) -> String {
        let output = self.synprov(args);
        let said = text(&output);
        assert_eq!(output.status.code(), Some(1), "{said}");
        assert!(said.contains(expected), "`{expected}` in:\n{said}");
        said
    }

    /// `synprov plan --files-only --out fleet.plan`, which must find changes.
    fn save_plan(&self) {
        let output = self.synprov(&["plan", "--files-only", "--out", "fleet.plan", "fleet.toml"]);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The secret values of a rendered deployment directory: those of `homeserver.yaml` and
/// the signing key's.
fn secrets(rendered: &Path) -> Vec<String> {
    let homeserver: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(rendered.join("synapse/homeserver.yaml")).unwrap(),
    )
    .unwrap();
    let mut values: Vec<String> = [
        "registration_shared_secret",
        "macaroon_secret_key",
        "form_secret",
        "worker_replication_secret",
    ]
    .iter()
    .map(|key| homeserver[*key].as_str().unwrap().to_string())
    .collect();
    values.push(
        homeserver["database"]["args"]["password"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let key = std::fs::read_to_string(rendered.join("synapse/hs1.example.signing.key")).unwrap();
    values.push(key.split_whitespace().last().unwrap().to_string());
    values
}

#[test]
fn a_saved_plan_applied_unchanged_writes_every_host_and_a_plan_of_nothing_is_a_no_op() {
    let hosts = Hosts::start();
    hosts.save_plan();
    let check = hosts.synprov(&["apply", "fleet.plan", "--dry-run"]);
    assert_eq!(check.status.code(), Some(2), "{}", text(&check));
    assert!(
        hosts.homeserver_text(1).is_empty(),
        "neither a plan nor a dry run writes anything"
    );

    let apply = hosts.synprov(&["apply", "fleet.plan"]);
    assert!(apply.status.success(), "{}", text(&apply));
    for n in 1..=3 {
        assert!(
            hosts.homeserver_text(n).contains(&format!("hs{n}.example")),
            "hs{n} was deployed: {}",
            text(&apply)
        );
    }

    let output = hosts.synprov(&["plan", "fleet.toml", "--files-only", "--out", "fleet.plan"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let again = hosts.synprov(&["apply", "fleet.plan"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again)
            .contains("fleet.plan: the plan changes nothing on its 3 host(s); nothing to apply"),
        "{}",
        text(&again)
    );
}

#[test]
fn a_file_edited_on_a_host_after_the_plan_refuses_the_plan_and_partial_applies_the_others() {
    let hosts = Hosts::start();
    let first = hosts.synprov(&["apply", "--files-only", "fleet.toml"]);
    assert!(first.status.success(), "{}", text(&first));
    hosts.write_inventory("admin_contact = \"mailto:admin@example.org\"");
    hosts.save_plan();
    let edited = hosts.homeserver_text(2) + "# edited by hand\n";
    std::fs::write(hosts.homeserver(2), &edited).unwrap();

    let path = hosts.homeserver(2).display().to_string();
    let says = hosts.fails_saying(
        &["apply", "fleet.plan"],
        &format!("hs2: {path} changed on the host since the plan (sha256 "),
    );
    assert!(
        says.contains("fleet.plan is refused on hs2: nothing was applied"),
        "{says}"
    );
    for n in [1, 3] {
        assert!(!hosts.homeserver_text(n).contains("admin@example.org"));
    }

    let partial = hosts.synprov(&["apply", "fleet.plan", "--partial"]);
    assert_eq!(
        partial.status.code(),
        Some(1),
        "hs2 failed: {}",
        text(&partial)
    );
    for n in [1, 3] {
        assert!(
            hosts.homeserver_text(n).contains("admin@example.org"),
            "hs{n} applied: {}",
            text(&partial)
        );
    }
    assert_eq!(hosts.homeserver_text(2), edited, "hs2 left as it is");
    let recap = String::from_utf8_lossy(&partial.stdout).into_owned();
    assert!(
        recap.lines().any(|l| l.starts_with("hs2 ")
            && l.contains("yes")
            && l.contains("changed on the host")),
        "{recap}"
    );
}

#[test]
fn a_plan_file_is_0600_and_holds_no_secret() {
    let hosts = Hosts::start();
    hosts.save_plan();
    let mode = std::fs::metadata(hosts.plan())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let plan = std::fs::read_to_string(hosts.plan()).unwrap();
    let rendered = common::render(&hosts.inventory());
    let found = secrets(&rendered.path().join("hs1/d1"));
    assert_eq!(found.len(), 6);
    for secret in &found {
        assert!(secret.len() >= 16, "a real secret: {secret}");
        assert!(!plan.contains(secret.as_str()), "{secret} is in the plan");
    }
    // The hashes are there instead.
    let homeserver = std::fs::read(rendered.path().join("hs1/d1/synapse/homeserver.yaml")).unwrap();
    let sha256 = sha256_hex(&homeserver);
    assert!(plan.contains(&sha256), "{plan}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_plan_too_old_or_of_a_changed_inventory_is_refused_whole() {
    let hosts = Hosts::start();
    hosts.save_plan();
    hosts.fails_saying(
        &["apply", "fleet.plan", "--max-age", "0s"],
        "older than --max-age 0s",
    );

    // Made two days ago: older than the default day.
    let mut plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hosts.plan()).unwrap()).unwrap();
    let created = chrono::Utc::now() - chrono::Duration::days(2);
    plan["created"] = created.to_rfc3339().into();
    std::fs::write(hosts.plan(), plan.to_string()).unwrap();
    hosts.fails_saying(&["apply", "fleet.plan"], "older than --max-age 1day");

    hosts.save_plan();
    hosts.write_inventory("admin_contact = \"mailto:admin@example.org\"");
    let inventory = hosts.inventory().canonicalize().unwrap();
    hosts.fails_saying(
        &["apply", "fleet.plan"],
        &format!(
            "inventory {} changed since fleet.plan was made",
            inventory.display()
        ),
    );
    for n in 1..=3 {
        assert!(hosts.homeserver_text(n).is_empty(), "nothing applied");
    }
}

#[test]
fn show_prints_a_saved_plan_as_plan_did_and_as_json() {
    let hosts = Hosts::start();
    hosts.save_plan();
    let show = hosts.synprov(&["show", "fleet.plan"]);
    assert_eq!(
        show.status.code(),
        Some(2),
        "changes pending: {}",
        text(&show)
    );
    let shown = String::from_utf8_lossy(&show.stdout);
    for expected in [
        "files only",
        "host hs1: ",
        "host hs3: ",
        "  facts: ",
        "    + create synapse/homeserver.yaml",
        "      sha256 absent -> ",
    ] {
        assert!(shown.contains(expected), "{expected}:\n{shown}");
    }

    let json = hosts.synprov(&["show", "fleet.plan", "--json"]);
    assert_eq!(json.status.code(), Some(2));
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(plan["format"], "synprov-plan");
    assert_eq!(plan["files_only"], true);
    let hosts_planned: Vec<&str> = (plan["hosts"].as_array().unwrap().iter())
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts_planned, ["hs1", "hs2", "hs3"]);
    let files = &plan["hosts"][0]["deployments"][0]["files"];
    assert!(
        files
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "synapse/homeserver.yaml" && f["change"] == "create"),
        "{files}"
    );

    hosts.fails_saying(&["show", "fleet.toml"], "fleet.toml is not a synprov plan");
}

/// `path` made a FIFO.
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_plan_file_that_is_a_fifo_a_device_or_huge_is_refused_without_reading_it() {
    let hosts = Hosts::start();
    mkfifo(&hosts.dir.path().join("fifo.plan"));
    // Sparse: a terabyte on paper, refused by its size before a byte is read.
    let huge = std::fs::File::create(hosts.dir.path().join("huge.plan")).unwrap();
    huge.set_len(1 << 40).unwrap();
    for command in ["show", "apply"] {
        for (plan, why) in [
            ("fifo.plan", "it is not a regular file"),
            ("/dev/zero", "it is not a regular file"),
            (
                "huge.plan",
                "it is 1099511627776 bytes, more than the limit of 16777216",
            ),
        ] {
            hosts.fails_saying(&[command, plan], &format!("cannot read {plan}: {why}"));
        }
    }
}

/// The saved plan's JSON, changed by `edit`, written back.
fn edit_plan(hosts: &Hosts, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hosts.plan()).unwrap()).unwrap();
    edit(&mut plan);
    std::fs::write(hosts.plan(), plan.to_string()).unwrap();
}

#[test]
fn a_plan_naming_a_fifo_or_a_device_as_its_inventory_is_refused_without_reading_it() {
    let hosts = Hosts::start();
    hosts.save_plan();
    let fifo = hosts.dir.path().join("fifo.toml");
    mkfifo(&fifo);
    for inventory in [fifo.as_path(), Path::new("/dev/zero")] {
        edit_plan(&hosts, |plan| {
            plan["inventory"] = inventory.to_str().unwrap().into()
        });
        hosts.fails_saying(
            &["apply", "fleet.plan"],
            &format!(
                "cannot read inventory {}: it is not a regular file",
                inventory.display()
            ),
        );
    }
}

#[test]
fn a_plan_with_a_line_break_or_an_escape_in_a_name_is_refused_and_never_printed() {
    let hosts = Hosts::start();
    hosts.save_plan();
    edit_plan(&hosts, |plan| {
        plan["hosts"][1]["host"] = "hs2\nhost hs9: no changes\x1b[2J".into();
    });
    for command in ["show", "apply"] {
        let said = hosts.fails_saying(
            &[command, "fleet.plan"],
            "fleet.plan is not a synprov plan: hosts[1].host holds the control character U+000A",
        );
        assert!(!said.contains("hs9") && !said.contains('\x1b'), "{said:?}");
    }
    hosts.save_plan();
    edit_plan(&hosts, |plan| {
        plan["inventory_sha256"] = "not a hash".into();
    });
    hosts.fails_saying(
        &["show", "fleet.plan"],
        "fleet.plan is not a synprov plan: its inventory_sha256 is not a SHA-256",
    );
}

#[test]
fn a_plan_made_with_roles_names_them_and_is_applied_with_those_templates_only() {
    let hosts = Hosts::start();
    let roles = hosts.dir.path().join("roles");
    let template = roles.join("synapse/templates/homeserver.yaml.hbs");
    std::fs::create_dir_all(template.parent().unwrap()).unwrap();
    let builtin = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("roles/synapse/templates/homeserver.yaml.hbs"),
    )
    .unwrap();
    std::fs::write(&template, format!("# reviewed\n{builtin}")).unwrap();
    let made = hosts.synprov(&[
        "plan",
        "--files-only",
        "--roles",
        "roles",
        "--out",
        "fleet.plan",
        "fleet.toml",
    ]);
    assert_eq!(made.status.code(), Some(2), "{}", text(&made));
    let roles_abs = roles.canonicalize().unwrap();
    let show = hosts.synprov(&["show", "fleet.plan"]);
    assert!(
        text(&show).contains(&format!(
            ", templates of --roles {} (sha256 ",
            roles_abs.display()
        )),
        "{}",
        text(&show)
    );

    // Without them, or with other ones: refused, nothing written.
    hosts.fails_saying(
        &["apply", "fleet.plan"],
        &format!(
            "fleet.plan was made with the templates of {} (sha256 ",
            roles_abs.display()
        ),
    );
    std::fs::write(&template, format!("# changed after review\n{builtin}")).unwrap();
    hosts.fails_saying(
        &["apply", "fleet.plan", "--roles", "roles"],
        "are not those fleet.plan was made with (sha256 ",
    );
    assert!(hosts.homeserver_text(1).is_empty(), "nothing applied");

    // With the templates reviewed: applied.
    std::fs::write(&template, format!("# reviewed\n{builtin}")).unwrap();
    let apply = hosts.synprov(&["apply", "fleet.plan", "--roles", "roles"]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert!(hosts.homeserver_text(1).starts_with("# reviewed\n"));

    // A plan of the built-in templates is not applied with others.
    hosts.save_plan();
    let show = hosts.synprov(&["show", "fleet.plan"]);
    assert!(
        text(&show).contains(", built-in templates"),
        "{}",
        text(&show)
    );
    hosts.fails_saying(
        &["apply", "fleet.plan", "--roles", "roles"],
        "fleet.plan was made with the built-in templates, and --roles roles replaces some",
    );
}
