//! The renewal of an ACME certificate on its host (`[deployments.NAME.tls.acme]`): a systemd
//! timer twice a day starts a service that runs lego in a container of its own, installs a
//! new certificate and key where Nginx reads them, reloads Nginx alone (SIGHUP, no
//! container recreated), and records the attempt for `status`, the journal and the audit
//! log. Nothing here needs synprov on the host or the controller at renewal time.
//!
//! The deployment's directory holds, besides the rendered files of [`ACME`]:
//! - [`STATE`]: lego's account and certificates (keys 0600) and [`LAST_RUN`];
//! - [`CHALLENGE`]: HTTP-01 tokens, which Nginx serves read-only on port 80;
//! - [`TLS`]: the certificate and key Nginx reads, read-only.

use serde_json::{Value, json};

use super::templates::Values;
use super::{RenderError, RenderedDir, RenderedFile, Templates};
use crate::generations::AUDIT_LOG;
use crate::inventory::{AcmeSettings, Challenge, Deployment};
use crate::shell::quote;

/// The rendered files of the renewal: its scripts, units, CA bundle and DNS credentials.
pub const ACME: &str = "acme";

/// The DNS provider's credentials for DNS-01, as the inventory gives them (mode 0600).
pub const DNS_ENV: &str = "acme/dns.env";

/// The renewal's script, which the service runs, and `apply` for the placeholder.
pub const RENEW_SCRIPT: &str = "acme/renew.sh";

/// lego's data (`--path`), and the record of the last attempt.
pub const STATE: &str = "acme/state";

/// The record of the last renewal attempt, `KEY=VALUE` lines (`at`, `outcome`, `names`,
/// `not_after`, `error`), written by the renewal for `status` to read.
pub const LAST_RUN: &str = "acme/state/last-run";

/// The HTTP-01 webroot: lego writes `.well-known/acme-challenge/TOKEN` into it.
pub const CHALLENGE: &str = "acme-challenge";

/// The certificate and key Nginx serves, as the renewal installs them.
pub const TLS: &str = "tls";

/// Where Nginx finds [`CHALLENGE`] and [`TLS`], mounted read-only.
pub const NGINX_CHALLENGE: &str = "/var/www/acme-challenge";
pub const NGINX_TLS: &str = "/etc/synprov-tls";

/// The files of [`TLS`], as the renewal writes them.
pub const CERTIFICATE: &str = "certificate.pem";
pub const KEY: &str = "key.pem";

/// The common name of the self-signed certificate Nginx starts on before the first one is
/// issued: `status` never takes it for a valid certificate.
pub const PLACEHOLDER: &str = "synprov placeholder";

/// The working directory of the lego container, under which [`STATE`], [`CHALLENGE`] and
/// [`TLS`] are mounted by their last names (`state`, `webroot`, `tls`): the client's script
/// uses relative paths only, so that a test runs it in a directory of its own.
const WORKDIR: &str = "/acme";

/// The systemd unit name of the renewal of deployment `name` (its service and timer). A
/// deployment name is lowercase letters, digits, `-` and `_`: valid in a unit name.
pub fn unit(name: &str) -> String {
    format!("synprov-acme-{name}")
}

/// The webroot Nginx's port 80 serves in ACME mode, and its two read-only mounts.
pub fn nginx_context() -> Value {
    json!({
        "challenge": NGINX_CHALLENGE,
        "mounts": [
            format!("./{CHALLENGE}:{NGINX_CHALLENGE}:ro"),
            format!("./{TLS}:{NGINX_TLS}:ro"),
        ],
    })
}

/// The directories the renewal writes to: root's, and 0700 but for the webroot, which
/// Nginx's workers read.
pub fn dirs() -> Vec<RenderedDir> {
    let dir = |path: &str, mode| RenderedDir {
        path: path.to_string(),
        mode,
        owner: None,
    };
    vec![
        dir(ACME, 0o700),
        dir(STATE, 0o700),
        dir(CHALLENGE, 0o755),
        dir(TLS, 0o700),
    ]
}

/// The renewal's files for `deployment` (whose certificate comes from `acme`).
pub fn files(
    deployment: &Deployment,
    acme: &AcmeSettings,
    templates: &Templates,
) -> Result<Vec<RenderedFile>, RenderError> {
    let unit = unit(&deployment.name);
    let context = Values::from(context(deployment, acme, &unit));
    let file = |path: String, contents: String| RenderedFile {
        path,
        contents,
        mode: 0o644,
        secret: false,
        keep_existing: false,
        owner: None,
        used_by: Vec::new(),
        reloads: false,
    };
    let mut files = vec![
        file(
            RENEW_SCRIPT.to_string(),
            templates.render("acme/renew.sh", &context)?,
        ),
        file(
            format!("{ACME}/lego.sh"),
            templates.render("acme/lego.sh", &context)?,
        ),
        file(
            format!("{ACME}/{unit}.service"),
            templates.render("acme/renew.service", &context)?,
        ),
        file(
            format!("{ACME}/{unit}.timer"),
            templates.render("acme/renew.timer", &context)?,
        ),
    ];
    if let Some(bundle) = &acme.ca_bundle {
        files.push(file(format!("{ACME}/ca-bundle.pem"), bundle.clone()));
    }
    if let Challenge::Dns {
        credentials: Some(credentials),
        ..
    } = &acme.challenge
    {
        files.push(RenderedFile {
            mode: 0o600,
            secret: true,
            ..file(
                DNS_ENV.to_string(),
                credentials.env_file.expose().to_string(),
            )
        });
    }
    Ok(files)
}

/// The values of the four templates. Everything a script receives from the inventory is
/// one quoted shell word (`*_word`, or each of `lego_options`), made here.
fn context(deployment: &Deployment, acme: &AcmeSettings, unit: &str) -> Value {
    let dir = deployment.deploy_dir.to_string();
    let mut options = vec![
        format!("--server={}", acme.directory),
        format!("--email={}", acme.email),
        "--accept-tos".to_string(),
        "--path=state/lego".to_string(),
        format!("--key-type={}", acme.key_type.name()),
    ];
    options.extend(acme.names.iter().map(|name| format!("--domains={name}")));
    match &acme.challenge {
        Challenge::Http => {
            options.extend(["--http".to_string(), "--http.webroot=webroot".to_string()]);
        }
        Challenge::Dns { provider, .. } => options.push(format!("--dns={provider}")),
    }
    let mut wanted = acme.names.clone();
    wanted.sort();
    // lego names its files after the first name, a wildcard's `*` made `_`.
    let stem = acme.names[0].replace('*', "_");
    let dns_env = matches!(
        &acme.challenge,
        Challenge::Dns {
            credentials: Some(_),
            ..
        }
    );
    let mounts = [
        format!("{dir}/{STATE}:{WORKDIR}/state"),
        format!("{dir}/{CHALLENGE}:{WORKDIR}/webroot"),
        format!("{dir}/{TLS}:{WORKDIR}/tls"),
    ];
    json!({
        "deployment": deployment.name,
        "server_name": deployment.server_name,
        "unit": unit,
        "names": acme.names.join(" "),
        "script": format!("{dir}/{ACME}/renew.sh"),
        "dir_word": quote(&dir),
        "project_word": quote(&deployment.name),
        "container_word": quote(unit),
        "image_word": quote(deployment.images.acme.as_ref()),
        "workdir": WORKDIR,
        "mount_words": mounts.iter().map(|m| quote(m)).collect::<Vec<_>>(),
        "ca_bundle_word": acme.ca_bundle.as_ref().map(|_| quote(&format!("{dir}/{ACME}/ca-bundle.pem:/ca-bundle.pem:ro"))),
        "dns_env_word": dns_env.then(|| quote(&format!("{dir}/{DNS_ENV}"))),
        "audit_log": AUDIT_LOG,
        "certificate": CERTIFICATE,
        "placeholder": PLACEHOLDER,
        "key": KEY,
        "last_run": LAST_RUN.trim_start_matches("acme/"),
        "lego_options": options.iter().map(|o| quote(o)).collect::<Vec<_>>().join(" "),
        "wanted_word": quote(&wanted.join(" ")),
        "account_word": quote(&format!(
            "state/lego/accounts/{}/{}/account.json",
            account_dir(&acme.directory),
            acme.email
        )),
        "certificate_word": quote(&format!("state/lego/certificates/{stem}.crt")),
        "key_word": quote(&format!("state/lego/certificates/{stem}.key")),
    })
}

/// The directory in which lego keeps the accounts of CA `directory`: its URL's host and
/// port, each `:` made `_` (lego's `accounts/HOST_PORT/EMAIL/account.json`).
fn account_dir(directory: &str) -> String {
    let url = url::Url::parse(directory).expect("a URL checked when the inventory loaded");
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
    .replace(':', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::parse;

    /// The renewal's files of deployment `d` whose `[tls.acme]` table holds `acme`.
    fn rendered(acme: &str) -> Vec<RenderedFile> {
        let text = format!(
            "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\n\
             public_baseurl = \"https://matrix.example.org/\"\nhost = \"h\"\n\
             [deployments.d.tls]\nfederation = \"well-known\"\n[deployments.d.tls.acme]\n\
             email = \"admin@example.org\"\n{acme}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dns.env"), "CF_DNS_API_TOKEN=s3cr3t\n").unwrap();
        let inventory = parse(&dir.path().join("i.toml"), text).unwrap();
        let deployment = &inventory.deployments["d"];
        let templates = Templates::load(None).unwrap();
        files(deployment, deployment.acme().unwrap(), &templates).unwrap()
    }

    fn file<'a>(files: &'a [RenderedFile], path: &str) -> &'a RenderedFile {
        files.iter().find(|f| f.path == path).unwrap_or_else(|| {
            panic!(
                "no {path} in {:?}",
                files.iter().map(|f| &f.path).collect::<Vec<_>>()
            )
        })
    }

    #[test]
    fn the_timer_runs_twice_a_day_at_a_random_moment_and_catches_up_after_downtime() {
        let files = rendered("");
        let timer = &file(&files, "acme/synprov-acme-d.timer").contents;
        let body = timer.split("[Unit]").nth(1).unwrap();
        assert_eq!(
            body,
            "\nDescription=Renew the ACME certificate of synprov deployment d twice a day\n\n\
             [Timer]\nOnCalendar=*-*-* 00,12:00:00\nRandomizedDelaySec=12h\nPersistent=true\n\n\
             [Install]\nWantedBy=timers.target\n"
        );
    }

    #[test]
    fn the_service_runs_the_renewal_script_once_after_docker() {
        let files = rendered("");
        let service = &file(&files, "acme/synprov-acme-d.service").contents;
        let body = service.split("[Unit]").nth(1).unwrap();
        assert_eq!(
            body,
            "\nDescription=Renew the ACME certificate of synprov deployment d\n\
             Wants=network-online.target\nAfter=network-online.target docker.service\n\
             Requires=docker.service\n\n[Service]\nType=oneshot\n\
             ExecStart=/bin/sh /opt/synapse/d/acme/renew.sh\nSyslogIdentifier=synprov-acme-d\n\
             TimeoutStartSec=30min\n"
        );
    }

    #[test]
    fn lego_is_given_each_setting_as_one_quoted_word() {
        let files = rendered(
            "names = [\"matrix.example.org\", \"*.example.org\"]\nkey_type = \"ec384\"\ndirectory = \"https://ca.example/dir?x=1&y=$(id)\"\ndns_provider = \"cloudflare\"\ndns_credentials = \"dns.env\"\n",
        );
        let lego = &file(&files, "acme/lego.sh").contents;
        assert!(
            lego.contains(
                "(umask 022 && exec lego '--server=https://ca.example/dir?x=1&y=$(id)' \
                 '--email=admin@example.org' --accept-tos '--path=state/lego' '--key-type=ec384' \
                 '--domains=matrix.example.org' '--domains=*.example.org' '--dns=cloudflare' \
                 \"$@\") >state/lego.out 2>&1\n"
            ),
            "{lego}"
        );
        assert!(
            lego.contains(
                "account=state/lego/accounts/ca.example/admin@example.org/account.json\n"
            ),
            "lego's account of this CA and address: {lego}"
        );
        assert!(
            lego.contains("wanted='*.example.org matrix.example.org'\n"),
            "{lego}"
        );
        let renew = &file(&files, "acme/renew.sh").contents;
        assert!(
            renew.contains("    --env-file /opt/synapse/d/acme/dns.env \\\n"),
            "{renew}"
        );
    }

    #[test]
    fn http_01_uses_the_webroot_and_the_certificate_is_named_after_the_first_name() {
        let files = rendered("");
        let lego = &file(&files, "acme/lego.sh").contents;
        assert!(
            lego.contains(
                "'--domains=matrix.example.org' '--domains=example.org' --http '--http.webroot=webroot' \"$@\""
            ),
            "{lego}"
        );
        assert!(lego.contains("certificate=state/lego/certificates/matrix.example.org.crt\n"));
        let renew = &file(&files, "acme/renew.sh").contents;
        assert!(!renew.contains("--env-file"));
        assert!(!files.iter().any(|f| f.path.ends_with("dns.env")));
    }

    #[test]
    fn dns_credentials_are_a_secret_file_and_in_no_other() {
        let files = rendered("dns_provider = \"cloudflare\"\ndns_credentials = \"dns.env\"\n");
        let env = file(&files, "acme/dns.env");
        assert_eq!((env.mode, env.secret), (0o600, true));
        assert_eq!(env.contents, "CF_DNS_API_TOKEN=s3cr3t\n");
        for other in files.iter().filter(|f| f.path != env.path) {
            assert!(!other.contents.contains("s3cr3t"), "{}", other.path);
            assert!(!other.secret && other.used_by.is_empty(), "{}", other.path);
        }
    }

    #[test]
    fn the_directories_lego_writes_are_root_s_and_only_the_webroot_is_readable() {
        let modes: Vec<(String, u32)> = dirs().into_iter().map(|d| (d.path, d.mode)).collect();
        assert_eq!(
            modes,
            [
                ("acme".to_string(), 0o700),
                ("acme/state".to_string(), 0o700),
                ("acme-challenge".to_string(), 0o755),
                ("tls".to_string(), 0o700),
            ]
        );
    }
}
