//! Certificates for the TLS tests, made fresh for each test with `rcgen`: a CA, and a server
//! certificate it signs, written as PEM files; a TLS client that trusts only that CA and offers
//! chosen ALPN protocols; and a TLS backend that records the SNI it was sent.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{client::TlsStream, TlsAcceptor, TlsConnector};

/// A CA and one server certificate it signed (for `localhost`, `127.0.0.1` and the names given),
/// as PEM files in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    ca: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Pki {
    pub fn new(names: &[&str]) -> Pki {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sse-gateway test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");

        let mut sans = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        sans.extend(names.iter().map(|n| n.to_string()));
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(sans)
            .expect("params")
            .signed_by(&key, &ca)
            .expect("certificate");

        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write PEM");
            path
        };
        Pki {
            ca_file: write("ca.pem", &ca.pem()),
            cert_file: write("cert.pem", &cert.pem()),
            key_file: write("key.pem", &key.serialize_pem()),
            ca: ca.der().clone(),
            cert: cert.der().clone(),
            key_der: key.serialize_der(),
            dir,
        }
    }

    /// A client that trusts only this CA and offers `alpn` (e.g. `[b"h2", b"http/1.1"]`).
    pub fn client(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).expect("CA");
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }

    fn server_config(&self) -> ServerConfig {
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::try_from(self.key_der.clone()).expect("key"),
            )
            .expect("server config")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS connection to `addr`, checking the certificate for `name`; the error if the handshake
/// fails.
pub async fn connect(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    connector.connect(name, tcp).await
}

/// The ALPN protocol a connection agreed on.
pub fn alpn(stream: &TlsStream<TcpStream>) -> Option<String> {
    stream
        .get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

/// An HTTPS server that answers every request with one fixed response (`200 over tls` unless
/// told otherwise), closes, and records the SNI of each handshake.
pub struct TlsEcho {
    pub addr: SocketAddr,
    names: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsEcho {
    pub async fn start(pki: &Pki) -> TlsEcho {
        TlsEcho::answering(
            pki,
            b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nover tls",
        )
        .await
    }

    /// Answers every request with `response` (a whole HTTP/1.1 response, head and body).
    pub async fn answering(pki: &Pki, response: &'static [u8]) -> TlsEcho {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = TlsAcceptor::from(Arc::new(pki.server_config()));
        let names = Arc::new(Mutex::new(Vec::new()));
        let seen = names.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Some(name) = tls.get_ref().1.server_name() {
                        seen.lock().unwrap().push(name.to_owned());
                    }
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    let _ = tls.write_all(response).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsEcho { addr, names, task }
    }

    /// The SNI names of the handshakes so far.
    pub fn server_names(&self) -> Vec<String> {
        self.names.lock().unwrap().clone()
    }
}

impl Drop for TlsEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}
