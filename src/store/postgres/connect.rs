//! How the node reaches PostgreSQL: the URL, and TLS as its `sslmode` asks (as libpq reads it):
//! `disable`; `prefer` (the default) and `require`, encrypted without checking the server's
//! certificate (unless `sslrootcert` names the CAs to check it against, as libpq does);
//! `verify-ca`, the certificate checked against the CAs (`sslrootcert`, else the public web
//! roots); `verify-full`, the host name checked too.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// A parsed database URL: the driver's configuration and the TLS connector its `sslmode` needs.
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

/// How long opening a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Encrypt, check nothing.
    Nothing,
    /// Check the chain, not the name.
    Chain,
    /// Check the chain and the name.
    Full,
}

/// Parses `url`, taking out what the driver does not read (`sslmode` beyond
/// disable/prefer/require, `sslrootcert`).
pub fn target(url: &str) -> Result<Target, StoreError> {
    let bad = |why: String| StoreError::Failed(format!("database URL: {why}"));
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut root) = ("prefer".to_string(), None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => mode = percent_decode(v),
            "sslrootcert" => root = Some(percent_decode(v)),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| bad(format!("{e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("pagonode");
    }
    let (ssl, check) = match (mode.as_str(), &root) {
        ("disable", _) => (SslMode::Disable, Check::Nothing),
        ("allow" | "prefer", None) => (SslMode::Prefer, Check::Nothing),
        ("allow" | "prefer", Some(_)) => (SslMode::Prefer, Check::Chain),
        ("require", None) => (SslMode::Require, Check::Nothing),
        ("require" | "verify-ca", _) => (SslMode::Require, Check::Chain),
        ("verify-full", _) => (SslMode::Require, Check::Full),
        (other, _) => return Err(bad(format!("sslmode={other} is not a libpq sslmode"))),
    };
    config.ssl_mode(ssl);
    Ok(Target {
        config,
        tls: MakeRustlsConnect::new(client_config(check, root.as_deref())?),
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn client_config(check: Check, root: Option<&str>) -> Result<rustls::ClientConfig, StoreError> {
    crate::install_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .ok_or_else(|| StoreError::failed("no TLS crypto provider"))?;
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| StoreError::Failed(format!("sslrootcert {path}: {e}")))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| StoreError::Failed(format!("sslrootcert {path}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| StoreError::Failed(format!("sslrootcert {path}: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(StoreError::failed)?;
    let config = match check {
        Check::Full => builder.with_root_certificates(roots).with_no_client_auth(),
        Check::Chain | Check::Nothing => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(StoreError::failed)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    webpki,
                    check_chain: check == Check::Chain,
                }))
                .with_no_client_auth()
        }
    };
    Ok(config)
}

/// libpq's weaker modes: the handshake's signatures are checked, the certificate's name never,
/// its chain only for `verify-ca` (or with `sslrootcert`).
#[derive(Debug)]
struct Lenient {
    webpki: Arc<WebPkiServerVerifier>,
    check_chain: bool,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.check_chain {
            return Ok(ServerCertVerified::assertion());
        }
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_read_and_taken_out() {
        let t = target("postgres://node:secret@db.example:5433/pagonode?sslmode=verify-full&application_name=n1").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(t.config.get_application_name(), Some("n1"));
        assert_eq!(t.config.get_ports(), [5433]);
        let t = target("postgres://node@localhost/pagonode").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Prefer);
        assert_eq!(t.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        let t = target("postgres://node@localhost/pagonode?sslmode=disable").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Disable);
        assert!(target("postgres://node@localhost/pagonode?sslmode=sometimes").is_err());
        let missing =
            target("postgres://x@localhost/db?sslmode=verify-ca&sslrootcert=%2Fno%2Fsuch.pem");
        assert!(
            matches!(&missing, Err(StoreError::Failed(e)) if e.contains("/no/such.pem")),
            "{:?}",
            missing.err()
        );
    }
}
