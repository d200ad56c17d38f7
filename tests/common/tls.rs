//! A certificate authority made at test time, and the server certificates it signs: the
//! chain a client verifies is one no public CA had a part in.

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};

/// A CA: its key and self-signed certificate.
pub struct TestCa {
    key: PKey<Private>,
    cert: X509,
}

/// A P-256 key: quick to make.
fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A certificate of `key` named `common_name`, valid over `days` (from today, in days); the
/// issuer and extensions are the caller's.
fn builder(
    common_name: &str,
    key: &PKey<Private>,
    days: std::ops::Range<i64>,
) -> openssl::x509::X509Builder {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)
        .unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    cert.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_pubkey(key).unwrap();
    let day = |offset: i64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        Asn1Time::from_unix(now + offset * 86_400).unwrap()
    };
    cert.set_not_before(&day(days.start)).unwrap();
    cert.set_not_after(&day(days.end)).unwrap();
    cert
}

impl TestCa {
    pub fn new(common_name: &str) -> TestCa {
        let key = new_key();
        let mut cert = builder(common_name, &key, -2..30);
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, common_name)
            .unwrap();
        cert.set_issuer_name(&name.build()).unwrap();
        cert.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        cert.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
        cert.sign(&key, MessageDigest::sha256()).unwrap();
        TestCa {
            key,
            cert: cert.build(),
        }
    }

    /// The CA's certificate, PEM: what a client trusts.
    pub fn pem(&self) -> String {
        String::from_utf8(self.cert.to_pem().unwrap()).unwrap()
    }

    /// A server certificate for `names` (DNS names; IP addresses as `IP:...`), signed by
    /// this CA: the certificate PEM and its key PEM (PKCS#8).
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        self.issue_for(names, 0..30)
    }

    /// [`TestCa::issue`] with a certificate valid over `days` (from today, in days).
    pub fn issue_for(&self, names: &[&str], days: std::ops::Range<i64>) -> (String, String) {
        let key = new_key();
        let mut cert = builder(names[0].trim_start_matches("IP:"), &key, days);
        cert.set_issuer_name(self.cert.subject_name()).unwrap();
        let mut san = SubjectAlternativeName::new();
        for name in names {
            match name.strip_prefix("IP:") {
                Some(ip) => san.ip(ip),
                None => san.dns(name),
            };
        }
        let san = san
            .build(&cert.x509v3_context(Some(&self.cert), None))
            .unwrap();
        cert.append_extension(san).unwrap();
        cert.sign(&self.key, MessageDigest::sha256()).unwrap();
        let cert = cert.build();
        (
            String::from_utf8(cert.to_pem().unwrap()).unwrap(),
            String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        )
    }
}

/// A TLS connection to `address:port` for `name`, its chain verified against `ca_pem`
/// alone (not the system's CAs); `configure` narrows what the client offers.
pub fn connect(
    address: &str,
    port: u16,
    name: &str,
    ca_pem: &str,
    configure: impl FnOnce(&mut openssl::ssl::SslConnectorBuilder),
) -> Result<openssl::ssl::SslStream<std::net::TcpStream>, String> {
    use openssl::ssl::{SslConnector, SslMethod};
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    let mut store = openssl::x509::store::X509StoreBuilder::new().unwrap();
    store
        .add_cert(X509::from_pem(ca_pem.as_bytes()).unwrap())
        .unwrap();
    builder.set_verify_cert_store(store.build()).unwrap();
    configure(&mut builder);
    let tcp = std::net::TcpStream::connect((address, port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    builder
        .build()
        .connect(name, tcp)
        .map_err(|e| e.to_string())
}

/// The certificate the server at `address:port` presents, PEM, once verified against
/// `ca_pem` for `name`.
pub fn served_certificate(address: &str, port: u16, name: &str, ca_pem: &str) -> String {
    let stream = connect(address, port, name, ca_pem, |_| {})
        .unwrap_or_else(|e| panic!("TLS handshake with {address}:{port} failed: {e}"));
    let cert = stream.ssl().peer_certificate().expect("a certificate");
    String::from_utf8(cert.to_pem().unwrap()).unwrap()
}

/// An HTTP client (ureq) that trusts `ca_pem` alone, as a Matrix client set up with the
/// deployment's CA would.
pub fn https_agent(ca_pem: &str) -> ureq::Agent {
    https_agent_resolving(ca_pem, &[])
}

/// [`https_agent`], reaching each name of `hosts` at its address (a test's DNS), and
/// other names through the system's resolver.
pub fn https_agent_resolving(ca_pem: &str, hosts: &[(&str, &str)]) -> ureq::Agent {
    use std::sync::Arc;
    let der = X509::from_pem(ca_pem.as_bytes()).unwrap().to_der().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let hosts: Vec<(String, String)> = hosts
        .iter()
        .map(|(name, ip)| (name.to_string(), ip.to_string()))
        .collect();
    let resolve = move |netloc: &str| -> std::io::Result<Vec<std::net::SocketAddr>> {
        use std::net::ToSocketAddrs;
        let (host, port) = netloc.rsplit_once(':').unwrap_or((netloc, "443"));
        match hosts.iter().find(|(name, _)| name == host) {
            Some((_, ip)) => format!("{ip}:{port}")
                .to_socket_addrs()
                .map(Iterator::collect),
            None => netloc.to_socket_addrs().map(Iterator::collect),
        }
    };
    ureq::AgentBuilder::new()
        .tls_config(Arc::new(config))
        .resolver(resolve)
        .build()
}
