//! Bad inventories: each prints file:line:column, the offending text and the fix, exits
//! non-zero, and writes nothing.

mod common;

use common::{inventory, synprov};

const HOST: &str = "[hosts.hs1]\naddress = \"203.0.113.10\"\n\n";

/// Runs `render` on `text`; asserts failure and that nothing was written; returns stderr.
fn render_fails(text: &str) -> String {
    render_fails_beside(text, &[])
}

/// [`render_fails`] with `files` (name, contents) written beside the inventory.
fn render_fails_beside(text: &str, files: &[(&str, &str)]) -> String {
    let (dir, path) = inventory(text);
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).unwrap();
    }
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
fn a_pinned_postgres_size_postgres_could_not_read_is_refused() {
    let stderr = render_fails(&format!(
        "{HOST}[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs1\"\n[deployments.d.postgres]\nshared_buffers = \"2 GB\"\n"
    ));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:8:18",
            "invalid shared_buffers \"2 GB\"",
            "one of kB, MB, GB or TB",
            "e.g. \"2GB\" or \"512MB\"",
        ],
    );
}

#[test]
fn a_pinned_postgres_size_below_what_postgres_starts_with_is_refused() {
    let stderr = render_fails(&format!(
        "{HOST}[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs1\"\n[deployments.d.postgres]\nwork_mem = \"1kB\"\n"
    ));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:8:12",
            "invalid work_mem \"1kB\": Postgres refuses work_mem below 64kB",
        ],
    );
}

#[test]
fn a_pool_beyond_what_postgres_takes_is_refused_without_a_pinned_max_connections() {
    let stderr = render_fails(&format!(
        "{HOST}[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs1\"\n[deployments.d.workers]\nrooms = 1000\n[deployments.d.postgres]\ncp_max = 1000\n"
    ));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:10:10",
            "more than Postgres' ceiling of 262143 connections allows",
            "lower cp_max to 259 or less",
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

/// A deployment on hs1 with `extra` added to its table (and `tail` after it).
fn deployment(extra: &str, tail: &str) -> String {
    format!("{HOST}[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs1\"\n{extra}\n{tail}")
}

#[test]
fn a_deploy_dir_with_shell_syntax_is_refused_before_any_command_is_built() {
    let stderr = render_fails(&deployment(
        "deploy_dir = \"/opt/x;touch${IFS}/tmp/pwned;\"",
        "",
    ));
    assert_mentions(&stderr, &["inventory.toml:7:", "invalid deploy_dir", "';'"]);
    let stderr = render_fails(&deployment("deploy_dir = \"/opt/it's\"", ""));
    assert_mentions(&stderr, &["invalid deploy_dir", "'\\''"]);
}

#[test]
fn system_directories_are_not_deploy_directories() {
    for dir in ["/etc", "/.", "/", "/opt", "/usr/lib/synapse"] {
        let stderr = render_fails(&deployment(&format!("deploy_dir = \"{dir}\""), ""));
        assert_mentions(&stderr, &["inventory.toml:7:", "invalid deploy_dir"]);
    }
}

#[test]
fn two_spellings_of_one_deploy_dir_are_one_directory() {
    for (a, b) in [
        ("/opt/s/a", "/opt/s//a"),
        ("/opt/s/a", "/opt/s/./a"),
        ("/opt/s", "/opt/s/a"),
    ] {
        let stderr = render_fails(&format!(
            "{HOST}[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs1\"\ndeploy_dir = \"{a}\"\n\n\
             [deployments.e]\nserver_name = \"example.com\"\nhost = \"hs1\"\ndeploy_dir = \"{b}\"\n[deployments.e.nginx]\nhttp_port = 8009\n"
        ));
        assert_mentions(
            &stderr,
            &["inventory.toml:12:", "overlaps", "deployment `d`"],
        );
    }
}

#[test]
fn admin_allow_and_trusted_proxies_take_addresses_only() {
    let stderr = render_fails(&deployment(
        "[deployments.d.nginx]\nadmin_allow = [\"all; allow 0.0.0.0/0\"]",
        "",
    ));
    assert_mentions(
        &stderr,
        &["inventory.toml:8:", "invalid admin_allow", "CIDR"],
    );
    let stderr = render_fails(&deployment(
        "[deployments.d.nginx]\ntrusted_proxies = [\"10.0.0.1;\\nallow all\"]",
        "",
    ));
    assert_mentions(&stderr, &["inventory.toml:8:", "invalid trusted_proxies"]);
}

#[test]
fn trusting_every_proxy_is_a_located_warning_not_an_error() {
    let (dir, path) = inventory(&deployment(
        "[deployments.d.nginx]\ntrusted_proxies = [\"0.0.0.0/0\"]",
        "",
    ));
    let output = synprov(dir.path())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:8:",
            "warning",
            "X-Forwarded-For",
            "admin_allow",
        ],
    );
}

#[test]
fn a_time_zone_is_an_iana_name_and_nothing_more() {
    let stderr = render_fails(&deployment(
        "timezone = \"Etc/UTC'\\narchive_command = 'touch /tmp/pwned\"",
        "",
    ));
    assert_mentions(&stderr, &["inventory.toml:7:", "invalid timezone", "IANA"]);
    let stderr = render_fails(&deployment("timezone = \"UTC\\nLD_PRELOAD=/x.so\"", ""));
    assert_mentions(&stderr, &["invalid timezone"]);
}

#[test]
fn image_references_follow_the_oci_grammar_so_compose_interpolates_nothing() {
    let stderr = render_fails(&deployment(
        "[deployments.d.images]\nsynapse = \"evil/${HOME}:latest\"",
        "",
    ));
    assert_mentions(&stderr, &["inventory.toml:8:", "invalid image", "e.g."]);
}

#[test]
fn numbers_that_would_wrap_or_panic_are_refused_with_their_range() {
    let stderr = render_fails(&deployment(
        "[deployments.d.postgres]\ncp_max = 330382100",
        "",
    ));
    assert_mentions(
        &stderr,
        &["inventory.toml:8:", "cp_max = 330382100", "1-1000"],
    );
    let stderr = render_fails(&format!(
        "{}\n[rollout]\nhealth_timeout = 18446744073709551615\n",
        deployment("", "")
    ));
    assert_mentions(&stderr, &["health_timeout", "outside 1-86400"]);
    let stderr = render_fails(&format!("{}\n[rollout]\nbatch = 0\n", deployment("", "")));
    assert_mentions(&stderr, &["batch of 0"]);
}

/// Two hosts with private addresses and a deployment `d` spread over them, plus `extra`.
fn spread(extra: &str) -> String {
    format!(
        "[hosts.a]\naddress = \"203.0.113.1\"\nprivate_address = \"10.0.0.1\"\n\
         [hosts.b]\naddress = \"203.0.113.2\"\nprivate_address = \"10.0.0.2\"\n\
         [deployments.d]\nserver_name = \"example.org\"\nhost = \"a\"\n{extra}\n[deployments.d.placement]\nrooms = \"b\"\n"
    )
}

#[test]
fn listener_ports_stay_in_range_and_clear_of_other_services() {
    let stderr = render_fails(&spread("port_base = 65530"));
    assert_mentions(
        &stderr,
        &["inventory.toml:10:", "outside 1024-65535", "port_base"],
    );
    let stderr = render_fails(&spread("port_base = 5420"));
    assert_mentions(&stderr, &["overlaps Postgres", "port 5432"]);
    let stderr = render_fails(&format!(
        "{}[deployments.e]\nserver_name = \"example.com\"\nhost = \"b\"\nport_base = 9110\n[deployments.e.placement]\nmedia = \"a\"\n",
        spread("")
    ));
    assert_mentions(
        &stderr,
        &["overlaps the listeners of deployment `d`", "ports 9100-"],
    );
}

#[test]
fn names_that_escape_a_directory_or_that_compose_refuses_are_refused() {
    let stderr = render_fails("[hosts.\"..\"]\naddress = \"203.0.113.10\"\n");
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:1:",
            "invalid host name",
            "start with a letter",
        ],
    );
    for name in ["-x", "_x"] {
        let stderr = render_fails(&format!(
            "{HOST}[deployments.\"{name}\"]\nserver_name = \"example.org\"\nhost = \"hs1\"\n"
        ));
        assert_mentions(&stderr, &["inventory.toml:4:", "invalid deployment name"]);
    }
}

#[test]
fn homeserver_values_yaml_or_synapse_would_misread_are_refused() {
    for (setting, needle) in [
        ("\"<<\" = { a = 1 }", "merge key"),
        ("when = 1979-05-27T07:32:00Z", "date or time"),
        ("ratio = nan", "NaN"),
    ] {
        let stderr = render_fails(&deployment(
            &format!("[deployments.d.homeserver]\n{setting}"),
            "",
        ));
        assert_mentions(&stderr, &["inventory.toml:7:", needle]);
    }
}

#[test]
fn a_fifo_as_the_inventory_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("inventory.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo (coreutils) is needed for this test");
    // A hang here would be the bug: nextest's slow-timeout ends it.
    let output = synprov(dir.path())
        .arg("check")
        .arg(&fifo)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_mentions(&stderr, &["not a regular file"]);
}

const TLS: &str = "[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs1\"\n\
[deployments.d.tls]\ncertificate = \"fullchain.pem\"\nkey = \"privkey.pem\"\n";

#[test]
fn a_tls_file_missing_or_not_pem_is_refused_naming_its_key() {
    let ca = common::tls::TestCa::new("test CA");
    let (cert, key) = ca.issue(&["example.org"]);
    let stderr = render_fails_beside(&format!("{HOST}{TLS}"), &[("fullchain.pem", &cert)]);
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:9:",
            "TLS key: cannot read",
            "privkey.pem",
            "unusable key",
        ],
    );
    let stderr = render_fails_beside(
        &format!("{HOST}{TLS}"),
        &[("fullchain.pem", &key), ("privkey.pem", &key)],
    );
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:8:",
            "holds no PEM certificate",
            "fullchain.pem",
        ],
    );
    assert!(
        !stderr.contains("PRIVATE KEY-----\n"),
        "the key is never printed"
    );
    let stderr = render_fails_beside(
        &format!("{HOST}{TLS}"),
        &[("fullchain.pem", &cert), ("privkey.pem", &cert)],
    );
    assert_mentions(
        &stderr,
        &["inventory.toml:9:", "holds no unencrypted PEM private key"],
    );
}

#[test]
fn a_tls_key_of_another_certificate_is_refused() {
    let ca = common::tls::TestCa::new("test CA");
    let (cert, _) = ca.issue(&["example.org"]);
    let (_, other_key) = ca.issue(&["example.org"]);
    let stderr = render_fails_beside(
        &format!("{HOST}{TLS}"),
        &[("fullchain.pem", &cert), ("privkey.pem", &other_key)],
    );
    assert_mentions(
        &stderr,
        &["inventory.toml:9:", "is not the key of the certificate"],
    );
    assert!(
        !stderr.contains(other_key.lines().nth(1).unwrap()),
        "the key is never printed"
    );
}

#[test]
fn tls_needs_an_https_public_baseurl_and_a_known_federation_mode() {
    let text = format!("{HOST}{TLS}").replace(
        "host = \"hs1\"\n",
        "host = \"hs1\"\npublic_baseurl = \"http://matrix.example.org/\"\n",
    );
    let stderr = render_fails(&text);
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:7:",
            "is not https, but Nginx serves HTTPS",
            "must be https://",
        ],
    );
    let ca = common::tls::TestCa::new("test CA");
    let (cert, key) = ca.issue(&["example.org"]);
    let stderr = render_fails_beside(
        &format!("{HOST}{TLS}federation = \"443\"\n"),
        &[("fullchain.pem", &cert), ("privkey.pem", &key)],
    );
    assert_mentions(
        &stderr,
        &["unknown federation mode `443`", "\"well-known\""],
    );
}

/// `synprov check` of `text` with the TLS pair `(cert, key)` beside it, which must pass:
/// its stdout and stderr.
fn check_with_tls(text: &str, (cert, key): (String, String)) -> (String, String) {
    let (dir, path) = inventory(text);
    std::fs::write(dir.path().join("fullchain.pem"), cert).unwrap();
    std::fs::write(dir.path().join("privkey.pem"), key).unwrap();
    let output = synprov(dir.path())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(output.status.success(), "{stdout}{stderr}");
    (stdout, stderr)
}

#[test]
fn check_shows_where_nginx_serves_https_and_until_when_the_certificate_is_valid() {
    let pair = common::tls::TestCa::new("test CA").issue(&["example.org"]);
    let key_line = pair.1.lines().nth(1).unwrap().to_string();
    let (stdout, stderr) =
        check_with_tls(&format!("{HOST}{TLS}federation = \"well-known\"\n"), pair);
    assert!(
        stdout.contains("nginx              HTTPS on 443, federation delegated by /.well-known/matrix/server, HTTP on 80 redirected; certificate valid until "),
        "{stdout}"
    );
    assert!(!stdout.contains(&key_line) && !stderr.contains(&key_line));
}

#[test]
fn an_expired_tls_certificate_is_a_located_warning_not_an_error() {
    let pair = common::tls::TestCa::new("test CA").issue_for(&["example.org"], -30..-1);
    let (_, stderr) = check_with_tls(&format!("{HOST}{TLS}"), pair);
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:8:",
            "warning",
            "the TLS certificate expired on",
            "renew it",
        ],
    );
}

/// A deployment `d` on `hs1` (with host `c` beside it) whose backup table holds `backup`.
fn with_backup(backup: &str) -> String {
    format!(
        "{HOST}[hosts.c]\naddress = \"203.0.113.12\"\n\n[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs1\"\n[deployments.d.backup]\n{backup}"
    )
}

#[test]
fn a_backup_schedule_outside_the_calendar_syntax_is_refused() {
    let stderr = render_fails(&with_backup(
        "schedule = \"*-*-* 03:00 Europe/Berlin\"\ndirectory = \"/var/backups/d\"\n",
    ));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:11:12",
            "invalid schedule",
            "time zones are not taken",
            "systemd calendar expression",
        ],
    );
    let stderr = render_fails(&with_backup(
        "schedule = \"*-*-* 24:00\"\ndirectory = \"/var/backups/d\"\n",
    ));
    assert_mentions(&stderr, &["`24`: the hour must be a number from 0 to 23"]);
}

#[test]
fn a_backup_without_a_repository_or_with_two_is_refused() {
    let stderr = render_fails(&with_backup("schedule = \"daily\"\n"));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:10:",
            "a backup needs a repository",
            "sftp = \"HOST:/directory\"",
        ],
    );
    let stderr = render_fails(&with_backup(
        "directory = \"/var/backups/d\"\nsftp = \"c:/srv/restic/d\"\n",
    ));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:12:8",
            "`directory` and `sftp` are both given",
        ],
    );
}

#[test]
fn a_backup_directory_inside_the_deployment_is_refused() {
    let stderr = render_fails(&with_backup("directory = \"/opt/synapse/d/backups\"\n"));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:11:13",
            "overlaps the deploy_dir /opt/synapse/d",
            "`synprov destroy` removes",
        ],
    );
}

#[test]
fn an_sftp_repository_names_a_known_host_or_a_server_with_its_host_key() {
    let stderr = render_fails(&with_backup("sftp = \"cc:/srv/restic/d\"\n"));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:11:8",
            "sftp names host `cc`",
            "did you mean `c`?",
        ],
    );
    let stderr = render_fails(&with_backup("sftp = \"backup@nas.example.org:/srv/r\"\n"));
    assert_mentions(
        &stderr,
        &["inventory.toml:11:8", "needs its `host_key`", "ssh-keyscan"],
    );
    let stderr = render_fails(&with_backup(
        "sftp = \"backup@nas.example.org:/srv/r\"\nhost_key = \"ssh-ed25519 AAAA\"\n",
    ));
    assert_mentions(&stderr, &["inventory.toml:12:12", "invalid host_key"]);
    let stderr = render_fails(&with_backup(
        "sftp = \"c:/srv/restic/d\"\nhost_key = \"ssh-ed25519 AAAA\"\n",
    ));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:12:",
            "belong to an `sftp = \"user@host:/directory\"`",
        ],
    );
}

#[test]
fn a_retention_that_keeps_nothing_is_refused() {
    let stderr = render_fails(&with_backup(
        "directory = \"/var/backups/d\"\n[deployments.d.backup.retention]\ndaily = 0\nweekly = 0\nmonthly = 0\n",
    ));
    assert_mentions(&stderr, &["inventory.toml:13:9", "keeps none", "daily = 7"]);
}

const ACME: &str = "[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs1\"\n\
[deployments.d.tls]\n[deployments.d.tls.acme]\nemail = \"admin@example.org\"\n";

#[test]
fn acme_settings_are_refused_where_they_are_written_with_the_fix() {
    for (extra, line, needles) in [
        (
            "directory = \"http://ca.example/dir\"\n",
            10,
            &["invalid ACME directory", "an https URL", "\"staging\""][..],
        ),
        (
            "key_type = \"ed25519\"\n",
            10,
            &["invalid ACME key_type", "ec256, ec384, rsa2048"],
        ),
        (
            "names = [\"*.example.org\", \"example.org\"]\n",
            10,
            &["a wildcard name needs DNS-01"],
        ),
        (
            "names = [\"matrix.example.org\"]\n",
            10,
            &[
                "no name is valid for example.org",
                "add \"example.org\" to `names`",
            ],
        ),
        (
            "dns_credentials = \"dns.env\"\n",
            10,
            &["dns_credentials without dns_provider"],
        ),
        (
            "dns_provider = \"manual\"\n",
            10,
            &["invalid dns_provider", "runs unattended"],
        ),
        (
            "ca_bundle = \"ca.pem\"\n",
            10,
            &[
                "ACME ca_bundle: cannot read",
                "ca.pem",
                "unusable ACME ca_bundle",
            ],
        ),
    ] {
        let stderr = render_fails(&format!("{HOST}{ACME}{extra}"));
        assert_mentions(&stderr, &[&format!("inventory.toml:{line}:")]);
        assert_mentions(&stderr, needles);
    }
    let stderr = render_fails(&format!("{HOST}{ACME}").replace("admin@", "admin "));
    assert_mentions(&stderr, &["inventory.toml:9:", "invalid ACME email"]);
}

#[test]
fn dns_credentials_that_are_not_env_lines_are_refused_without_showing_a_value() {
    let stderr = render_fails_beside(
        &format!("{HOST}{ACME}dns_provider = \"cloudflare\"\ndns_credentials = \"dns.env\"\n"),
        &[("dns.env", "CF_DNS_API_TOKEN=ok\ncf_zone_token=s3cr3t\n")],
    );
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:11:",
            "dns_credentials:",
            "line 2: a variable's name",
        ],
    );
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
}

#[test]
fn a_tls_table_needs_exactly_one_certificate_source() {
    let stderr = render_fails(&format!(
        "{HOST}[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs1\"\n[deployments.d.tls]\nfederation = \"8448\"\n"
    ));
    assert_mentions(
        &stderr,
        &[
            "says nowhere where the certificate comes from",
            "[deployments.NAME.tls.acme]",
        ],
    );
    let stderr = render_fails(&format!("{HOST}{ACME}").replace(
        "[deployments.d.tls]\n",
        "[deployments.d.tls]\ncertificate = \"fullchain.pem\"\nkey = \"privkey.pem\"\n",
    ));
    assert_mentions(
        &stderr,
        &["inventory.toml:10:", "both certificate files and `acme`"],
    );
    let stderr = render_fails(&format!(
        "{HOST}[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs1\"\n[deployments.d.tls]\ncertificate = \"fullchain.pem\"\n"
    ));
    assert_mentions(
        &stderr,
        &["inventory.toml:8:", "`certificate` and `key` go together"],
    );
}

#[test]
fn check_shows_the_acme_names_and_ca() {
    let (dir, path) = inventory(&format!("{HOST}{ACME}directory = \"staging\"\n"));
    let output = synprov(dir.path())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("HTTP on 80 redirected; certificate for example.org from https://acme-staging-v02.api.letsencrypt.org/directory, renewed on the host"),
        "{stdout}"
    );
}

#[test]
fn an_inventory_that_deploys_nothing_is_refused() {
    for (text, location) in [
        ("", "inventory.toml:1:1"),
        ("# only a comment\n\n# and another\n", "inventory.toml:1:1"),
        (HOST, "inventory.toml:1:1"),
        (
            "# hosts, no deployment\n[defaults]\nuser = \"root\"\n\n[hosts.hs1]\naddress = \"203.0.113.10\"\n",
            "inventory.toml:5:1",
        ),
    ] {
        let stderr = render_fails(text);
        assert_mentions(
            &stderr,
            &[
                location,
                "the inventory deploys nothing",
                "[deployments.NAME]",
                "server_name = \"example.org\"",
            ],
        );
        let (dir, path) = inventory(text);
        let check = synprov(dir.path())
            .arg("check")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(check.status.code(), Some(1), "check refuses {text:?} too");
    }
}

#[test]
fn an_empty_path_where_a_file_is_meant_is_refused_naming_its_key() {
    let stderr = render_fails(&deployment("", "").replace(
        "address = \"203.0.113.10\"\n",
        "address = \"203.0.113.10\"\nidentity_file = \"\"\n",
    ));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:3:17",
            "`identity_file` is an empty path",
            "empty path",
        ],
    );
    let stderr = render_fails(&format!(
        "[defaults]\nidentity_file = \" \"\n{}",
        deployment("", "")
    ));
    assert_mentions(
        &stderr,
        &["inventory.toml:2:17", "`identity_file` is an empty path"],
    );
    for (tls, location, key) in [
        (
            "certificate = \"\"\nkey = \"privkey.pem\"\n",
            "inventory.toml:8:15",
            "certificate",
        ),
        (
            "certificate = \"fullchain.pem\"\nkey = \"\"\n",
            "inventory.toml:9:7",
            "key",
        ),
    ] {
        let stderr = render_fails(&format!(
            "{HOST}[deployments.d]\nserver_name = \"example.org\"\nhost = \"hs1\"\n[deployments.d.tls]\n{tls}"
        ));
        assert_mentions(
            &stderr,
            &[
                location,
                &format!("`{key}` is an empty path"),
                "relative to the inventory's directory",
            ],
        );
    }
    let stderr = render_fails(&deployment("", "[[plugins]]\npath = \"\"\n"));
    assert_mentions(&stderr, &["inventory.toml:9:8", "`path` is an empty path"]);
}

#[test]
fn two_server_names_equal_but_for_case_are_one_homeserver() {
    let stderr = render_fails(&format!(
        "{HOST}[deployments.a]\nserver_name = \"example.org\"\nhost = \"hs1\"\n\n[deployments.b]\nserver_name = \"Example.ORG\"\nhost = \"hs1\"\ndeploy_dir = \"/opt/b\"\n[deployments.b.nginx]\nhttp_port = 8009\n"
    ));
    assert_mentions(
        &stderr,
        &[
            "inventory.toml:9:15",
            "server_name `Example.ORG` is already used by deployment `a` (as `example.org`",
            "without regard to case",
            "its own server_name",
        ],
    );
}

#[test]
fn a_server_name_of_numeric_labels_that_is_no_ip_address_is_refused() {
    for name in ["1.2.3", "123", "123:8448", "1.2.3.4.5", "example.0x7f"] {
        let stderr = render_fails(&format!(
            "{HOST}[deployments.d]\nserver_name = \"{name}\"\nhost = \"hs1\"\n"
        ));
        assert_mentions(
            &stderr,
            &[
                "inventory.toml:5:15",
                &format!("invalid server_name `{name}`"),
                "it is not an IPv4 address",
            ],
        );
    }
    let stderr = render_fails(&deployment("", "").replace("\"203.0.113.10\"", "\"203.0.113\""));
    assert_mentions(
        &stderr,
        &["inventory.toml:2:11", "invalid address `203.0.113`"],
    );
}

#[test]
fn a_public_baseurl_its_readers_would_read_differently_is_refused() {
    for (url, why) in [
        ("https://example.org/a b/", "its path holds ' '"),
        ("https://example.org/{a}/", "its path holds '{'"),
        ("https://example.org/a;b/", "its path holds ';'"),
        ("https://example.org/a\\\\b/", "its path holds '\\\\'"),
        ("https://example.org/a'b/", "its path holds '\\''"),
        ("https://example.org/%2e%2e/", "percent escape"),
        ("https://example.org/a/../", "segment"),
        ("https://user@example.org/", "user name or password"),
        ("https://example.org/?a=1", "query"),
        (
            "https://bücher.example/",
            "write `xn--bcher-kva.example` instead",
        ),
        ("https://example.org/ü/", "its path holds 'ü'"),
        ("https://1.2.3/", "its last part is a number"),
    ] {
        let stderr = render_fails(&deployment(&format!("public_baseurl = \"{url}\""), ""));
        assert_mentions(
            &stderr,
            &["inventory.toml:7:18", "invalid public_baseurl", why],
        );
    }
}

#[test]
fn an_empty_table_in_homeserver_is_refused_naming_its_key() {
    for (setting, key) in [
        ("listeners = {}", "listeners"),
        ("[deployments.d.homeserver.database.args]", "database.args"),
        (
            "oidc_providers = [{ idp_id = \"x\" }, {}]",
            "oidc_providers[1]",
        ),
    ] {
        let stderr = render_fails(&deployment(
            &format!("[deployments.d.homeserver]\nmax_upload_size = \"10M\"\n{setting}"),
            "",
        ));
        assert_mentions(
            &stderr,
            &[
                "inventory.toml:7:",
                &format!("homeserver setting `{key}` cannot be used: an empty table"),
                "remove it",
            ],
        );
    }
}
