//! `[deployments.NAME.tls.acme]`: the CA, the account's address, the names and how they
//! are proven, each checked into a typed value with a located error.

use toml::Spanned;

use super::Checker;
use crate::inventory::raw::{RawAcme, RawDeployment};
use crate::inventory::values::{
    AcmeSettings, Challenge, DnsCredentials, DnsProvider, KeyType, LETS_ENCRYPT, MAX_NAMES,
    acme_directory, acme_email, acme_name, ca_bundle, covers, read_text,
};
use crate::inventory::{Federation, InventoryError};

impl Checker<'_> {
    /// The ACME settings of `raw`'s `tls.acme` table. `public_baseurl` is the validated,
    /// https one: its host is a name of the certificate, by default with `server_name` when
    /// Nginx serves the `.well-known` delegation (other servers then reach it by that name).
    pub(super) fn acme(
        &self,
        raw: &RawDeployment,
        table: &Spanned<RawAcme>,
        public_baseurl: &str,
        federation: Federation,
    ) -> Result<AcmeSettings, InventoryError> {
        let acme = table.get_ref();
        let email = self.parsed(
            &acme.email,
            "ACME email",
            acme_email,
            "give the address the CA writes to about the account and expiring certificates, e.g. \"admin@example.org\"",
        )?;
        let directory = match &acme.directory {
            Some(directory) => self.parsed(
                directory,
                "ACME directory",
                acme_directory,
                "give \"production\" or \"staging\" (Let's Encrypt's), or the https URL of another RFC 8555 CA's directory",
            )?,
            None => LETS_ENCRYPT.to_string(),
        };
        let ca_bundle = acme
            .ca_bundle
            .as_ref()
            .map(|path| {
                self.file(
                    path,
                    "ACME ca_bundle",
                    ca_bundle,
                    "give a PEM file of the certificates that sign the CA directory's own HTTPS certificate (a private or test CA), relative to the inventory's directory",
                )
            })
            .transpose()?;
        let challenge = self.challenge(table)?;
        let wildcard = matches!(challenge, Challenge::Dns { .. });
        let host = url::Url::parse(public_baseurl)
            .ok()
            .and_then(|url| url.host_str().map(str::to_string))
            .unwrap_or_default();
        let names = match &acme.names {
            Some(names) => self.acme_names(names, wildcard, &host)?,
            None => self.default_names(raw, table, &host, federation)?,
        };
        let key_type = match &acme.key_type {
            Some(key_type) => self.parsed(
                key_type,
                "ACME key_type",
                KeyType::parse,
                &format!("use one of {}", KeyType::ALL.map(KeyType::name).join(", ")),
            )?,
            None => KeyType::Ec256,
        };
        if let (Challenge::Http, Some(port)) = (&challenge, &raw.nginx.http_port)
            && *port.get_ref() != 80
        {
            self.warn(
                port,
                format!(
                    "the CA checks HTTP-01 on port 80, and Nginx's HTTP is published on {}",
                    port.get_ref()
                ),
                "not port 80",
                "forward port 80 of the names' address to this port, or use DNS-01 (`dns_provider`)",
            );
        }
        Ok(AcmeSettings {
            email,
            directory,
            ca_bundle,
            names,
            key_type,
            challenge,
        })
    }

    /// HTTP-01, or DNS-01 through `dns_provider` with its `dns_credentials`.
    fn challenge(&self, table: &Spanned<RawAcme>) -> Result<Challenge, InventoryError> {
        let acme = table.get_ref();
        let Some(provider) = &acme.dns_provider else {
            return match &acme.dns_credentials {
                Some(credentials) => Err(self.at(
                    credentials,
                    "dns_credentials without dns_provider",
                    "unused credentials",
                    "add `dns_provider = \"...\"` (lego's provider code, e.g. \"cloudflare\"), or remove `dns_credentials` for HTTP-01",
                )),
                None => Ok(Challenge::Http),
            };
        };
        let provider = self.parsed(
            provider,
            "dns_provider",
            DnsProvider::parse,
            "give lego's code of your DNS provider, e.g. \"cloudflare\", \"route53\" or \"rfc2136\" (`lego dnshelp` lists them)",
        )?;
        let credentials = acme
            .dns_credentials
            .as_ref()
            .map(|path| {
                self.file(
                    path,
                    "dns_credentials",
                    DnsCredentials::parse,
                    "give a file of `NAME=VALUE` lines, the variables lego's provider reads (`lego dnshelp -c PROVIDER`), relative to the inventory's directory",
                )
            })
            .transpose()?;
        Ok(Challenge::Dns {
            provider,
            credentials,
        })
    }

    /// `names` as given: DNS names, no two alike, at most [`MAX_NAMES`], one of them valid
    /// for `host` (public_baseurl's: clients reach the homeserver by it).
    fn acme_names(
        &self,
        names: &Spanned<Vec<Spanned<String>>>,
        wildcard: bool,
        host: &str,
    ) -> Result<Vec<String>, InventoryError> {
        let help = "give DNS names that resolve to this host, e.g. [\"matrix.example.org\", \"example.org\"]";
        if names.get_ref().is_empty() || names.get_ref().len() > MAX_NAMES {
            return Err(self.at(
                names,
                format!("an ACME certificate has 1 to {MAX_NAMES} names"),
                "wrong number of names",
                help,
            ));
        }
        let mut out: Vec<String> = Vec::new();
        for name in names.get_ref() {
            let parsed = self.parsed(name, "ACME name", |n| acme_name(n, wildcard), help)?;
            if out.contains(&parsed) {
                return Err(self.at(name, format!("{parsed} is named twice"), "again", help));
            }
            out.push(parsed);
        }
        if !out.iter().any(|name| covers(name, host)) {
            return Err(self.at(
                names,
                format!(
                    "no name is valid for {host}, public_baseurl's host, which clients connect to"
                ),
                "misses public_baseurl's host",
                format!("add \"{host}\" to `names`"),
            ));
        }
        Ok(out)
    }

    /// public_baseurl's host, and `server_name` (its host part) when Nginx serves the
    /// delegation documents, which other servers fetch from `https://server_name/`.
    fn default_names(
        &self,
        raw: &RawDeployment,
        table: &Spanned<RawAcme>,
        host: &str,
        federation: Federation,
    ) -> Result<Vec<String>, InventoryError> {
        let mut names = vec![(host.to_string(), raw.public_baseurl.as_ref())];
        if federation == Federation::WellKnown {
            let server = raw.server_name.get_ref();
            let server = server
                .rsplit_once(':')
                .filter(|(_, port)| port.parse::<u16>().is_ok())
                .map_or(server.as_str(), |(name, _)| name);
            names.push((server.to_string(), Some(&raw.server_name)));
        }
        let mut out: Vec<String> = Vec::new();
        for (name, from) in names {
            let parsed = acme_name(&name, false).map_err(|why| {
                let span = from.map_or_else(|| table.span(), |value| value.span());
                self.source.error(
                    span,
                    format!("{name} cannot be a name of an ACME certificate: {why}"),
                    "not a certificate name",
                    "give the certificate's DNS names in `[deployments.NAME.tls.acme]`: `names = [\"matrix.example.org\"]`",
                )
            })?;
            if !out.contains(&parsed) {
                out.push(parsed);
            }
        }
        Ok(out)
    }

    /// The file `path` names (relative to the inventory's directory), read and parsed by
    /// `parse`, or an error pointing at `path`. The reason of a refusal is the parser's,
    /// which never quotes a secret.
    fn file<T>(
        &self,
        path: &Spanned<String>,
        what: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
        help: &str,
    ) -> Result<T, InventoryError> {
        let full = self.file_path(path, what)?;
        read_text(&full)
            .and_then(|text| parse(&text).map_err(|why| format!("{}: {why}", full.display())))
            .map_err(|why| {
                self.at(
                    path,
                    format!("{what}: {why}"),
                    &format!("unusable {what}"),
                    help,
                )
            })
    }
}

#[cfg(test)]
mod tests {

    use crate::inventory::values::LETS_ENCRYPT_STAGING;
    use crate::inventory::{AcmeSettings, CertificateSource, parse};

    use super::*;

    /// The ACME settings of a deployment of example.org at `baseurl` whose `[tls]` table
    /// holds `tls` and whose `[tls.acme]` table holds `acme`, with `files` beside it.
    fn acme(
        baseurl: &str,
        tls: &str,
        acme: &str,
        files: &[(&str, &str)],
    ) -> Result<AcmeSettings, String> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let text = format!(
            "[hosts.h]\naddress = \"192.0.2.1\"\n[deployments.d]\nserver_name = \"example.org\"\n\
             public_baseurl = \"{baseurl}\"\nhost = \"h\"\n[deployments.d.tls]\n{tls}\n\
             [deployments.d.tls.acme]\n{acme}\n"
        );
        let inventory =
            parse(&dir.path().join("inventory.toml"), text).map_err(|e| format!("{e:?}"))?;
        match &inventory.deployments["d"].tls.as_ref().unwrap().certificate {
            CertificateSource::Acme(acme) => Ok(acme.clone()),
            CertificateSource::Files(_) => panic!("files"),
        }
    }

    const EMAIL: &str = "email = \"admin@example.org\"";

    #[test]
    fn by_default_lets_encrypt_issues_an_ec256_certificate_for_the_base_url_s_host_over_http_01() {
        let settings = acme("https://matrix.example.org/", "", EMAIL, &[]).unwrap();
        assert_eq!(settings.email, "admin@example.org");
        assert_eq!(settings.directory, LETS_ENCRYPT);
        assert_eq!(settings.names, ["matrix.example.org"]);
        assert_eq!(settings.key_type, KeyType::Ec256);
        assert!(matches!(settings.challenge, Challenge::Http));
        assert!(settings.ca_bundle.is_none());
    }

    #[test]
    fn well_known_delegation_adds_the_server_name_to_the_default_names() {
        let settings = acme(
            "https://matrix.example.org/",
            "federation = \"well-known\"",
            EMAIL,
            &[],
        )
        .unwrap();
        assert_eq!(settings.names, ["matrix.example.org", "example.org"]);
        let same = acme(
            "https://example.org/",
            "federation = \"well-known\"",
            EMAIL,
            &[],
        )
        .unwrap();
        assert_eq!(same.names, ["example.org"]);
    }

    #[test]
    fn every_setting_is_read_into_its_typed_value() {
        let ca = openssl_ca();
        let settings = acme(
            "https://matrix.example.org/",
            "",
            &format!(
                "{EMAIL}\ndirectory = \"staging\"\nca_bundle = \"ca.pem\"\nkey_type = \"rsa4096\"\n\
                 names = [\"Matrix.Example.org\", \"*.example.org\"]\ndns_provider = \"cloudflare\"\n\
                 dns_credentials = \"dns.env\""
            ),
            &[("ca.pem", &ca), ("dns.env", "CF_DNS_API_TOKEN=t0ken\n")],
        )
        .unwrap();
        assert_eq!(settings.directory, LETS_ENCRYPT_STAGING);
        assert_eq!(settings.ca_bundle.as_deref(), Some(ca.as_str()));
        assert_eq!(settings.key_type, KeyType::Rsa4096);
        assert_eq!(settings.names, ["matrix.example.org", "*.example.org"]);
        let Challenge::Dns {
            provider,
            credentials,
        } = &settings.challenge
        else {
            panic!("DNS-01 expected");
        };
        assert_eq!(&**provider, "cloudflare");
        assert_eq!(credentials.as_ref().unwrap().names, ["CF_DNS_API_TOKEN"]);
        assert!(!format!("{settings:?}").contains("t0ken"));
    }

    #[test]
    fn names_must_cover_the_base_url_s_host_and_a_wildcard_needs_dns_01() {
        let error = acme(
            "https://matrix.example.org/",
            "",
            &format!("{EMAIL}\nnames = [\"example.org\"]"),
            &[],
        )
        .unwrap_err();
        assert!(
            error.contains("no name is valid for matrix.example.org"),
            "{error}"
        );
        let error = acme(
            "https://matrix.example.org/",
            "",
            &format!("{EMAIL}\nnames = [\"*.example.org\"]"),
            &[],
        )
        .unwrap_err();
        assert!(error.contains("a wildcard name needs DNS-01"), "{error}");
        let error = acme("https://192.0.2.1/", "", EMAIL, &[]).unwrap_err();
        assert!(
            error.contains("192.0.2.1 cannot be a name of an ACME certificate"),
            "{error}"
        );
    }

    /// A self-signed CA certificate, PEM.
    fn openssl_ca() -> String {
        use openssl::{ec, nid::Nid, pkey::PKey, x509};
        let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(ec::EcKey::generate(&group).unwrap()).unwrap();
        let mut name = x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "test CA").unwrap();
        let name = name.build();
        let mut builder = x509::X509Builder::new().unwrap();
        builder.set_subject_name(&name).unwrap();
        builder.set_issuer_name(&name).unwrap();
        builder.set_pubkey(&key).unwrap();
        builder
            .set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        builder
            .set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        builder
            .sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        String::from_utf8(builder.build().to_pem().unwrap()).unwrap()
    }
}
