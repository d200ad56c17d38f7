//! The renewal's decision, as the host runs it: the rendered `acme/lego.sh` run by this
//! machine's sh, openssl and coreutils (those of the lego image are Debian's too), with a
//! fake `lego` that records its arguments. It issues when there is no certificate for the
//! names, renews when a third of the lifetime is left, installs a new certificate and key
//! 0600 for Nginx, and records each attempt, a refusal with the CA's reason.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::tls::TestCa;
use common::{inventory, render};

/// A fake lego: appends its arguments to `args`; with `FAKE_FAIL` set, prints a CA's
/// refusal and fails; `run` registers the account of admin@example.org at Let's Encrypt; with `FAKE_NEW=STEM` set, writes an HTTP-01 token as lego's webroot
/// provider does (with the umask it is given), and `STEM.crt` and `STEM.key` as lego's new
/// certificate of matrix.example.org.
const FAKE_LEGO: &str = r#"#!/bin/sh
echo "$*" >>args
if [ -n "${FAKE_FAIL:-}" ]; then
    echo "2026/12/07 06:00:00 [INFO] [matrix.example.org] acme: Trying to solve HTTP-01"
    echo "2026/12/07 06:00:01 Could not obtain certificates:"
    echo "	error: one or more domains had a problem:"
    echo "[matrix.example.org] acme: error: 403 :: urn:ietf:params:acme:error:unauthorized :: Invalid response from http://matrix.example.org/.well-known/acme-challenge/x: 404"
    exit 1
fi
if [ "$(eval echo \"\${$#}\")" = run ]; then
    mkdir -p "state/lego/accounts/acme-v02.api.letsencrypt.org/admin@example.org"
    echo '{}' >"state/lego/accounts/acme-v02.api.letsencrypt.org/admin@example.org/account.json"
fi
if [ -n "${FAKE_NEW:-}" ]; then
    mkdir -p webroot/.well-known/acme-challenge
    echo token >webroot/.well-known/acme-challenge/t
    mkdir -p state/lego/certificates
    cp "$FAKE_NEW.crt" state/lego/certificates/matrix.example.org.crt
    cp "$FAKE_NEW.key" state/lego/certificates/matrix.example.org.key
fi
"#;

/// lego's account of the rendered deployment's address at Let's Encrypt.
const ACCOUNT: &str =
    "state/lego/accounts/acme-v02.api.letsencrypt.org/admin@example.org/account.json";

/// The rendered client script of a deployment of example.org at matrix.example.org.
fn lego_script() -> String {
    let (_dir, path) = inventory(
        "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\n\
         public_baseurl = \"https://matrix.example.org/\"\nhost = \"h\"\n\
         [deployments.d.tls.acme]\nemail = \"admin@example.org\"\n",
    );
    let out = render(&path);
    std::fs::read_to_string(out.path().join("h/d/acme/lego.sh")).unwrap()
}

/// The directory the container would mount (`state`, `webroot`, `tls`), and a fake lego.
struct Run {
    dir: tempfile::TempDir,
    ca: TestCa,
}

impl Run {
    fn new() -> Run {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["state", "webroot", "tls", "bin"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let lego = dir.path().join("bin/lego");
        std::fs::write(&lego, FAKE_LEGO).unwrap();
        std::fs::set_permissions(&lego, std::fs::Permissions::from_mode(0o755)).unwrap();
        Run {
            dir,
            ca: TestCa::new("test ACME CA"),
        }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    /// A certificate for `names` valid over `days`, written as `stem.crt` and `stem.key`.
    fn certificate(&self, stem: &str, names: &[&str], days: std::ops::Range<i64>) -> String {
        let (cert, key) = self.ca.issue_for(names, days);
        std::fs::write(self.path(&format!("{stem}.crt")), &cert).unwrap();
        std::fs::write(self.path(&format!("{stem}.key")), key).unwrap();
        self.path(stem).display().to_string()
    }

    /// Puts certificate `stem` where lego keeps it and where Nginx reads it, with the
    /// account that obtained it.
    fn current(&self, stem: &str) {
        std::fs::create_dir_all(self.path(ACCOUNT).parent().unwrap()).unwrap();
        std::fs::write(self.path(ACCOUNT), "{}").unwrap();
        std::fs::create_dir_all(self.path("state/lego/certificates")).unwrap();
        for (from, lego, tls) in [("crt", "crt", "certificate.pem"), ("key", "key", "key.pem")] {
            let text = std::fs::read(self.path(&format!("{stem}.{from}"))).unwrap();
            std::fs::write(
                self.path(&format!(
                    "state/lego/certificates/matrix.example.org.{lego}"
                )),
                &text,
            )
            .unwrap();
            std::fs::write(self.path(&format!("tls/{tls}")), &text).unwrap();
        }
    }

    /// Runs the script as the container does (`sh -s`, in the mounted directory) with
    /// `env`: its exit status, lego's arguments and the record.
    fn run(&self, script: &str, env: &[(&str, &str)]) -> (i32, String, BTreeMap<String, String>) {
        let output = self.output(script, env);
        let args = std::fs::read_to_string(self.path("args")).unwrap_or_default();
        let record = std::fs::read_to_string(self.path("state/last-run"))
            .unwrap_or_else(|_| panic!("no record: {}", String::from_utf8_lossy(&output.stderr)));
        let record = record
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (output.status.code().unwrap_or(-1), args, record)
    }

    /// Runs the script in placeholder mode, as apply does before the stack starts.
    fn placeholder(&self, script: &str) -> i32 {
        let output = self.output(script, &[("SYNPROV_ACME_PLACEHOLDER", "1")]);
        output.status.code().unwrap_or(-1)
    }

    fn output(&self, script: &str, env: &[(&str, &str)]) -> std::process::Output {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new("sh");
        command
            .arg("-s")
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env("SYNPROV_ACME_DAYS", "")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

/// The subject of the certificate Nginx would serve.
fn served_subject(run: &Run) -> String {
    let pem = std::fs::read(run.path("tls/certificate.pem")).unwrap();
    let cert = openssl::x509::X509::from_pem(&pem).unwrap();
    let cn = cert.subject_name().entries().next().unwrap();
    String::from_utf8(cn.data().as_slice().to_vec()).unwrap()
}

#[test]
fn a_placeholder_is_made_only_where_nginx_has_no_certificate_and_is_never_taken_for_one() {
    let script = lego_script();
    let run = Run::new();
    assert_eq!(run.placeholder(&script), 0);
    assert!(!run.path("args").exists(), "the CA is not asked");
    assert!(!run.path("state/last-run").exists(), "no attempt recorded");
    assert_eq!(served_subject(&run), "synprov placeholder");
    let mode = std::fs::metadata(run.path("tls/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let first = std::fs::read(run.path("tls/certificate.pem")).unwrap();
    assert_eq!(run.placeholder(&script), 0);
    assert_eq!(
        std::fs::read(run.path("tls/certificate.pem")).unwrap(),
        first,
        "a certificate Nginx has is kept"
    );

    let (status, _, record) = run.run(&script, &[("FAKE_FAIL", "1")]);
    assert_eq!(status, 1);
    assert_eq!(record["certificate"], "placeholder", "{record:?}");

    let new = run.certificate("new", &["matrix.example.org"], 0..90);
    let (status, args, record) = run.run(&script, &[("FAKE_NEW", &new)]);
    assert_eq!(status, 0, "{record:?}");
    assert!(
        args.trim_end().ends_with(" run"),
        "issued, not renewed: {args}"
    );
    assert_eq!(record["certificate"], "issued", "{record:?}");
    assert_eq!(served_subject(&run), "matrix.example.org");
    assert_eq!(run.placeholder(&script), 0);
    assert_eq!(served_subject(&run), "matrix.example.org", "never replaced");
}

#[test]
fn without_a_certificate_one_is_issued_and_installed_0600_for_nginx() {
    let script = lego_script();
    let run = Run::new();
    let new = run.certificate("new", &["matrix.example.org"], 0..90);
    let (status, args, record) = run.run(&script, &[("FAKE_NEW", &new)]);
    assert_eq!(status, 0, "{record:?}");
    assert!(args.trim_end().ends_with(" run"), "{args}");
    assert!(
        args.contains("--domains=matrix.example.org --http --http.webroot=webroot"),
        "{args}"
    );
    assert_eq!(
        std::fs::read(run.path("tls/certificate.pem")).unwrap(),
        std::fs::read(run.path("new.crt")).unwrap()
    );
    for file in ["tls/certificate.pem", "tls/key.pem"] {
        let mode = std::fs::metadata(run.path(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    for (path, mode) in [
        ("webroot/.well-known/acme-challenge", 0o755),
        ("webroot/.well-known/acme-challenge/t", 0o644),
    ] {
        let found = std::fs::metadata(run.path(path))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            found & 0o777,
            mode,
            "{path}: Nginx's workers read the tokens"
        );
    }
    assert_eq!(record["outcome"], "renewed");
    assert_eq!(record["names"], "matrix.example.org");
    assert_eq!(record["error"], "");
    assert!(record["not_after"].ends_with('Z'), "{record:?}");
}

#[test]
fn a_certificate_is_renewed_when_a_third_of_its_lifetime_is_left() {
    let script = lego_script();
    for (lifetime, days) in [(90, 30), (64, 22), (6, 2), (7, 3)] {
        let run = Run::new();
        run.certificate("old", &["matrix.example.org"], 0..lifetime);
        run.current("old");
        let (status, args, record) = run.run(&script, &[]);
        assert!(
            args.ends_with(&format!(" renew --days {days} --no-random-sleep\n")),
            "{lifetime} days: {args}"
        );
        // lego found nothing due: the installed files stay, Nginx is not reloaded.
        assert_eq!(status, 3, "{record:?}");
        assert_eq!(record["outcome"], "fresh");
    }
}

#[test]
fn a_renewed_certificate_replaces_the_installed_one_and_a_threshold_can_be_forced() {
    let script = lego_script();
    let run = Run::new();
    run.certificate("old", &["matrix.example.org"], 0..90);
    run.current("old");
    let new = run.certificate("new", &["matrix.example.org"], 0..90);
    let (status, args, record) = run.run(
        &script,
        &[("FAKE_NEW", &new), ("SYNPROV_ACME_DAYS", "1000")],
    );
    assert!(args.contains(" renew --days 1000 "), "{args}");
    assert_eq!(status, 0, "{record:?}");
    assert_eq!(record["outcome"], "renewed");
    assert_eq!(
        std::fs::read(run.path("tls/key.pem")).unwrap(),
        std::fs::read(run.path("new.key")).unwrap()
    );
}

#[test]
fn a_certificate_for_other_names_is_issued_anew() {
    let script = lego_script();
    let run = Run::new();
    run.certificate("old", &["matrix.example.org", "old.example.org"], 0..90);
    run.current("old");
    let (_, args, _) = run.run(&script, &[]);
    assert!(args.trim_end().ends_with(" run"), "{args}");
}

#[test]
fn a_refusal_is_recorded_with_the_ca_s_reason_and_changes_nothing() {
    let script = lego_script();
    let run = Run::new();
    run.certificate("old", &["matrix.example.org"], -80..10);
    run.current("old");
    let before = std::fs::read(run.path("tls/certificate.pem")).unwrap();
    let (status, _, record) = run.run(&script, &[("FAKE_FAIL", "1")]);
    assert_eq!(status, 1);
    assert_eq!(record["outcome"], "failed");
    assert!(
        record["error"].contains("urn:ietf:params:acme:error:unauthorized :: Invalid response"),
        "{record:?}"
    );
    assert!(
        !record["error"].contains("2026/12/07"),
        "timestamps go: {record:?}"
    );
    assert!(
        !record["not_after"].is_empty(),
        "the expiry of the certificate still served"
    );
    assert_eq!(
        std::fs::read(run.path("tls/certificate.pem")).unwrap(),
        before
    );
}

#[test]
fn both_scripts_are_sh_with_a_ca_bundle_and_dns_credentials_too() {
    let ca = TestCa::new("private ACME CA");
    let (dir, path) = inventory(
        "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\n\
         host = \"h\"\n[deployments.d.tls.acme]\nemail = \"admin@example.org\"\n\
         directory = \"https://ca.example:14000/dir\"\nca_bundle = \"ca.pem\"\n\
         names = [\"example.org\", \"*.example.org\"]\ndns_provider = \"rfc2136\"\n\
         dns_credentials = \"dns.env\"\n",
    );
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(
        dir.path().join("dns.env"),
        "RFC2136_NAMESERVER=192.0.2.53\n",
    )
    .unwrap();
    let out = render(&path);
    for script in ["renew.sh", "lego.sh"] {
        let file = out.path().join("h/d/acme").join(script);
        let check = Command::new("sh").arg("-n").arg(&file).output().unwrap();
        assert!(
            check.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let renew = std::fs::read_to_string(out.path().join("h/d/acme/renew.sh")).unwrap();
    assert!(
        renew.contains("--env LEGO_CA_CERTIFICATES=/ca-bundle.pem"),
        "{renew}"
    );
    assert!(
        renew.contains("--env-file /opt/synapse/d/acme/dns.env"),
        "{renew}"
    );
    let lego = std::fs::read_to_string(out.path().join("h/d/acme/lego.sh")).unwrap();
    // lego names a wildcard's files with `_`: the first name here is plain.
    assert!(lego.contains("certificate=state/lego/certificates/example.org.crt\n"));
}

#[test]
fn without_an_account_for_the_address_the_certificate_is_issued_anew() {
    // A new contact address: lego keeps an account per address, and only `run` registers
    // one (a renewal with an address it has no account for fails).
    let script = lego_script();
    let run = Run::new();
    run.certificate("old", &["matrix.example.org"], -80..10);
    run.current("old");
    std::fs::remove_file(run.path(ACCOUNT)).unwrap();
    let new = run.certificate("new", &["matrix.example.org"], 0..90);
    let (status, args, record) = run.run(&script, &[("FAKE_NEW", &new)]);
    assert_eq!(status, 0, "{record:?}");
    assert!(args.trim_end().ends_with(" run"), "{args}");
    assert!(run.path(ACCOUNT).exists());
}
