//! HTTPS to upstream servers: the CA bundle of an upstream's `ca_file`.

use std::sync::Arc;

use pingora::protocols::tls::CaType;
use pingora::utils::tls::{parse_x509, WrappedX509};

/// The DER of every certificate in `pem` that parses as X.509 (others are skipped).
pub fn parse_ca_bundle(pem: &[u8]) -> Vec<Vec<u8>> {
    rustls_pemfile::certs(&mut &pem[..])
        .filter_map(Result::ok)
        .map(|der| der.to_vec())
        // pingora parses them again when connecting, and panics on what it cannot parse.
        .filter(|der| x509_parser::parse_x509_certificate(der).is_ok())
        .collect()
}

/// The certificates of `path` for `PeerOptions::ca`; checked by the config already, so an
/// error here means the file changed since.
pub fn load_ca(path: &std::path::Path) -> Result<Arc<CaType>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<WrappedX509> = parse_ca_bundle(&pem)
        .into_iter()
        .map(|der| WrappedX509::new(der, parse_x509))
        .collect();
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs.into_boxed_slice().into())
}
