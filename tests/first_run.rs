//! The README's first command, `scripts/first-run.sh`, run as a new user runs it: it gives a
//! working homeserver on a disposable host, prints the URL, the password file (0600) and the
//! command that removes it all; run again it changes nothing; the removal leaves nothing.
//!
//! Needs root and what the script installs itself (a Docker engine, Compose v2); it reuses
//! the images of `scripts/build-images.sh` by tag and this build's synprov (`SYNPROV`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

const HOST: &str = "synprov-first-run";
const URL: &str = "http://172.31.241.10:8008";

fn first_run(state: &Path, args: &[&str]) -> String {
    let output = Command::new("bash")
        .arg(common::root().join("scripts/first-run.sh"))
        .args(args)
        .env("SYNPROV", assert_cmd::cargo::cargo_bin("synprov"))
        .env("SYNPROV_FIRST_RUN_DIR", state)
        .output()
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "first-run.sh {args:?} failed:\n{text}"
    );
    text
}

fn logs_in(user: &str, password: &str) -> bool {
    ureq::post(&format!("{URL}/_matrix/client/v3/login"))
        .send_json(json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": user }, "password": password }))
        .is_ok()
}

#[test]
fn first_run_gives_a_working_homeserver_and_removes_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("first-run");
    // A leftover of an earlier, interrupted run of this test.
    first_run(&state, &["--remove"]);

    let out = first_run(&state, &[]);
    assert!(
        out.contains(&format!("Your homeserver is up: {URL}")),
        "{out}"
    );
    assert!(
        out.contains("client check: @demo:first-run.localhost registered, logged in"),
        "{out}"
    );
    let password_file = state.join("password");
    assert!(
        out.contains(&format!("password:   in {}", password_file.display())),
        "{out}"
    );
    assert!(
        out.contains("remove all: scripts/first-run.sh --remove"),
        "{out}"
    );
    let mode = std::fs::metadata(&password_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the password file's mode");
    let password = std::fs::read_to_string(&password_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(password.len() >= 24, "a random password, not {password:?}");
    assert!(!out.contains(&password), "the password was printed:\n{out}");
    let versions: Value = ureq::get(&format!("{URL}/_matrix/client/versions"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert!(versions["versions"].is_array(), "{versions}");
    assert!(logs_in("demo", &password));
    assert!(!logs_in("demo", "not-the-password"));

    // Again: the same homeserver, nothing changed, the same password.
    let again = first_run(&state, &[]);
    assert!(again.contains("no changes"), "{again}");
    assert!(
        again.contains("client check: @demo:first-run.localhost logged in"),
        "{again}"
    );
    assert_eq!(
        std::fs::read_to_string(&password_file).unwrap().trim(),
        password
    );

    let removed = first_run(&state, &["--remove"]);
    assert!(removed.contains("removed"), "{removed}");
    assert!(!state.exists(), "the state directory is left");
    for (kind, name) in [
        ("container", HOST),
        ("volume", "synprov-first-run-docker"),
        ("network", HOST),
    ] {
        assert!(
            !common::bed::succeeds(&[kind, "inspect", name]),
            "the {kind} {name} is left"
        );
    }
}
