//! The HTTPS listener's certificate: a PEM certificate chain and its private key, read and
//! checked as one pair when the config loads, and the resolver that hands the pair in force to
//! each new handshake.
//!
//! pingora's `TlsSettings::build()` panics on files it cannot use, so the gateway never gives
//! it file names: the config loader reads the pair ([`load_pair`]), reporting each problem
//! against the file it concerns, and the listener gets a [`Certificates`] resolver instead. A
//! reload that reads a new pair stores it there: handshakes from then on present it, and
//! connections already open keep the session they made.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{
    CertificateDer, ClientHello, CryptoProvider, PrivateKeyDer, ResolvesServerCert,
};

/// What is wrong with a pair, by the file it concerns (both may be wrong at once).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PairProblems {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// Reads `cert_file` (a PEM certificate chain, the server's own certificate first) and
/// `key_file` (a PEM private key: PKCS#8, PKCS#1 RSA or SEC1 EC), and checks that the key is
/// one rustls can sign with and that it belongs to the first certificate.
pub fn load_pair(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, PairProblems> {
    let chain = read_chain(cert_file);
    let key = read_key(key_file);
    let (chain, key) = match (chain, key) {
        (Ok(chain), Ok(key)) => (chain, key),
        (chain, key) => {
            return Err(PairProblems {
                cert_file: chain.err(),
                key_file: key.err(),
            })
        }
    };
    let Some(provider) = crypto_provider() else {
        return Err(PairProblems {
            key_file: Some("no TLS crypto provider is installed".to_owned()),
            ..PairProblems::default()
        });
    };
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| PairProblems {
            key_file: Some(format!(
                "{}: a private key this build cannot sign with: {e}",
                key_file.display()
            )),
            ..PairProblems::default()
        })?;
    let pair = CertifiedKey::new(chain, signing_key);
    if let Err(e) = pair.keys_match() {
        return Err(PairProblems {
            key_file: Some(format!(
                "{}: the key does not belong to the certificate in {}: {e}",
                key_file.display(),
                cert_file.display()
            )),
            ..PairProblems::default()
        });
    }
    Ok(Arc::new(pair))
}

/// Every certificate of `path`, each checked to parse as X.509 (rustls would only find out at
/// the first handshake).
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut chain = Vec::new();
    for (i, cert) in rustls_pemfile::certs(&mut &pem[..]).enumerate() {
        let cert =
            cert.map_err(|e| format!("{shown}: certificate {} is not valid PEM: {e}", i + 1))?;
        if let Err(e) = x509_parser::parse_x509_certificate(&cert) {
            return Err(format!(
                "{shown}: certificate {} is not a valid X.509 certificate: {e}",
                i + 1
            ));
        }
        chain.push(cert);
    }
    if chain.is_empty() {
        return Err(format!(
            "{shown} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"
        ));
    }
    Ok(chain)
}

/// The first private key of `path`.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    match rustls_pemfile::private_key(&mut &pem[..]) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(format!(
            "{shown} holds no PEM private key (`-----BEGIN PRIVATE KEY-----`, or its RSA or EC form)"
        )),
        Err(e) => Err(format!("{shown}: the private key is not valid PEM: {e}")),
    }
}

/// The ring provider pingora's rustls uses, installed as the process default if none is.
fn crypto_provider() -> Option<Arc<CryptoProvider>> {
    pingora::tls::install_default_crypto_provider();
    CryptoProvider::get_default().cloned()
}

/// The pair each new handshake of the HTTPS listener presents; replaced by a reload.
pub struct Certificates {
    current: ArcSwap<CertifiedKey>,
}

impl Certificates {
    pub fn new(pair: Arc<CertifiedKey>) -> Arc<Certificates> {
        Arc::new(Certificates {
            current: ArcSwap::new(pair),
        })
    }

    /// From now on, handshakes present `pair`; open connections are not touched.
    pub fn store(&self, pair: Arc<CertifiedKey>) {
        self.current.store(pair);
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("chain_len", &self.current.load().cert.len())
            .finish()
    }
}
