//! The values of `[deployments.NAME.tls.acme]`: certificates that an ACME CA issues and a
//! client on the host renews. Each is checked here, when the inventory loads, so that the
//! scripts rendered for the host (which pass them to lego) only ever receive a value that
//! means what the inventory documents: no option, no shell word, no line break.

use crate::secrets::Secret;

/// Let's Encrypt's production directory: the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Most names of one certificate: Let's Encrypt's limit, and far beyond a homeserver's two.
pub const MAX_NAMES: usize = 100;

/// What the CA is asked for and how it checks that the host controls the names.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The account's contact address, a plain `local@domain`.
    pub email: String,
    /// The CA's RFC 8555 directory, an https URL.
    pub directory: String,
    /// Certificates (PEM) the client trusts for the directory itself: a private or test CA.
    pub ca_bundle: Option<String>,
    /// The certificate's names, lowercase, the first one naming lego's files.
    pub names: Vec<String>,
    pub key_type: KeyType,
    pub challenge: Challenge,
}

/// How the CA validates the names.
#[derive(Debug, Clone)]
pub enum Challenge {
    /// HTTP-01: the CA fetches a token from port 80, which the deployment's Nginx serves
    /// from the challenge directory.
    Http,
    /// DNS-01: the client writes a TXT record through the provider's API.
    Dns {
        provider: DnsProvider,
        credentials: Option<DnsCredentials>,
    },
}

/// The certificate key's algorithm and size, as lego's `--key-type` names it (lego 4.9 has
/// no rsa3072; rsa8192 is left out: slow to make and to use, and no CA needs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ec256,
    Ec384,
    Rsa2048,
    Rsa4096,
}

impl KeyType {
    pub const ALL: [KeyType; 4] = [
        KeyType::Ec256,
        KeyType::Ec384,
        KeyType::Rsa2048,
        KeyType::Rsa4096,
    ];

    /// As the inventory and lego spell it.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Ec256 => "ec256",
            KeyType::Ec384 => "ec384",
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa4096 => "rsa4096",
        }
    }

    pub fn parse(text: &str) -> Result<KeyType, String> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.name() == text)
            .ok_or_else(|| "it is not a key type synprov knows".into())
    }
}

/// A lego DNS provider's code (`cloudflare`, `route53`, `rfc2136`, ...): lowercase letters,
/// digits and `-`, so that it is one word on lego's command line. Which codes exist is
/// lego's to say (`lego dnshelp`); an unknown one fails the first issuance with lego's
/// list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsProvider(String);
super::checked_string!(DnsProvider);

impl DnsProvider {
    pub fn parse(text: &str) -> Result<DnsProvider, String> {
        if text.is_empty() || text.len() > 40 {
            return Err("a provider code has 1 to 40 characters".into());
        }
        if !text.starts_with(|c: char| c.is_ascii_lowercase())
            || !text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(
                "a provider code is lowercase letters, digits and `-`, starting with a letter"
                    .into(),
            );
        }
        if text == "manual" {
            return Err(
                "`manual` waits for someone to create the record by hand: the renewal runs unattended"
                    .into(),
            );
        }
        Ok(DnsProvider(text.to_string()))
    }
}

/// The environment a lego DNS provider reads its credentials from (`CLOUDFLARE_DNS_API_TOKEN=...`),
/// as a Docker env file: one `NAME=VALUE` a line. A secret: its text never shows in
/// `Debug`, output or plans.
#[derive(Debug, Clone)]
pub struct DnsCredentials {
    /// The variables' names, which may be shown.
    pub names: Vec<String>,
    /// The env file, normalised: comments and blank lines dropped.
    pub env_file: Secret,
}

/// Variables synprov sets for lego itself, which the credentials may not replace.
const RESERVED: [&str; 2] = ["LEGO_CA_CERTIFICATES", "SYNPROV_ACME_DAYS"];

impl DnsCredentials {
    /// Reads `NAME=VALUE` lines (`#` comments and blank lines skipped). Names are
    /// uppercase letters, digits and `_`; values hold no control character. A refusal
    /// names the line, never its value.
    pub fn parse(text: &str) -> Result<DnsCredentials, String> {
        let mut names = Vec::new();
        let mut env_file = String::new();
        for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err(format!("line {number} is not NAME=VALUE"));
            };
            let valid_name = name.starts_with(|c: char| c.is_ascii_uppercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !valid_name {
                return Err(format!(
                    "line {number}: a variable's name is uppercase letters, digits and `_`, starting with a letter"
                ));
            }
            if RESERVED.contains(&name) {
                return Err(format!("line {number}: synprov sets {name} itself"));
            }
            if value.chars().any(char::is_control) {
                return Err(format!(
                    "line {number}: the value of {name} holds a control character"
                ));
            }
            if names.iter().any(|n| n == name) {
                return Err(format!("line {number}: {name} is set twice"));
            }
            names.push(name.to_string());
            env_file.push_str(line);
            env_file.push('\n');
        }
        if names.is_empty() {
            return Err("it sets no variable (one `NAME=VALUE` a line)".into());
        }
        Ok(DnsCredentials {
            names,
            env_file: Secret::given(env_file),
        })
    }
}

/// A plain `local@domain` address (`mailto:` dropped): the CA writes to it about expiry
/// and its account.
pub fn acme_email(text: &str) -> Result<String, String> {
    let mailto = super::admin_contact(text)?;
    Ok(mailto.trim_start_matches("mailto:").to_string())
}

/// The CA's directory: `production` or `staging` (Let's Encrypt's), or an https URL with a
/// host and no user, password, query or fragment (RFC 8555 requires HTTPS).
pub fn acme_directory(text: &str) -> Result<String, String> {
    match text {
        "production" => return Ok(LETS_ENCRYPT.into()),
        "staging" => return Ok(LETS_ENCRYPT_STAGING.into()),
        _ => {}
    }
    super::no_control_characters(text)?;
    let url = url::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if url.scheme() != "https" {
        return Err("an ACME directory is an https URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("it holds a user name or password".into());
    }
    if url.fragment().is_some() {
        return Err("it has a fragment (`#`)".into());
    }
    Ok(url.into())
}

/// A certificate name: a DNS name, lowercase; `*.` before it (a wildcard) only when
/// `wildcard` (DNS-01: HTTP-01 cannot prove a wildcard).
pub fn acme_name(text: &str, wildcard: bool) -> Result<String, String> {
    let name = text.to_ascii_lowercase();
    let base = match name.strip_prefix("*.") {
        Some(_) if !wildcard => {
            return Err("a wildcard name needs DNS-01 (`dns_provider`)".into());
        }
        Some(base) => base,
        None => &name,
    };
    super::check_dns_name(base).map_err(|why| format!("not a DNS name: {why}"))?;
    if !base.contains('.') {
        return Err("a public CA issues only for names with a dot (a domain)".into());
    }
    if base.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("it is an IP address, not a DNS name".into());
    }
    Ok(name)
}

/// Whether certificate name `name` (maybe a wildcard) is valid for host `host`.
pub fn covers(name: &str, host: &str) -> bool {
    match name.strip_prefix("*.") {
        Some(base) => host
            .split_once('.')
            .is_some_and(|(_, parent)| parent == base),
        None => name == host,
    }
}

/// The CA bundle's certificates, PEM: at least one certificate and no private key (a key
/// in the file would be copied to the host as if it were public).
pub fn ca_bundle(text: &str) -> Result<String, String> {
    if text.contains("PRIVATE KEY-----") {
        return Err("it holds a private key: give the CA's certificates only".into());
    }
    let certificates = openssl::x509::X509::stack_from_pem(text.as_bytes()).unwrap_or_default();
    if certificates.is_empty() {
        return Err("it holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into());
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_is_lets_encrypt_by_word_or_any_https_url() {
        assert_eq!(acme_directory("production").unwrap(), LETS_ENCRYPT);
        assert_eq!(acme_directory("staging").unwrap(), LETS_ENCRYPT_STAGING);
        assert_eq!(
            acme_directory("https://pebble:14000/dir").unwrap(),
            "https://pebble:14000/dir"
        );
        for bad in [
            "http://ca.example/dir",
            "https://u:p@ca.example/dir",
            "https://ca.example/dir#x",
            "https://ca.example/\ndir",
            "ca.example",
            "Production",
        ] {
            assert!(acme_directory(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_lowercase_dns_names_and_wildcards_need_dns_01() {
        assert_eq!(
            acme_name("Matrix.Example.ORG", false).unwrap(),
            "matrix.example.org"
        );
        assert_eq!(acme_name("*.example.org", true).unwrap(), "*.example.org");
        assert!(acme_name("*.example.org", false).is_err());
        for bad in [
            "localhost",
            "192.0.2.1",
            "a..b",
            "-a.example",
            "a b.example",
            "a.example;rm",
            "--domains.example",
            "*.*.example.org",
            "",
        ] {
            assert!(acme_name(bad, true).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_wildcard_covers_one_level_only() {
        assert!(covers("*.example.org", "matrix.example.org"));
        assert!(!covers("*.example.org", "example.org"));
        assert!(!covers("*.example.org", "a.matrix.example.org"));
        assert!(covers("example.org", "example.org"));
    }

    #[test]
    fn key_types_are_lego_s_names() {
        assert_eq!(KeyType::parse("ec384").unwrap(), KeyType::Ec384);
        assert_eq!(KeyType::parse("rsa4096").unwrap().name(), "rsa4096");
        for bad in ["EC256", "rsa1024", "rsa3072", "ed25519", ""] {
            assert!(KeyType::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_provider_is_one_lowercase_word_and_never_manual() {
        assert_eq!(&*DnsProvider::parse("acme-dns").unwrap(), "acme-dns");
        assert!(DnsProvider::parse("route53").is_ok());
        for bad in ["manual", "Cloudflare", "--dns", "a b", "", "1und1x"] {
            assert!(DnsProvider::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn credentials_are_env_lines_whose_values_never_show_in_errors() {
        let credentials = DnsCredentials::parse(
            "# Cloudflare\n\nCF_DNS_API_TOKEN=s3cr=t\r\nCF_ZONE_API_TOKEN=z\n",
        )
        .unwrap();
        assert_eq!(credentials.names, ["CF_DNS_API_TOKEN", "CF_ZONE_API_TOKEN"]);
        assert_eq!(
            credentials.env_file.expose(),
            "CF_DNS_API_TOKEN=s3cr=t\nCF_ZONE_API_TOKEN=z\n"
        );
        assert!(!format!("{credentials:?}").contains("s3cr"));
        for (bad, why) in [
            ("token", "line 1 is not NAME=VALUE"),
            ("lower=x", "line 1: a variable's name"),
            ("A=1\nA=2", "line 2: A is set twice"),
            (
                "A=s3cr\u{1b}t",
                "line 1: the value of A holds a control character",
            ),
            (
                "LEGO_CA_CERTIFICATES=/x",
                "synprov sets LEGO_CA_CERTIFICATES",
            ),
            ("# nothing\n", "sets no variable"),
        ] {
            let error = DnsCredentials::parse(bad).unwrap_err();
            assert!(error.contains(why), "{bad:?}: {error}");
            assert!(!error.contains("s3cr"), "{error}");
        }
    }

    #[test]
    fn a_ca_bundle_is_certificates_without_a_key() {
        assert!(ca_bundle("not pem").is_err());
        let key = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
        assert!(ca_bundle(key).unwrap_err().contains("private key"));
    }

    #[test]
    fn the_email_is_a_plain_address() {
        assert_eq!(
            acme_email("mailto:admin@example.org").unwrap(),
            "admin@example.org"
        );
        assert!(acme_email("admin").is_err());
        assert!(acme_email("-a@example.org\n").is_err());
    }
}
