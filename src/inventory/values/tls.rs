//! The certificate and key of `[deployments.NAME.tls]`: read from the controller when the
//! inventory is loaded, so that a missing file, a file that is not PEM or a key of another
//! certificate stops synprov before it connects anywhere, not Nginx on the host.

use std::io::Read;
use std::path::Path;

use openssl::pkey::PKey;
use openssl::x509::X509;

use crate::secrets::Secret;

/// The largest certificate chain or key file read: a chain of a few certificates is a few
/// KiB, and the file is read whole into memory.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// A certificate chain and its private key, both PEM as the operator gave them (Nginx reads
/// them unchanged). The key is a [`Secret`]: it never shows in `Debug` or `Display`.
#[derive(Debug, Clone)]
pub struct TlsPair {
    /// The server's certificate first, then the intermediates.
    pub certificate: String,
    pub key: Secret,
    /// When the server's certificate stops being valid, as OpenSSL prints it.
    pub not_after: String,
    /// Whether the server's certificate is no longer valid today.
    pub expired: bool,
}

/// Which file of the pair a refusal is about, so the error points at its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Certificate,
    Key,
}

/// Reads `certificate` and `key` and checks that they are PEM, and that the key is the one
/// of the chain's first certificate. The reason of a refusal never quotes the key.
pub fn read_tls_pair(certificate: &Path, key: &Path) -> Result<TlsPair, (TlsFile, String)> {
    let cert_text = read_text(certificate).map_err(|why| (TlsFile::Certificate, why))?;
    let chain = X509::stack_from_pem(cert_text.as_bytes()).unwrap_or_default();
    let Some(leaf) = chain.first() else {
        return Err((
            TlsFile::Certificate,
            format!(
                "{} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                certificate.display()
            ),
        ));
    };
    let key_text = read_text(key).map_err(|why| (TlsFile::Key, why))?;
    let private = PKey::private_key_from_pem(key_text.as_bytes()).map_err(|_| {
        (
            TlsFile::Key,
            format!(
                "{} holds no unencrypted PEM private key (`-----BEGIN PRIVATE KEY-----`, or an RSA or EC key)",
                key.display()
            ),
        )
    })?;
    let matches = leaf
        .public_key()
        .map(|public| public.public_eq(&private))
        .unwrap_or(false);
    if !matches {
        return Err((
            TlsFile::Key,
            format!(
                "the key in {} is not the key of the certificate in {} (its first certificate must be the server's)",
                key.display(),
                certificate.display()
            ),
        ));
    }
    let expired = openssl::asn1::Asn1Time::days_from_now(0)
        .map(|now| leaf.not_after() < now)
        .unwrap_or(false);
    Ok(TlsPair {
        not_after: leaf.not_after().to_string(),
        expired,
        certificate: cert_text,
        key: Secret::given(key_text),
    })
}

/// A regular file's text, at most [`MAX_PEM_BYTES`]: the certificate files, the ACME CA
/// bundle and DNS credentials, all small files of the controller.
pub fn read_text(path: &Path) -> Result<String, String> {
    let cannot = |why: String| format!("cannot read {}: {why}", path.display());
    let metadata = std::fs::metadata(path).map_err(|e| cannot(e.to_string()))?;
    if !metadata.is_file() {
        return Err(cannot("it is not a regular file".into()));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(|e| cannot(e.to_string()))?
        .take(MAX_PEM_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|_| cannot("it is not text".into()))?;
    if text.len() as u64 > MAX_PEM_BYTES {
        return Err(cannot(format!("it is larger than {MAX_PEM_BYTES} bytes")));
    }
    Ok(text)
}
