//! JSON Web Tokens: verifying one and turning its claims into a [`Principal`].
//!
//! What is accepted is decided by the config alone, never by the token: one key, and only the
//! algorithms of `auth.jwt.algorithms`, all of that key's family. So a token saying `alg: none`
//! never verifies (the library has no such algorithm), and neither does the classic confusion
//! attack, an HS256 token signed with the RSA public key as its HMAC secret: with a public key
//! configured, HS256 is not in the list, and the key is not a secret in any case.
//!
//! `exp` and `sub` are required; `exp` and `nbf` are checked with `auth.jwt.leeway` for clock
//! skew; `aud` and `iss` must match when `auth.jwt.audience` / `issuer` are set (and, as RFC 7519
//! says, a token carrying an `aud` is refused when no audience is configured). The signature is
//! checked before the claims are read, so the claims parser only ever sees signed input.

use std::time::{Duration, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{unauthenticated, Credential, Principal};
use crate::config::{is_valid_channel, ChannelPattern, JwtAlgorithm, JwtConfig, JwtKeyMaterial};
use crate::reply::ApiError;

/// Longest token looked at. Tokens travel in headers, cookies and URLs, whose practical limits
/// are a few KiB; anything longer is not ours and is refused before any parsing.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Longest `sub` accepted: it is shown in `/clients` and keys per-user limits.
const MAX_SUBJECT_BYTES: usize = 256;

/// Shortest RSA key accepted (NIST SP 800-131A: 2048 bits since 2014).
const MIN_RSA_BITS: usize = 2048;

/// The placeholder in a claim pattern that stands for the token's subject.
const SUB_PLACEHOLDER: &str = "{sub}";

/// What a public key file holds, which decides the one algorithm it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKeyKind {
    /// An RSA key of at least 2048 bits: RS256.
    Rsa,
    /// A P-256 key: ES256.
    Ec,
}

impl PublicKeyKind {
    pub fn algorithm(self) -> JwtAlgorithm {
        match self {
            PublicKeyKind::Rsa => JwtAlgorithm::Rs256,
            PublicKeyKind::Ec => JwtAlgorithm::Es256,
        }
    }

    /// For messages: "an RSA key (RS256)".
    pub fn describe(self) -> &'static str {
        match self {
            PublicKeyKind::Rsa => "an RSA key (RS256)",
            PublicKeyKind::Ec => "a P-256 key (ES256)",
        }
    }
}

/// Checks that `pem` is a public key the gateway can verify tokens with, and says which kind.
/// Used when the config is loaded, so a bad key is a config error at its line.
pub fn check_public_key(pem: &[u8]) -> Result<PublicKeyKind, String> {
    public_key(pem).map(|(_, kind)| kind)
}

/// Parses a PEM public key: `PUBLIC KEY` (SPKI) for RSA or P-256, or `RSA PUBLIC KEY` (PKCS#1).
fn public_key(pem: &[u8]) -> Result<(DecodingKey, PublicKeyKind), String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not a PEM file (not text)".to_string())?;
    let label = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or("not a PEM file (no -----BEGIN line)")?;
    match label {
        "PUBLIC KEY" | "RSA PUBLIC KEY" => {}
        l if l.contains("PRIVATE KEY") => {
            return Err(format!(
                "holds a private key ({l}); give the gateway only the public key \
                 (`openssl pkey -in KEY -pubout`)"
            ))
        }
        l => return Err(format!("holds a {l}, not a public key")),
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        // Building the JWK parses the whole key (modulus and exponent), as verifying will.
        let jwk = Jwk::from_decoding_key(&key, Some(Algorithm::RS256))
            .map_err(|e| format!("not a usable RSA public key: {e}"))?;
        let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
            return Err("not a usable RSA public key".into());
        };
        // `n` is unpadded base64url of the big-endian modulus, which has no leading zero byte.
        let bits = rsa.n.len() * 3 / 4 * 8;
        if bits < MIN_RSA_BITS {
            return Err(format!(
                "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
            ));
        }
        return Ok((key, PublicKeyKind::Rsa));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        // ES256's verifier takes only P-256 points; try it on a dummy signature to find out.
        return match jsonwebtoken::crypto::verify("AAAA", b"probe", &key, Algorithm::ES256) {
            Ok(_) => Ok((key, PublicKeyKind::Ec)),
            Err(_) => Err("not a P-256 public key (ES256 needs the P-256 curve)".into()),
        };
    }
    Err("not an RSA or P-256 public key in PEM form".into())
}

/// Verifies tokens against the configured key and rules.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Builds the verifier. The config was checked at load, so this only fails on a config that
    /// did not come through `config::load`.
    pub fn new(cfg: &JwtConfig) -> Result<JwtVerifier, String> {
        let key = match &cfg.key_material {
            JwtKeyMaterial::Secret(secret) => DecodingKey::from_secret(secret),
            JwtKeyMaterial::PublicKeyPem(pem) => {
                public_key(pem)
                    .map_err(|e| format!("auth.jwt.public_key_file: {e}"))?
                    .0
            }
        };
        let algorithms: Vec<Algorithm> = cfg.algorithms.iter().map(|a| algorithm(*a)).collect();
        let Some(&first) = algorithms.first() else {
            return Err("auth.jwt.algorithms: must list at least one algorithm".into());
        };
        if let Some(other) = algorithms.iter().find(|a| a.family() != key.family()) {
            return Err(format!(
                "auth.jwt.algorithms: {other:?} does not go with the configured key"
            ));
        }
        let mut validation = Validation::new(first);
        validation.algorithms = algorithms;
        validation.leeway = cfg.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // `validate_aud` stays on: with no audience configured, a token with `aud` is refused.
        let mut required = vec!["exp", "sub"];
        if let Some(aud) = &cfg.audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        if let Some(iss) = &cfg.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(JwtVerifier { key, validation })
    }

    /// The principal a valid token stands for; 401 `unauthorized` with the reason otherwise.
    /// Messages never contain the token.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(unauthenticated("the token is too long"));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| unauthenticated(rejection(e.kind())))?;
        data.claims.into_principal()
    }
}

fn algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::Hs256 => Algorithm::HS256,
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::Es256 => Algorithm::ES256,
    }
}

/// Why a token was refused, in words for the 401 message.
fn rejection(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => "the token's algorithm is not accepted".into(),
        ErrorKind::InvalidAudience => "the token's audience (aud) is not accepted".into(),
        ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("the token's `{claim}` claim is malformed"),
        ErrorKind::Json(_) => "the token's header or claims are not the expected JSON".into(),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            "the token is malformed".into()
        }
        _ => "the token cannot be verified".into(),
    }
}

/// The claims the gateway reads. Others are ignored; these must have these types. `sub` and
/// `exp` are required, but by the validation (which names a missing claim), not by serde.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    /// NumericDate: seconds since the epoch, possibly fractional (RFC 7519 section 2).
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    admin: bool,
}

impl Claims {
    fn into_principal(self) -> Result<Principal, ApiError> {
        let sub = self
            .sub
            .ok_or_else(|| unauthenticated("the token has no `sub` claim"))?;
        if sub.is_empty() || sub.len() > MAX_SUBJECT_BYTES {
            return Err(unauthenticated(format!(
                "the token's `sub` must be 1 to {MAX_SUBJECT_BYTES} bytes"
            )));
        }
        let exp = self
            .exp
            .ok_or_else(|| unauthenticated("the token has no `exp` claim"))?;
        let expires = Duration::try_from_secs_f64(exp)
            .ok()
            .and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d))
            .ok_or_else(|| unauthenticated("the token's `exp` claim is out of range"))?;
        Ok(Principal {
            subscribe: expand_patterns(&self.subscribe, &sub, "subscribe")?,
            publish: expand_patterns(&self.publish, &sub, "publish")?,
            admin: self.admin,
            expires: Some(expires),
            name: sub.into(),
            credential: Credential::Jwt,
        })
    }
}

/// Compiles a claim's patterns, replacing `{sub}` with the subject.
///
/// A subject is put into a pattern only if it is itself made of channel-name characters
/// (`[A-Za-z0-9._:/-]`): otherwise `*` in a subject would turn `user.{sub}` into a prefix, and
/// other characters would make patterns no channel can match. Such a token is refused (401)
/// rather than quietly given fewer rights, so the issuer's mistake shows at once. The result
/// must be a valid pattern like any other, or the token is refused too.
fn expand_patterns(
    patterns: &[String],
    sub: &str,
    claim: &str,
) -> Result<Vec<ChannelPattern>, ApiError> {
    patterns
        .iter()
        .map(|pattern| {
            let text = if pattern.contains(SUB_PLACEHOLDER) {
                if !is_valid_channel(sub) {
                    return Err(unauthenticated(format!(
                        "the token's `sub` has characters not allowed in channel names, so \
                         its `{claim}` patterns with {{sub}} cannot be used"
                    )));
                }
                pattern.replace(SUB_PLACEHOLDER, sub)
            } else {
                pattern.clone()
            };
            ChannelPattern::parse(&text).ok_or_else(|| {
                unauthenticated(format!(
                    "the token's `{claim}` claim has an invalid channel pattern"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
