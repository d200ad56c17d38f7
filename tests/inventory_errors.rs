//! Bad inventories: each prints file:line:column, the offending text and the fix, exits
//! non-zero, and writes nothing.

mod common;

use common::{inventory, synprov};

const HOST: &str = "[hosts.hs1]\naddress = \"203.0.113.10\"\n\n";

/// Runs `render` on `text`; asserts failure and that nothing was written; returns stderr.
fn render_fails(text: &str) -> String {
    let (dir, path) = inventory(text);
    let out = dir.path().join("out");
    let output = synprov(dir.path())
        .arg("render")
        .arg(&path)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected exit 1, stderr:\n{stderr}"
    );
    assert!(!out.exists(), "an invalid inventory must write nothing");
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

fn assert_mentions(stderr: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}:\n{stderr}"
        );
    }
}

#[test]
fn invalid_toml_is_located_and_explained() {
    let stderr = render_fails(&format!(
        "{HOST}[deployments.d]\nserver_name = \"example.org\nhost = \"hs1\"\n"
    ));
    assert_mentions(
        &stderr,
        &["inventory.toml:5:", "invalid TOML", "fix the TOML syntax"],
    );
}

#[test]
fn an_unknown_key_gets_a_did_you_mean() {
    let stderr = render_fails("[hosts.hs1]\nadress = \"203.0.113.10\"\n");
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:2:1",
            "unknown key `adress`",
            "adress = \"203.0.113.10\"",
            "did you mean `address`?",
        ],
    );
}

#[test]
fn a_value_of_the_wrong_type_is_refused() {
    let stderr = render_fails(&format!(
        "{HOST}[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs1\"\n[deployments.d.workers]\nrooms = \"four\"\n"
    ));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:8:9",
            "invalid type",
            "rooms = \"four\"",
            "expected type",
        ],
    );
}

#[test]
fn a_required_worker_count_of_zero_is_refused() {
    let stderr = render_fails(&format!(
        "{HOST}[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs1\"\n[deployments.d.workers]\nsender = 0\n"
    ));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:8:10",
            "sender needs at least one worker",
            "sender = 0",
            "set `sender = 4`",
        ],
    );
}

#[test]
fn a_table_defined_twice_is_refused() {
    let stderr = render_fails(&format!("{HOST}[hosts.hs1]\naddress = \"203.0.113.11\"\n"));
    assert_mentions(&stderr, &["inventory.toml:4:", "duplicate", "unique"]);
}

#[test]
fn two_deployments_with_one_server_name_are_refused() {
    let stderr = render_fails(&format!(
        "{HOST}[deployments.a]\nserver_name = \"example.org\"\nhost = \"hs1\"\n\n[deployments.b]\nserver_name = \"example.org\"\nhost = \"hs1\"\ndeploy_dir = \"/opt/b\"\n[deployments.b.nginx]\nhttp_port = 8009\n"
    ));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:9:15",
            "server_name `example.org` is already used by deployment `a`",
            "its own server_name",
        ],
    );
}

#[test]
fn a_host_referenced_but_not_defined_is_refused() {
    let stderr = render_fails(&format!(
        "{HOST}[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs2\"\n"
    ));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:6:8",
            "host `hs2` is not defined",
            "host = \"hs2\"",
            "did you mean `hs1`?",
        ],
    );
}

#[test]
fn an_invalid_server_name_is_refused() {
    let stderr = render_fails(&format!(
        "{HOST}[deployments.d]\nserver_name = \"exa mple.org\"\nhost = \"hs1\"\n"
    ));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:5:15",
            "invalid server_name `exa mple.org`",
            "e.g. \"example.org\"",
        ],
    );
}

#[test]
fn a_connection_budget_over_max_connections_is_refused() {
    let stderr = render_fails(&format!(
        "{HOST}[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs1\"\n[deployments.d.workers]\nrooms = 100\n[deployments.d.postgres]\nmax_connections = 200\n"
    ));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:10:19",
            "109 Synapse processes with cp_max = 6 may open 654 Postgres connections",
            "max_connections = 664",
        ],
    );
}

#[test]
fn check_reports_the_same_errors() {
    let (dir, path) = inventory("[hosts.hs1]\nadress = \"x\"\n");
    let output = synprov(dir.path())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("did you mean `address`?"));
}
