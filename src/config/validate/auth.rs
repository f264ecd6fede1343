//! `auth`: API keys and their secrets, JWT settings and keys, the cookie, tickets.

use super::*;

impl Checker<'_> {
    pub(super) fn auth(&mut self, raw: RawAuth) -> AuthConfig {
        let RawAuth {
            jwt,
            cookie_name,
            api_keys,
            ticket_ttl,
        } = raw;
        let ticket_ttl_raw = ticket_ttl.as_ref();
        let cookie_name = match cookie_name {
            Some(name) if is_http_token(&name.value) => name.value,
            Some(name) => {
                self.err(
                    &name,
                    format!("auth.cookie_name: invalid cookie name {:?}", name.value),
                );
                default::COOKIE_NAME.to_owned()
            }
            None => default::COOKIE_NAME.to_owned(),
        };
        let ticket_ttl = self.bounded_duration(
            "auth.ticket_ttl",
            ticket_ttl_raw,
            default::TICKET_TTL,
            (default::MAX_TICKET_TTL, "5m"),
        );
        let ticket_ttl = match ticket_ttl_raw {
            Some(raw) if ticket_ttl.is_zero() => {
                self.err(raw, "auth.ticket_ttl: must be more than 0s");
                default::TICKET_TTL
            }
            _ => ticket_ttl,
        };
        AuthConfig {
            api_keys: self.api_keys(api_keys.unwrap_or_default()),
            cookie_name,
            jwt: jwt.and_then(|jwt| self.jwt(jwt)),
            ticket_ttl,
        }
    }

    pub(super) fn jwt(&mut self, raw: Spanned<RawJwt>) -> Option<JwtConfig> {
        let at = Pos::of(raw.referenced);
        let RawJwt {
            algorithms,
            secret_env,
            secret_file,
            public_key_file,
            leeway,
            audience,
            issuer,
        } = raw.value;
        let leeway = self.bounded_duration(
            "auth.jwt.leeway",
            leeway.as_ref(),
            default::JWT_LEEWAY,
            (default::MAX_JWT_LEEWAY, "5m"),
        );
        let audience = self.claim_value("auth.jwt.audience", audience);
        let issuer = self.claim_value("auth.jwt.issuer", issuer);
        // The key is read now, so that `--check` and startup report an unreadable or unusable
        // key at its line instead of every token failing later.
        let (key, material, public_kind) = match (secret_env, secret_file, public_key_file) {
            (Some(env), None, None) => {
                let key = "auth.jwt.secret_env";
                let secret = self
                    .secret_from_env(key, &env)
                    .and_then(|s| self.hmac_secret(key, &env, s));
                (JwtKeySource::SecretEnv(env.value), secret, None)
            }
            (None, Some(file), None) => {
                let key = "auth.jwt.secret_file";
                let secret = self
                    .secret_from_file(key, &file)
                    .and_then(|s| self.hmac_secret(key, &file, s));
                (
                    JwtKeySource::SecretFile(PathBuf::from(file.value)),
                    secret,
                    None,
                )
            }
            (None, None, Some(file)) => {
                let (pem, kind) = match self.public_key(&file) {
                    Some((pem, kind)) => (Some(JwtKeyMaterial::PublicKeyPem(pem)), Some(kind)),
                    None => (None, None),
                };
                (
                    JwtKeySource::PublicKeyFile(PathBuf::from(file.value)),
                    pem,
                    kind,
                )
            }
            _ => {
                self.at(
                    at,
                    "auth.jwt: set exactly one of `secret_env`, `secret_file` (HS256) or \
                     `public_key_file` (RS256/ES256)",
                );
                return None;
            }
        };
        let hmac = !matches!(key, JwtKeySource::PublicKeyFile(_));
        let algorithms = match algorithms {
            None if hmac => vec![JwtAlgorithm::Hs256],
            None => {
                self.at(
                    at,
                    "auth.jwt: `public_key_file` needs `algorithms: [RS256]` or `[ES256]`",
                );
                return None;
            }
            Some(list) if list.is_empty() => {
                self.at(at, "auth.jwt.algorithms: must list at least one algorithm");
                return None;
            }
            Some(list) => {
                let mut algorithms = Vec::with_capacity(list.len());
                for (i, name) in list.iter().enumerate() {
                    let key = format!("auth.jwt.algorithms[{i}]");
                    let Some(alg) = self.one_of_required(
                        &key,
                        name,
                        &[
                            ("HS256", JwtAlgorithm::Hs256),
                            ("RS256", JwtAlgorithm::Rs256),
                            ("ES256", JwtAlgorithm::Es256),
                        ],
                    ) else {
                        continue;
                    };
                    if (alg == JwtAlgorithm::Hs256) != hmac {
                        let needs = if hmac {
                            "`secret_env` or `secret_file` only go with HS256"
                        } else {
                            "`public_key_file` only goes with RS256 or ES256"
                        };
                        self.err(name, format!("{key}: {needs}"));
                    } else if let Some(kind) = public_kind {
                        // One key verifies one family: an RSA key never checks ES256, and the
                        // reverse, so listing the other one could only ever reject.
                        if kind.algorithm() != alg {
                            self.err(
                                name,
                                format!(
                                    "{key}: {} does not match the key in `public_key_file`, \
                                     which is {}",
                                    name.value,
                                    kind.describe()
                                ),
                            );
                        }
                    }
                    algorithms.push(alg);
                }
                algorithms
            }
        };
        Some(JwtConfig {
            algorithms,
            key,
            key_material: material?,
            leeway,
            audience,
            issuer,
        })
    }

    /// An HS256 secret must be at least as long as the hash (RFC 7518 section 3.2): a short one
    /// can be brute-forced from any token signed with it.
    pub(super) fn hmac_secret<T>(
        &mut self,
        key: &str,
        at: &Spanned<T>,
        secret: String,
    ) -> Option<JwtKeyMaterial> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            self.err(
                at,
                format!(
                    "{key}: the HS256 secret must be at least {MIN_HMAC_SECRET_BYTES} bytes \
                     (it has {})",
                    secret.len()
                ),
            );
            return None;
        }
        Some(JwtKeyMaterial::Secret(secret.into_bytes()))
    }

    /// Reads and checks the PEM public key of `auth.jwt.public_key_file`.
    pub(super) fn public_key(
        &mut self,
        path: &Spanned<String>,
    ) -> Option<(Vec<u8>, PublicKeyKind)> {
        let key = "auth.jwt.public_key_file";
        let pem = match std::fs::read(&path.value) {
            Ok(pem) => pem,
            Err(err) => {
                self.err(
                    path,
                    format!("{key}: cannot read file {:?}: {err}", path.value),
                );
                return None;
            }
        };
        match crate::auth::jwt::check_public_key(&pem) {
            Ok(kind) => Some((pem, kind)),
            Err(why) => {
                self.err(path, format!("{key}: {:?}: {why}", path.value));
                None
            }
        }
    }

    /// A non-empty string compared with a token claim (`aud`, `iss`).
    pub(super) fn claim_value(
        &mut self,
        key: &str,
        value: Option<Spanned<String>>,
    ) -> Option<String> {
        let value = value?;
        if value.value.trim().is_empty() {
            self.err(&value, format!("{key}: must not be empty"));
            return None;
        }
        Some(value.value)
    }

    pub(super) fn api_keys(&mut self, raw: Vec<Spanned<RawApiKey>>) -> Vec<ApiKey> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut out: Vec<ApiKey> = Vec::with_capacity(raw.len());
        for (i, entry) in raw.into_iter().enumerate() {
            let at = format!("auth.api_keys[{i}]");
            let entry_pos = Pos::of(entry.referenced);
            let RawApiKey {
                name,
                key_env,
                key_file,
                publish,
                admin,
            } = entry.value;
            let name = self
                .entry_name(&at, entry_pos, i, name, &mut names, |name, first| {
                    format!("duplicate API key name {name:?} (also auth.api_keys[{first}])")
                })
                .unwrap_or_default();
            let key = match (key_env, key_file) {
                (Some(env), None) => self.secret_from_env(&format!("{at}.key_env"), &env),
                (None, Some(file)) => self.secret_from_file(&format!("{at}.key_file"), &file),
                (Some(env), Some(_)) => {
                    self.err(&env, format!("{at}: set `key_env` or `key_file`, not both"));
                    None
                }
                (None, None) => {
                    self.at(entry_pos, format!("{at}: needs `key_env` or `key_file`"));
                    None
                }
            };
            let publish = publish
                .unwrap_or_default()
                .iter()
                .enumerate()
                .filter_map(|(j, p)| self.pattern(&format!("{at}.publish[{j}]"), p))
                .collect();
            let Some(key) = key else { continue };
            if let Some(other) = out.iter().find(|k| k.key == key) {
                // Two names for one secret would make the caller's identity ambiguous.
                self.at(
                    entry_pos,
                    format!(
                        "{at}: has the same key as API key {:?}; give each its own",
                        other.name
                    ),
                );
            }
            out.push(ApiKey {
                name,
                key,
                publish,
                admin: admin.unwrap_or(false),
            });
        }
        out
    }

    /// The secret in environment variable `var`. Messages name the variable, never its value.
    pub(super) fn secret_from_env(&mut self, key: &str, var: &Spanned<String>) -> Option<String> {
        if !is_env_name(&var.value) {
            self.err(
                var,
                format!("{key}: invalid environment variable name {:?}", var.value),
            );
            return None;
        }
        match (self.env)(&var.value) {
            None => {
                self.err(
                    var,
                    format!("{key}: environment variable {} is not set", var.value),
                );
                None
            }
            Some(value) => match value.into_string() {
                Ok(secret) if !secret.trim().is_empty() => Some(secret),
                Ok(_) => {
                    self.err(
                        var,
                        format!("{key}: environment variable {} is empty", var.value),
                    );
                    None
                }
                Err(_) => {
                    self.err(
                        var,
                        format!(
                            "{key}: environment variable {} is not valid UTF-8",
                            var.value
                        ),
                    );
                    None
                }
            },
        }
    }

    /// The secret in file `path`, without surrounding whitespace (editors add a final newline).
    pub(super) fn secret_from_file(&mut self, key: &str, path: &Spanned<String>) -> Option<String> {
        match std::fs::read_to_string(&path.value) {
            Ok(content) if !content.trim().is_empty() => Some(content.trim().to_owned()),
            Ok(_) => {
                self.err(path, format!("{key}: file {:?} is empty", path.value));
                None
            }
            Err(err) => {
                // io::Error describes the failure, never the content.
                self.err(
                    path,
                    format!("{key}: cannot read file {:?}: {err}", path.value),
                );
                None
            }
        }
    }
}

/// A name `std::env::var_os` accepts: not empty, no `=` and no NUL.
pub(super) fn is_env_name(text: &str) -> bool {
    !text.is_empty() && !text.contains(['=', '\0'])
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn api_keys_from_files_and_their_problems() {
        let dir = std::env::temp_dir().join(format!("sse-gateway-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("ops.key");
        std::fs::write(&key_file, "file-secret-value\n").unwrap();
        let empty_file = dir.join("empty.key");
        std::fs::write(&empty_file, "\n").unwrap();

        let text = format!(
            "auth:\n  api_keys:\n    - {{name: a, key_env: SSE_GATEWAY_UNIT_KEY_A}}\n    \
             - {{name: ops, key_file: {:?}, publish: [\"ops.*\", news], admin: false}}\n",
            key_file.display()
        );
        let config = load_ok(&text);
        let keys = &config.auth.api_keys;
        assert_eq!(keys[0].key, "env-secret-value");
        assert_eq!(keys[1].key, "file-secret-value");
        assert_eq!(
            keys[1].publish,
            [
                ChannelPattern::Prefix("ops.".into()),
                ChannelPattern::Exact("news".into())
            ]
        );
        assert!(!keys[0].admin && keys[0].publish.is_empty());

        let text = format!(
            "auth:\n  api_keys:\n\
             \x20   - {{name: a, key_env: SSE_GATEWAY_UNIT_KEY_A}}\n\
             \x20   - {{name: a, key_env: SSE_GATEWAY_UNIT_KEY_A}}\n\
             \x20   - {{name: b, key_env: SSE_GATEWAY_UNIT_KEY_EMPTY}}\n\
             \x20   - {{name: c, key_file: {:?}}}\n\
             \x20   - {{name: d, key_file: /nonexistent/key}}\n\
             \x20   - {{name: e, key_env: X, key_file: y}}\n\
             \x20   - {{name: f}}\n\
             \x20   - {{name: g, key_env: \"A=B\"}}\n\
             \x20   - {{name: h, key_file: {:?}, publish: [\"a b\"]}}\n",
            empty_file.display(),
            key_file.display()
        );
        let found = problems(&text);
        let expected_starts = [
            "4:7: auth.api_keys[1]: has the same key as API key \"a\"",
            "4:14: auth.api_keys[1].name: duplicate API key name \"a\" (also auth.api_keys[0])",
            "5:26: auth.api_keys[2].key_env: environment variable SSE_GATEWAY_UNIT_KEY_EMPTY is empty",
            "6:27: auth.api_keys[3].key_file: file",
            "7:27: auth.api_keys[4].key_file: cannot read file \"/nonexistent/key\"",
            "8:26: auth.api_keys[5]: set `key_env` or `key_file`, not both",
            "9:7: auth.api_keys[6]: needs `key_env` or `key_file`",
            "10:26: auth.api_keys[7].key_env: invalid environment variable name \"A=B\"",
            "11:",
        ];
        assert_starts(&found, &expected_starts);
        assert!(found[8].contains("auth.api_keys[8].publish[0]: invalid channel pattern"));
        for message in &found {
            assert!(!message.contains("secret-value"), "secret in {message:?}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn jwt_settings() {
        let rsa = fixture("jwt-rsa.pub.pem");
        let config = load_ok(&format!(
            "auth:\n  jwt: {{algorithms: [RS256], public_key_file: {rsa}, leeway: 5s, \
             audience: sse, issuer: \"https://auth.test\"}}\n  ticket_ttl: 10s\n"
        ));
        let jwt = config.auth.jwt.unwrap();
        assert_eq!(jwt.algorithms, [JwtAlgorithm::Rs256]);
        assert_eq!(jwt.key, JwtKeySource::PublicKeyFile(rsa.clone().into()));
        assert_eq!(
            jwt.key_material,
            JwtKeyMaterial::PublicKeyPem(std::fs::read(&rsa).unwrap())
        );
        assert_eq!(jwt.leeway, Duration::from_secs(5));
        assert_eq!(jwt.audience.as_deref(), Some("sse"));
        assert_eq!(jwt.issuer.as_deref(), Some("https://auth.test"));
        assert_eq!(config.auth.ticket_ttl, Duration::from_secs(10));
        let ec = fixture("jwt-ec.pub.pem");
        let config = load_ok(&format!(
            "auth: {{jwt: {{algorithms: [ES256], public_key_file: {ec}}}}}"
        ));
        assert_eq!(config.auth.jwt.unwrap().algorithms, [JwtAlgorithm::Es256]);

        let dir = std::env::temp_dir().join(format!("sse-gw-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, format!("{UNIT_JWT_SECRET}\n")).unwrap();
        let config = load_ok(&format!(
            "auth: {{jwt: {{secret_file: {}}}, cookie_name: tok}}",
            secret.display()
        ));
        assert_eq!(config.auth.cookie_name, "tok");
        let jwt = config.auth.jwt.unwrap();
        assert_eq!(jwt.algorithms, [JwtAlgorithm::Hs256]);
        assert_eq!(
            jwt.key_material,
            JwtKeyMaterial::Secret(UNIT_JWT_SECRET.as_bytes().to_vec()),
            "trimmed like API key files"
        );
        std::fs::remove_dir_all(&dir).ok();

        one_problem(
            &format!("auth:\n  jwt: {{public_key_file: {rsa}}}\n"),
            "2:8: auth.jwt: `public_key_file` needs `algorithms",
        );
        one_problem(
            "auth:\n  jwt: {secret_env: S, secret_file: f}\n",
            "2:8: auth.jwt: set exactly one of",
        );
        one_problem(
            "auth:\n  jwt: {algorithms: [RS256], secret_env: SSE_GATEWAY_UNIT_JWT}\n",
            "2:22: auth.jwt.algorithms[0]: `secret_env` or `secret_file` only go with HS256",
        );
        one_problem(
            "auth:\n  jwt: {algorithms: [none], secret_env: SSE_GATEWAY_UNIT_JWT}\n",
            "2:22: auth.jwt.algorithms[0]: unknown value \"none\"",
        );
        one_problem(
            "auth: {cookie_name: \"a b\"}",
            "1:21: auth.cookie_name: invalid cookie name",
        );
    }

    #[test]
    fn jwt_keys_that_cannot_be_used_are_errors_at_their_line() {
        one_problem(
            "auth:\n  jwt:\n    secret_env: SSE_GATEWAY_UNIT_UNSET_JWT\n",
            "3:17: auth.jwt.secret_env: environment variable SSE_GATEWAY_UNIT_UNSET_JWT is not set",
        );
        one_problem(
            "auth:\n  jwt:\n    secret_env: SSE_GATEWAY_UNIT_SHORT_JWT\n",
            "3:17: auth.jwt.secret_env: the HS256 secret must be at least 32 bytes (it has 9)",
        );
        one_problem(
            "auth:\n  jwt:\n    secret_file: /nonexistent/jwt\n",
            "3:18: auth.jwt.secret_file: cannot read file \"/nonexistent/jwt\"",
        );
        one_problem(
            "auth:\n  jwt:\n    algorithms: [RS256]\n    public_key_file: /nonexistent/k.pem\n",
            "4:22: auth.jwt.public_key_file: cannot read file \"/nonexistent/k.pem\"",
        );
        for (name, why) in [
            ("jwt-rsa1024.pub.pem", "the RSA key has 1024 bits"),
            ("jwt-ec-p384.pub.pem", "not a P-256 public key"),
            ("jwt-rsa.key.pem", "holds a private key"),
            ("README.md", "not a PEM file"),
        ] {
            let path = fixture(name);
            one_problem(
                &format!("auth:\n  jwt:\n    algorithms: [RS256]\n    public_key_file: {path}\n"),
                &format!("4:22: auth.jwt.public_key_file: {path:?}: {why}"),
            );
        }
        // One key verifies one family: an RSA key with ES256 listed, and the reverse.
        let rsa = fixture("jwt-rsa.pub.pem");
        one_problem(
            &format!("auth:\n  jwt:\n    algorithms: [RS256, ES256]\n    public_key_file: {rsa}\n"),
            "3:25: auth.jwt.algorithms[1]: ES256 does not match the key in `public_key_file`, \
             which is an RSA key (RS256)",
        );
        let ec = fixture("jwt-ec.pub.pem");
        one_problem(
            &format!("auth:\n  jwt:\n    algorithms: [RS256]\n    public_key_file: {ec}\n"),
            "3:18: auth.jwt.algorithms[0]: RS256 does not match the key in `public_key_file`, \
             which is a P-256 key (ES256)",
        );
        let jwt = "auth:\n  jwt:\n    secret_env: SSE_GATEWAY_UNIT_JWT\n";
        one_problem(
            &format!("{jwt}    leeway: 10m\n"),
            "4:13: auth.jwt.leeway: must be at most 5m",
        );
        one_problem(
            &format!("{jwt}    audience: \"\"\n"),
            "4:15: auth.jwt.audience: must not be empty",
        );
        one_problem(
            "auth:\n  ticket_ttl: 0s\n",
            "2:15: auth.ticket_ttl: must be more than 0s",
        );
        one_problem(
            "auth:\n  ticket_ttl: 1h\n",
            "2:15: auth.ticket_ttl: must be at most 5m",
        );
    }
}
