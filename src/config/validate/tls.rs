//! `tls:`: the HTTPS listener's address and its certificate pair, read and checked now (pingora
//! panics on files it cannot use), each problem reported at the key of the file it concerns.

use super::*;

impl Checker<'_> {
    /// `plain` is the checked `listen`, which the HTTPS listener must not take.
    pub(super) fn tls(&mut self, raw: Spanned<RawTls>, plain: SocketAddr) -> Option<TlsConfig> {
        let at = Pos::of(raw.referenced);
        let RawTls {
            listen,
            cert_file,
            key_file,
        } = raw.value;
        let listen = match listen {
            None => {
                self.at(at, "tls: missing `listen` (ip:port, like 0.0.0.0:8443)");
                None
            }
            Some(listen) => match parse_listen(&listen.value) {
                None => {
                    self.err(
                        &listen,
                        format!(
                            "tls.listen: invalid address {:?}: expected ip:port, like 0.0.0.0:8443",
                            listen.value
                        ),
                    );
                    None
                }
                Some(addr) if same_socket(addr, plain) => {
                    self.err(
                        &listen,
                        format!("tls.listen: {addr} is the plain listener's address (`listen`)"),
                    );
                    None
                }
                Some(addr) => Some(addr),
            },
        };
        let mut file = |key: &str, value: Option<Spanned<String>>| match value {
            Some(path) if path.value.is_empty() => {
                self.err(&path, format!("tls.{key}: must not be empty"));
                None
            }
            Some(path) => Some(path),
            None => {
                self.at(at, format!("tls: missing `{key}` (a PEM file)"));
                None
            }
        };
        let (cert_file, key_file) = (file("cert_file", cert_file), file("key_file", key_file));
        let (cert_file, key_file) = (cert_file?, key_file?);
        let cert_path = PathBuf::from(&cert_file.value);
        let key_path = PathBuf::from(&key_file.value);
        match crate::tls::load_pair(&cert_path, &key_path) {
            Ok(pair) => Some(TlsConfig {
                listen: listen?,
                cert_file: cert_path,
                key_file: key_path,
                pair,
            }),
            Err(problems) => {
                if let Some(problem) = problems.cert_file {
                    self.err(&cert_file, format!("tls.cert_file: {problem}"));
                }
                if let Some(problem) = problems.key_file {
                    self.err(&key_file, format!("tls.key_file: {problem}"));
                }
                None
            }
        }
    }
}

/// Whether two listeners would bind the same port on a shared address (port 0 picks a free one
/// and never clashes).
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    /// A self-signed certificate for `localhost` and its key, as PEM files in `dir`.
    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        let (cert_file, key_file) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_file, cert.cert.pem()).expect("write");
        std::fs::write(&key_file, cert.signing_key.serialize_pem()).expect("write");
        (cert_file, key_file)
    }

    fn tls_yaml(listen: &str, cert: &Path, key: &Path) -> String {
        format!(
            "tls:\n  listen: {listen}\n  cert_file: \"{}\"\n  key_file: \"{}\"\n",
            cert.display(),
            key.display()
        )
    }

    #[test]
    fn a_good_pair_loads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = pair(dir.path(), "a");
        let config = load_ok(&format!(
            "http2_cleartext: true\n{}",
            tls_yaml("127.0.0.1:8443", &cert, &key)
        ));
        let tls = config.tls.expect("tls");
        assert_eq!(tls.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(tls.pair.cert.len(), 1);
        assert!(config.http2_cleartext);
        assert!(!load_ok("").http2_cleartext);
    }

    #[test]
    fn a_key_of_another_certificate_is_an_error_at_the_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, _) = pair(dir.path(), "a");
        let (_, other_key) = pair(dir.path(), "b");
        one_problem(
            &tls_yaml("127.0.0.1:8443", &cert, &other_key),
            "4:13: tls.key_file: ",
        );
        let found = problems(&tls_yaml("127.0.0.1:8443", &cert, &other_key));
        assert!(
            found[0].contains("does not belong to the certificate"),
            "{found:?}"
        );
    }

    #[test]
    fn a_key_given_as_certificate_and_missing_keys_are_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert, key) = pair(dir.path(), "a");
        // The files swapped: neither holds what its key says.
        assert_starts(
            &problems(&tls_yaml("127.0.0.1:8443", &key, &cert)),
            &["3:14: tls.cert_file: ", "4:13: tls.key_file: "],
        );
        assert_starts(
            &problems("tls:\n  listen: 127.0.0.1:8443\n"),
            &[
                "2:3: tls: missing `cert_file`",
                "2:3: tls: missing `key_file`",
            ],
        );
        one_problem(
            &format!(
                "listen: 0.0.0.0:8443\n{}",
                tls_yaml("127.0.0.1:8443", &cert, &key)
            ),
            "3:11: tls.listen: 127.0.0.1:8443 is the plain listener's address",
        );
    }
}
