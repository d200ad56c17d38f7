//! Nginx's HTTPS variant (`[deployments.NAME.tls]`): the listeners it publishes, the
//! delegation documents it serves, and the certificate and key files it reads.

use serde_json::{Value, json};

use super::{RenderedFile, acme};
use crate::inventory::{CertificateSource, Deployment, Federation, TlsSettings};

/// The certificate chain, as Nginx finds it in its mounted configuration directory.
pub const CERTIFICATE: &str = "nginx/tls-certificate.pem";

/// The private key: mode 0600, root's (Nginx's master process reads it before it drops
/// to its workers' user), never shown in a diff.
pub const KEY: &str = "nginx/tls-key.pem";

/// Ports inside the container: unprivileged, so that Nginx needs no capability to bind them
/// (the host ports they are published on are the inventory's).
const HTTPS: u16 = 8443;
const FEDERATION: u16 = 8448;

/// The TLS part of the Nginx and Compose contexts, `null` without TLS.
pub fn context(deployment: &Deployment) -> Value {
    let Some(tls) = &deployment.tls else {
        return Value::Null;
    };
    let well_known = tls.federation == Federation::WellKnown;
    let mut ports = vec![json!({ "host": tls.https_port, "container": HTTPS })];
    if !well_known {
        ports.push(json!({ "host": tls.federation_port, "container": FEDERATION }));
    }
    let (certificate, key, acme) = match &tls.certificate {
        CertificateSource::Files(_) => (
            format!("/etc/{CERTIFICATE}"),
            format!("/etc/{KEY}"),
            Value::Null,
        ),
        CertificateSource::Acme(_) => (
            format!("{}/{}", acme::NGINX_TLS, acme::CERTIFICATE),
            format!("{}/{}", acme::NGINX_TLS, acme::KEY),
            acme::nginx_context(),
        ),
    };
    json!({
        "https": HTTPS,
        "federation": (!well_known).then_some(FEDERATION),
        "ports": ports,
        "certificate": certificate,
        "key": key,
        // ACME: port 80 serves the CA's tokens, and Nginx reads what the renewal installs.
        "acme": acme,
        // `https://$host` is the same host over HTTPS; the port only when it is not 443.
        "redirect_port": (tls.https_port != 443).then(|| format!(":{}", tls.https_port)),
        "well_known": well_known.then(|| delegation(deployment, tls)),
    })
}

/// The bodies of `/.well-known/matrix/server` and `/client`, as the Matrix spec has them:
/// federation goes to public_baseurl's host on the HTTPS port, clients to its origin.
/// Both are JSON of a host name and a port (the URL parser has checked and normalised
/// them): no quote, backslash or `$` that Nginx's quoted string would read.
fn delegation(deployment: &Deployment, tls: &TlsSettings) -> Value {
    let url = url::Url::parse(&deployment.public_baseurl).expect("validated public_baseurl");
    let host = url.host_str().unwrap_or(&deployment.server_name);
    let server = json!({ "m.server": format!("{host}:{}", tls.https_port) });
    let client = json!({ "m.homeserver": { "base_url": url.origin().ascii_serialization() } });
    json!({ "server": server.to_string(), "client": client.to_string() })
}

/// The certificate and key files Nginx reads, when they are the operator's. A change of
/// either is taken by a reload of Nginx (`reloads`), not a recreation of its container.
pub fn files(tls: &TlsSettings) -> Vec<RenderedFile> {
    let CertificateSource::Files(pair) = &tls.certificate else {
        return Vec::new();
    };
    let file = |path: &str, contents: &str, secret: bool| RenderedFile {
        path: path.to_string(),
        contents: contents.to_string(),
        mode: if secret { 0o600 } else { 0o644 },
        secret,
        keep_existing: false,
        owner: None,
        used_by: vec!["nginx".into()],
        reloads: true,
    };
    vec![
        file(CERTIFICATE, &pair.certificate, false),
        file(KEY, pair.key.expose(), true),
    ]
}
