//! `[deployments.NAME.tls]`: the certificate and key read and checked, the federation mode,
//! the ports, and a public_baseurl that clients reach over HTTPS.

use super::Checker;
use crate::inventory::InventoryError;
use crate::inventory::raw::{RawDeployment, RawTls};
use crate::inventory::values::{TlsFile, read_tls_pair};
use crate::inventory::{Federation, TlsSettings};

impl Checker<'_> {
    /// The deployment's TLS settings, `None` when it has no `tls` table. `public_baseurl` is
    /// the validated one: with TLS it must be `https://`.
    pub(super) fn tls(
        &self,
        raw: &RawDeployment,
        public_baseurl: &str,
    ) -> Result<Option<TlsSettings>, InventoryError> {
        let Some(tls) = &raw.tls else {
            return Ok(None);
        };
        if !public_baseurl.starts_with("https://") {
            let span = raw.public_baseurl.as_ref().unwrap_or(&tls.certificate);
            return Err(self.at(
                span,
                format!("public_baseurl {public_baseurl} is not https, but Nginx serves HTTPS (`[deployments.NAME.tls]`)"),
                "must be https://",
                "give the https URL clients use, e.g. \"https://matrix.example.org/\"",
            ));
        }
        let certificate = self.file_path(&tls.certificate, "certificate")?;
        let key = self.file_path(&tls.key, "key")?;
        let pair = read_tls_pair(&certificate, &key)
            .map_err(|(file, why)| {
                let (value, what) = match file {
                    TlsFile::Certificate => (&tls.certificate, "certificate"),
                    TlsFile::Key => (&tls.key, "key"),
                };
                self.at(
                    value,
                    format!("TLS {what}: {why}"),
                    &format!("unusable {what}"),
                    "give PEM files on this machine, relative to the inventory's directory: `certificate` the server's certificate then its intermediates (fullchain.pem), `key` its unencrypted private key (privkey.pem)",
                )
            })?;
        if pair.expired {
            self.warn(
                &tls.certificate,
                format!("the TLS certificate expired on {}", pair.not_after),
                "expired",
                "renew it: clients and other homeservers refuse an expired certificate",
            );
        }
        let federation = match tls.federation.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("8448") => Federation::Port,
            Some("well-known") => Federation::WellKnown,
            Some(other) => {
                return Err(self.at(
                    tls.federation.as_ref().unwrap_or(&tls.key),
                    format!("unknown federation mode `{other}`"),
                    "unknown mode",
                    "use \"8448\" (federation on its own port) or \"well-known\" (on the HTTPS port, delegated by /.well-known/matrix/server)",
                ));
            }
        };
        Ok(Some(TlsSettings {
            pair,
            federation,
            https_port: self.tls_port(&tls.https_port, "https_port", 443)?,
            federation_port: self.tls_port(&tls.federation_port, "federation_port", 8448)?,
        }))
    }

    fn tls_port(
        &self,
        port: &Option<toml::Spanned<u16>>,
        key: &str,
        default: u16,
    ) -> Result<u16, InventoryError> {
        self.bounded(
            port,
            key,
            1..=u16::MAX,
            default,
            "give a port from 1 to 65535",
        )
    }
}

/// The host ports the TLS listeners publish: HTTPS, and federation's own when it has one.
pub(super) fn tls_ports(
    tls: &RawTls,
    settings: &TlsSettings,
) -> Vec<(u16, &'static str, std::ops::Range<usize>)> {
    let span = |p: &Option<toml::Spanned<u16>>| {
        p.as_ref()
            .map_or_else(|| tls.certificate.span(), |p| p.span())
    };
    let mut ports = vec![(
        settings.https_port,
        "Nginx's HTTPS port",
        span(&tls.https_port),
    )];
    if settings.federation == Federation::Port {
        ports.push((
            settings.federation_port,
            "Nginx's federation port",
            span(&tls.federation_port),
        ));
    }
    ports
}
