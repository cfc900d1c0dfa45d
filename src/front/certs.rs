//! Certificates at the front door: the listener's TLS configuration (with the verification of
//! PSP client certificates against the configured CAs), what the node knows of a client's
//! certificate ([`PeerCertificate`]: its SHA-256 fingerprint and subject), and how a PSP broker's
//! allowed certificates are matched against it. PEM files are read with rustls-pki-types.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use sha2::{Digest, Sha256};

use crate::config::{ClientAuth, NodeSection, PspBrokerConfig};

/// Why a PEM file, or a listener's TLS configuration, was refused: the message names the file
/// (after the configuration key, for a listener's).
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{}: {source}", path.display())]
    Pem {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{}: no certificate in PEM form", .0.display())]
    NoCertificate(PathBuf),
    #[error("{}: no private key in PEM form", .0.display())]
    NoKey(PathBuf),
    #[error("{}: {source}", path.display())]
    Refused {
        path: PathBuf,
        source: rustls::Error,
    },
    /// The file of a `[node]` key (`node.tls_cert`...) was refused.
    #[error("{key}: {source}")]
    NodeFile {
        key: &'static str,
        source: Box<CertError>,
    },
    #[error("node.tls_client_ca: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The certificate chain and the key do not make a server configuration.
    #[error("node.tls_cert: {0}")]
    Chain(#[from] rustls::Error),
}

impl CertError {
    /// Names the `[node]` key the file was given by.
    fn of(key: &'static str) -> impl FnOnce(CertError) -> CertError {
        move |e| CertError::NodeFile {
            key,
            source: Box::new(e),
        }
    }
}

/// The certificates of a PEM file (a chain, or a CA bundle), with errors naming the file.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|source| CertError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(CertError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => CertError::NoKey(path.to_path_buf()),
        source => CertError::Pem {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// A root store of the certificates of a PEM bundle.
pub fn read_roots(path: &Path) -> Result<RootCertStore, CertError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(path)? {
        roots.add(cert).map_err(|source| CertError::Refused {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(roots)
}

/// The TLS configuration of the nodeForPsp listener: its certificate and key, and, with
/// `tls_client_ca`, client certificates verified against those CAs (required, or optional and
/// then checked per broker by [`allows`]).
pub fn server_config(node: &NodeSection) -> Result<Option<rustls::ServerConfig>, CertError> {
    listener_config(node, true)
}

/// The TLS configuration of the admin listener: the node's certificate and key, and no client
/// certificates (the PSPs' CAs say nothing of an operator; the admin token does).
pub fn admin_config(node: &NodeSection) -> Result<Option<rustls::ServerConfig>, CertError> {
    listener_config(node, false)
}

fn listener_config(
    node: &NodeSection,
    client_certificates: bool,
) -> Result<Option<rustls::ServerConfig>, CertError> {
    let (Some(cert), Some(key)) = (&node.tls_cert, &node.tls_key) else {
        return Ok(None);
    };
    crate::install_crypto_provider();
    let builder = rustls::ServerConfig::builder();
    let builder = match node.tls_client_ca.as_ref().filter(|_| client_certificates) {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = Arc::new(read_roots(ca).map_err(CertError::of("node.tls_client_ca"))?);
            let verifier = WebPkiClientVerifier::builder(roots);
            let verifier = match node.tls_client_auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            };
            let verifier = verifier.build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = read_certificates(cert).map_err(CertError::of("node.tls_cert"))?;
    let key = read_private_key(key).map_err(CertError::of("node.tls_key"))?;
    builder
        .with_single_cert(chain, key)
        .map(Some)
        .map_err(CertError::from)
}

/// What the node knows of the certificate a client presented (verified by the handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    pub sha256: [u8; 32],
    /// `None` when the certificate's subject could not be parsed (then only fingerprints match).
    pub subject: Option<Subject>,
}

impl PeerCertificate {
    /// The end-entity certificate, DER.
    pub fn from_der(der: &[u8]) -> PeerCertificate {
        let subject = x509_parser::parse_x509_certificate(der)
            .ok()
            .and_then(|(_, cert)| Subject::parse(&cert.subject().to_string()));
        PeerCertificate {
            sha256: Sha256::digest(der).into(),
            subject,
        }
    }

    /// The fingerprint as the configuration writes it (lower-case hex).
    pub fn fingerprint(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A certificate subject as a set of (attribute type, value) pairs: `CN=psp.example, O=Banca`
/// and OpenSSL's `O = Banca, CN = psp.example` are the same subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(Vec<(String, String)>);

impl Subject {
    /// Parses `TYPE=value` pairs separated by commas (types case-insensitive, values exact;
    /// spaces around separators ignored). `None` if a pair has no `=` or nothing is given.
    pub fn parse(s: &str) -> Option<Subject> {
        let mut pairs = Vec::new();
        for part in s.split(',') {
            let (k, v) = part.split_once('=')?;
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() {
                return None;
            }
            pairs.push((k.to_ascii_uppercase(), v.to_string()));
        }
        pairs.sort();
        (!pairs.is_empty()).then_some(Subject(pairs))
    }
}

/// A fingerprint as configured: 64 hex digits, colons allowed (`AB:CD:…`).
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// Whether a request of `broker` may come with `cert`: a broker that pins no certificate takes
/// any (or none); one that pins some needs a certificate with one of its fingerprints or
/// subjects.
pub fn allows(broker: &PspBrokerConfig, cert: Option<&PeerCertificate>) -> bool {
    if !broker.pins_certificates() {
        return true;
    }
    let Some(cert) = cert else { return false };
    broker
        .client_cert_sha256
        .iter()
        .any(|f| parse_fingerprint(f) == Some(cert.sha256))
        || cert.subject.as_ref().is_some_and(|subject| {
            broker
                .client_cert_subjects
                .iter()
                .any(|s| Subject::parse(s).as_ref() == Some(subject))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_compare_attribute_by_attribute() {
        let a = Subject::parse("CN=psp.example, O=Banca Uno").unwrap();
        assert_eq!(
            Subject::parse("o = Banca Uno,cn=psp.example"),
            Some(a.clone())
        );
        assert_ne!(Subject::parse("CN=psp.example, O=Banca Due"), Some(a));
        assert_eq!(Subject::parse("CN psp.example"), None);
        assert_eq!(Subject::parse(""), None);
    }

    #[test]
    fn fingerprints_take_colons() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&hex), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&colons), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&hex[2..]), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
    }
}
