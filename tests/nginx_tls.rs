//! Nginx's HTTPS variant, run by Debian's real nginx with a certificate of a CA made here:
//! `nginx -t` accepts it, HTTPS is served with the chain a client verifies, plain HTTP
//! redirects, federation has its port or its delegation, only modern TLS is spoken, and
//! gixy finds nothing of high severity.

mod common;

use std::path::Path;

use common::nginx::NginxBed;
use common::tls::{TestCa, connect};
use common::{inventory, render, require};

const HSTS: &str = "max-age=63072000";

/// An inventory of one deployment of example.org whose Nginx serves HTTPS with a fresh
/// certificate for `names` from `ca`, `tls` holding more keys of `[deployments.d.tls]`.
fn tls_inventory(
    ca: &TestCa,
    names: &[&str],
    baseurl: &str,
    tls: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path) = inventory(&format!(
        "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\npublic_baseurl = \"{baseurl}\"\nhost = \"h\"\n\
[deployments.d.tls]\ncertificate = \"tls/fullchain.pem\"\nkey = \"tls/privkey.pem\"\n{tls}"
    ));
    let (cert, key) = ca.issue(names);
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    std::fs::write(dir.path().join("tls/fullchain.pem"), cert).unwrap();
    std::fs::write(dir.path().join("tls/privkey.pem"), key).unwrap();
    (dir, path)
}

#[test]
fn https_is_served_with_a_verified_chain_hsts_and_federation_on_its_port() {
    let ca = TestCa::new("synprov test CA");
    let (_dir, path) = tls_inventory(&ca, &["example.org"], "https://example.org/", "");
    let bed = NginxBed::start(&path);
    let pem = ca.pem();

    let client = bed.request_tls(8443, &pem, "GET", "/_matrix/client/versions");
    assert_eq!(client.worker.as_deref(), Some("main"), "{client:?}");
    assert_eq!(
        client.headers.get("x-forwarded-proto").map(String::as_str),
        Some("https"),
        "Synapse is told the client used HTTPS"
    );
    assert_eq!(
        client
            .response_headers
            .get("strict-transport-security")
            .map(String::as_str),
        Some(HSTS)
    );
    let keys = bed.request_tls(8448, &pem, "GET", "/_matrix/key/v2/server");
    assert_eq!(
        keys.worker.as_deref(),
        Some("federation_reader1"),
        "{keys:?}"
    );
    assert_eq!(
        bed.request_tls(8443, &pem, "GET", "/.well-known/matrix/server")
            .status,
        404,
        "no delegation unless asked"
    );

    // Plain HTTP: the healthcheck answers, everything else goes to HTTPS for good.
    assert_eq!(bed.request("GET", "/health").status, 200);
    let redirect = bed.request("GET", "/_matrix/client/versions?a=b");
    assert_eq!(redirect.status, 301, "{redirect:?}");
    assert_eq!(
        redirect
            .response_headers
            .get("location")
            .map(String::as_str),
        Some("https://example.org/_matrix/client/versions?a=b")
    );
    assert_eq!(
        redirect.worker, None,
        "nothing reaches Synapse over plain HTTP"
    );
}

#[test]
fn only_tls_1_2_and_1_3_with_forward_secret_aead_ciphers_are_spoken() {
    let ca = TestCa::new("synprov test CA");
    let (_dir, path) = tls_inventory(&ca, &["example.org"], "https://example.org/", "");
    let bed = NginxBed::start(&path);
    let pem = ca.pem();
    let port = bed.port(8443);
    let tls12 = |ciphers: &'static str| {
        connect("127.0.0.1", port, "example.org", &pem, move |b| {
            b.set_max_proto_version(Some(openssl::ssl::SslVersion::TLS1_2))
                .unwrap();
            b.set_cipher_list(ciphers).unwrap();
        })
    };
    assert!(tls12("ECDHE-ECDSA-AES128-GCM-SHA256").is_ok());
    // Offered by Nginx's own default list (HIGH:!aNULL:!MD5), refused by the profile.
    for weak in ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384"] {
        assert!(tls12(weak).is_err(), "{weak} accepted");
    }
    let stream = connect("127.0.0.1", port, "example.org", &pem, |_| {}).unwrap();
    assert_eq!(stream.ssl().version_str(), "TLSv1.3");
    // A certificate of another CA is refused by a client that trusts ours alone.
    let other = TestCa::new("another CA").pem();
    assert!(connect("127.0.0.1", port, "example.org", &other, |_| {}).is_err());
}

#[test]
fn well_known_delegation_serves_both_documents_on_the_https_port_and_no_federation_port() {
    let ca = TestCa::new("synprov test CA");
    let (_dir, path) = tls_inventory(
        &ca,
        &["example.org", "matrix.example.org"],
        "https://matrix.example.org/",
        "federation = \"well-known\"\n",
    );
    let bed = NginxBed::start(&path);
    let pem = ca.pem();
    let server = bed.request_tls(8443, &pem, "GET", "/.well-known/matrix/server");
    assert_eq!(server.status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&server.body).unwrap(),
        serde_json::json!({ "m.server": "matrix.example.org:443" })
    );
    let client = bed.request_tls(8443, &pem, "GET", "/.well-known/matrix/client");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&client.body).unwrap(),
        serde_json::json!({ "m.homeserver": { "base_url": "https://matrix.example.org" } })
    );
    for answer in [&server, &client] {
        assert_eq!(
            answer
                .response_headers
                .get("content-type")
                .map(String::as_str),
            Some("application/json")
        );
        assert_eq!(
            answer
                .response_headers
                .get("strict-transport-security")
                .map(String::as_str),
            Some(HSTS),
            "HSTS is kept where a location adds headers of its own"
        );
    }
    assert_eq!(
        client
            .response_headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some("*"),
        "web clients read it across origins"
    );
    // Federation comes in on the HTTPS port; nothing listens on a federation port.
    let keys = bed.request_tls(8443, &pem, "GET", "/_matrix/key/v2/server");
    assert_eq!(keys.worker.as_deref(), Some("federation_reader1"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", bed.port(8448))).is_err());
}

/// The rendered Nginx config of `inventory`, staged.
fn staged(inventory: &Path) -> common::nginx::StagedNginx {
    let rendered = render(inventory);
    let nginx = common::files(rendered.path())
        .into_iter()
        .find(|f| f.ends_with("nginx/nginx.conf"))
        .unwrap();
    common::nginx::stage(rendered.path().join(&nginx).parent().unwrap(), &[])
}

/// gixy's findings of high severity in a staged config, as `plugin: summary`.
fn gixy_high(staged: &common::nginx::StagedNginx) -> Vec<String> {
    let gixy = require("gixy", "pip install gixy");
    let output = std::process::Command::new(gixy)
        .arg("--format")
        .arg("json")
        .arg(staged.conf())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let findings: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "gixy's output is not JSON ({e}): {text}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    findings
        .into_iter()
        .filter(|f| f["severity"] == "HIGH")
        .map(|f| format!("{}: {}", f["plugin"], f["summary"]))
        .collect()
}

#[test]
fn gixy_finds_nothing_of_high_severity_in_either_variant() {
    let ca = TestCa::new("synprov test CA");
    for tls in ["", "federation = \"well-known\"\n"] {
        let (_dir, path) = tls_inventory(&ca, &["example.org"], "https://example.org/", tls);
        let high = gixy_high(&staged(&path));
        assert!(high.is_empty(), "{tls}: {high:#?}");
    }
    let (_dir, acme) = common::inventory(ACME_INVENTORY);
    assert!(gixy_high(&staged(&acme)).is_empty(), "ACME");
    let plain = staged(&common::root().join("inventory/example.toml"));
    assert!(gixy_high(&plain).is_empty(), "plain HTTP");

    // gixy reads the included files: a location it must refuse is found there.
    let locations = plain.base().join("conf/locations.conf");
    let text = std::fs::read_to_string(&locations).unwrap();
    std::fs::write(
        &locations,
        format!("{text}location /files {{\n    alias /data/;\n}}\n"),
    )
    .unwrap();
    let high = gixy_high(&plain);
    assert!(
        high.iter().any(|f| f.starts_with("\"alias_traversal\"")),
        "{high:?}"
    );
}

/// A deployment of example.org whose certificate comes from Let's Encrypt.
const ACME_INVENTORY: &str = "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\n\
server_name = \"example.org\"\nhost = \"h\"\n[deployments.d.tls]\nfederation = \"well-known\"\n\
[deployments.d.tls.acme]\nemail = \"admin@example.org\"\n";

#[test]
fn in_acme_mode_port_80_serves_the_challenge_and_https_the_certificate_the_renewal_installed() {
    let (_dir, path) = common::inventory(ACME_INVENTORY);
    let ca = TestCa::new("synprov test CA");
    let (cert, key) = ca.issue(&["example.org"]);
    let bed = NginxBed::start_with(&path, |base| {
        std::fs::write(base.join("tls/certificate.pem"), &cert).unwrap();
        std::fs::write(base.join("tls/key.pem"), &key).unwrap();
        let tokens = base.join("acme-challenge/.well-known/acme-challenge");
        std::fs::create_dir_all(&tokens).unwrap();
        std::fs::write(tokens.join("t0ken_-x"), "t0ken_-x.thumbprint").unwrap();
    });

    let token = bed.request("GET", "/.well-known/acme-challenge/t0ken_-x");
    assert_eq!(token.status, 200, "{token:?}");
    assert_eq!(token.body, "t0ken_-x.thumbprint");
    assert_eq!(
        token
            .response_headers
            .get("content-type")
            .map(String::as_str),
        Some("text/plain")
    );
    assert_eq!(
        bed.request("GET", "/.well-known/acme-challenge/missing")
            .status,
        404,
        "an unknown token is not redirected"
    );
    let redirect = bed.request("GET", "/_matrix/client/versions");
    assert_eq!(redirect.status, 301, "{redirect:?}");
    assert_eq!(bed.request("GET", "/health").status, 200);

    let pem = ca.pem();
    let server = bed.request_tls(8443, &pem, "GET", "/.well-known/matrix/server");
    assert_eq!(server.status, 200, "HTTPS with the installed certificate");
    assert_eq!(
        bed.request_tls(8443, &pem, "GET", "/.well-known/acme-challenge/t0ken_-x")
            .status,
        404,
        "tokens are served over plain HTTP only"
    );
}
