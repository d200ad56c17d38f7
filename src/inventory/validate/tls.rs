//! `[deployments.NAME.tls]`: the certificate's source (files read and checked, or ACME, in
//! `acme.rs`), the federation mode, the ports, and a public_baseurl that clients reach over
//! HTTPS.

use super::Checker;
use crate::inventory::InventoryError;
use crate::inventory::raw::{RawDeployment, RawTls};
use crate::inventory::values::{TlsFile, TlsPair, read_tls_pair};
use crate::inventory::{CertificateSource, Federation, TlsSettings};

impl Checker<'_> {
    /// The deployment's TLS settings, `None` when it has no `tls` table. `public_baseurl` is
    /// the validated one: with TLS it must be `https://`.
    pub(super) fn tls(
        &self,
        raw: &RawDeployment,
        public_baseurl: &str,
    ) -> Result<Option<TlsSettings>, InventoryError> {
        let Some(raw_tls) = &raw.tls else {
            return Ok(None);
        };
        let tls = raw_tls.get_ref();
        if !public_baseurl.starts_with("https://") {
            let span = raw
                .public_baseurl
                .as_ref()
                .map_or_else(|| raw_tls.span(), |url| url.span());
            return Err(self.source.error(
                span,
                format!("public_baseurl {public_baseurl} is not https, but Nginx serves HTTPS (`[deployments.NAME.tls]`)"),
                "must be https://",
                "give the https URL clients use, e.g. \"https://matrix.example.org/\"",
            ));
        }
        let federation = match &tls.federation {
            None => Federation::Port,
            Some(mode) if mode.get_ref() == "8448" => Federation::Port,
            Some(mode) if mode.get_ref() == "well-known" => Federation::WellKnown,
            Some(mode) => {
                return Err(self.at(
                    mode,
                    format!("unknown federation mode `{}`", mode.get_ref()),
                    "unknown mode",
                    "use \"8448\" (federation on its own port) or \"well-known\" (on the HTTPS port, delegated by /.well-known/matrix/server)",
                ));
            }
        };
        let certificate = match (&tls.certificate, &tls.key, &tls.acme) {
            (Some(certificate), Some(key), None) => {
                CertificateSource::Files(self.tls_files(certificate, key)?)
            }
            (None, None, Some(acme)) => {
                CertificateSource::Acme(self.acme(raw, acme, public_baseurl, federation)?)
            }
            (Some(_), Some(_), Some(acme)) => {
                return Err(self.at(
                    acme,
                    "`[deployments.NAME.tls]` has both certificate files and `acme`",
                    "second certificate source",
                    "keep one: `certificate` and `key` (files you renew), or `[deployments.NAME.tls.acme]` (issued and renewed on the host)",
                ));
            }
            (Some(only), None, _) | (None, Some(only), _) => {
                return Err(self.at(
                    only,
                    "`certificate` and `key` go together",
                    "needs its pair",
                    "give both `certificate` (fullchain.pem) and `key` (privkey.pem), or neither and `[deployments.NAME.tls.acme]`",
                ));
            }
            (None, None, None) => {
                return Err(self.at(
                    raw_tls,
                    "`[deployments.NAME.tls]` says nowhere where the certificate comes from",
                    "no certificate",
                    "add `[deployments.NAME.tls.acme]` with `email = \"...\"` (a certificate from Let's Encrypt, renewed on the host), or `certificate` and `key` files",
                ));
            }
        };
        Ok(Some(TlsSettings {
            certificate,
            federation,
            https_port: self.tls_port(&tls.https_port, "https_port", 443)?,
            federation_port: self.tls_port(&tls.federation_port, "federation_port", 8448)?,
        }))
    }

    /// The operator's certificate and key, read and checked; an expired certificate is a
    /// warning.
    fn tls_files(
        &self,
        certificate: &toml::Spanned<String>,
        key: &toml::Spanned<String>,
    ) -> Result<TlsPair, InventoryError> {
        let (certificate_path, key_path) = (
            self.file_path(certificate, "certificate")?,
            self.file_path(key, "key")?,
        );
        let pair = read_tls_pair(&certificate_path, &key_path).map_err(
            |(file, why)| {
                let (value, what) = match file {
                    TlsFile::Certificate => (certificate, "certificate"),
                    TlsFile::Key => (key, "key"),
                };
                self.at(
                    value,
                    format!("TLS {what}: {why}"),
                    &format!("unusable {what}"),
                    "give PEM files on this machine, relative to the inventory's directory: `certificate` the server's certificate then its intermediates (fullchain.pem), `key` its unencrypted private key (privkey.pem)",
                )
            },
        )?;
        if pair.expired {
            self.warn(
                certificate,
                format!("the TLS certificate expired on {}", pair.not_after),
                "expired",
                "renew it: clients and other homeservers refuse an expired certificate",
            );
        }
        Ok(pair)
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
    raw_tls: &toml::Spanned<RawTls>,
    settings: &TlsSettings,
) -> Vec<(u16, &'static str, std::ops::Range<usize>)> {
    let tls = raw_tls.get_ref();
    let span =
        |p: &Option<toml::Spanned<u16>>| p.as_ref().map_or_else(|| raw_tls.span(), |p| p.span());
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
