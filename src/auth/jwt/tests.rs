//! Token verification: each algorithm, and every way a token must be refused.

use std::time::{Duration, SystemTime};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::config::{JwtKeyMaterial, JwtKeySource};

const SECRET: &[u8] = b"unit-test-secret-unit-test-secret-0123";
const RSA_PRIVATE: &[u8] = include_bytes!("../../../tests/fixtures/jwt-rsa.key.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../../tests/fixtures/jwt-rsa.pub.pem");
const RSA_OTHER_PUBLIC: &[u8] = include_bytes!("../../../tests/fixtures/jwt-rsa-other.pub.pem");
const RSA_1024_PUBLIC: &[u8] = include_bytes!("../../../tests/fixtures/jwt-rsa1024.pub.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../../../tests/fixtures/jwt-ec.key.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../../../tests/fixtures/jwt-ec.pub.pem");
const EC_P384_PUBLIC: &[u8] = include_bytes!("../../../tests/fixtures/jwt-ec-p384.pub.pem");

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn config(alg: JwtAlgorithm, material: JwtKeyMaterial) -> JwtConfig {
    JwtConfig {
        algorithms: vec![alg],
        key: JwtKeySource::SecretEnv("UNUSED".into()),
        key_material: material,
        leeway: Duration::from_secs(30),
        audience: None,
        issuer: None,
    }
}

fn hs256() -> JwtVerifier {
    JwtVerifier::new(&config(
        JwtAlgorithm::Hs256,
        JwtKeyMaterial::Secret(SECRET.to_vec()),
    ))
    .unwrap()
}

fn rs256(public: &[u8]) -> JwtVerifier {
    JwtVerifier::new(&config(
        JwtAlgorithm::Rs256,
        JwtKeyMaterial::PublicKeyPem(public.to_vec()),
    ))
    .unwrap()
}

fn es256() -> JwtVerifier {
    JwtVerifier::new(&config(
        JwtAlgorithm::Es256,
        JwtKeyMaterial::PublicKeyPem(EC_PUBLIC.to_vec()),
    ))
    .unwrap()
}

/// Claims valid for ten minutes, with `extra` merged in (a `null` removes a claim).
fn claims(extra: Value) -> Value {
    let mut c = json!({
        "sub": "alice",
        "exp": now() + 600,
        "subscribe": ["user.{sub}.*", "news"],
        "publish": ["user.{sub}.out"],
        "admin": false,
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
}

fn b64(bytes: &[u8]) -> String {
    // Unpadded base64url, enough for the hand-made tokens below.
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The 401 message for `token`, or panics if it verified.
fn refused(v: &JwtVerifier, token: &str) -> String {
    match v.verify(token) {
        Ok(p) => panic!("{token} verified as {p:?}"),
        Err(e) => {
            assert_eq!((e.status, e.code), (401, "unauthorized"));
            assert!(!e.message.contains(token) || token.is_empty());
            e.message
        }
    }
}

#[test]
fn hs256_tokens_verify_into_a_principal() {
    let p = hs256()
        .verify(&hs(&claims(json!({"admin": true}))))
        .unwrap();
    assert_eq!(&*p.name, "alice");
    assert!(p.admin);
    assert_eq!(
        p.subscribe,
        [
            ChannelPattern::Prefix("user.alice.".into()),
            ChannelPattern::Exact("news".into())
        ]
    );
    assert_eq!(p.publish, [ChannelPattern::Exact("user.alice.out".into())]);
    let exp = p
        .expires
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    assert_eq!(exp.as_secs() as i64, now() + 600);
}

#[test]
fn rs256_and_es256_tokens_verify_with_their_public_keys() {
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let c = claims(json!({}));
    assert_eq!(
        &*rs256(RSA_PUBLIC)
            .verify(&sign(Algorithm::RS256, &rsa, &c))
            .unwrap()
            .name,
        "alice"
    );
    assert_eq!(
        &*es256()
            .verify(&sign(Algorithm::ES256, &ec, &c))
            .unwrap()
            .name,
        "alice"
    );
}

#[test]
fn the_wrong_key_does_not_verify() {
    let c = claims(json!({}));
    let other_secret = EncodingKey::from_secret(b"another-secret-another-secret-0123456");
    let msg = refused(&hs256(), &sign(Algorithm::HS256, &other_secret, &c));
    assert!(msg.contains("signature"), "{msg}");
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let msg = refused(&rs256(RSA_OTHER_PUBLIC), &sign(Algorithm::RS256, &rsa, &c));
    assert!(msg.contains("signature"), "{msg}");
}

#[test]
fn algorithms_not_configured_are_refused() {
    let c = claims(json!({}));
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let msg = refused(&hs256(), &sign(Algorithm::RS256, &rsa, &c));
    assert!(msg.contains("algorithm"), "{msg}");
    assert!(refused(&rs256(RSA_PUBLIC), &sign(Algorithm::ES256, &ec, &c)).contains("algorithm"));
    assert!(refused(&es256(), &sign(Algorithm::RS256, &rsa, &c)).contains("algorithm"));
    // Same family, other hash: HS384 is not HS256.
    let hs384 = sign(Algorithm::HS384, &EncodingKey::from_secret(SECRET), &c);
    assert!(refused(&hs256(), &hs384).contains("algorithm"));
}

#[test]
fn alg_none_is_refused_with_or_without_a_signature() {
    let payload = b64(claims(json!({})).to_string().as_bytes());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"NONE"}"#,
        r#"{"typ":"JWT"}"#,
    ] {
        let unsigned = format!("{}.{payload}.", b64(header.as_bytes()));
        refused(&hs256(), &unsigned);
        refused(&rs256(RSA_PUBLIC), &unsigned);
        // With the signature of a real token pasted on.
        let real = hs(&claims(json!({})));
        let sig = real.rsplit('.').next().unwrap();
        refused(
            &hs256(),
            &format!("{}.{payload}.{sig}", b64(header.as_bytes())),
        );
    }
}

/// The classic attack: the server has an RSA public key; the attacker signs an HS256 token with
/// that public key (which is public) as the HMAC secret, hoping the server uses its key as given.
#[test]
fn an_hs256_token_signed_with_the_rsa_public_key_is_refused() {
    let c = claims(json!({"admin": true, "subscribe": ["*"]}));
    let forged = sign(Algorithm::HS256, &EncodingKey::from_secret(RSA_PUBLIC), &c);
    assert!(refused(&rs256(RSA_PUBLIC), &forged).contains("algorithm"));
    // Also with the key's DER body or trimmed PEM, as some libraries would use it.
    let trimmed = std::str::from_utf8(RSA_PUBLIC).unwrap().trim().as_bytes();
    let forged = sign(Algorithm::HS256, &EncodingKey::from_secret(trimmed), &c);
    refused(&rs256(RSA_PUBLIC), &forged);
    let forged = sign(Algorithm::HS256, &EncodingKey::from_secret(EC_PUBLIC), &c);
    refused(&es256(), &forged);
    // And a verifier can never be built to accept HS256 with a public key, or RS256 with a secret.
    let mixed = JwtConfig {
        algorithms: vec![JwtAlgorithm::Rs256, JwtAlgorithm::Hs256],
        ..config(
            JwtAlgorithm::Rs256,
            JwtKeyMaterial::PublicKeyPem(RSA_PUBLIC.to_vec()),
        )
    };
    assert!(JwtVerifier::new(&mixed).is_err());
    let rs_with_secret = config(JwtAlgorithm::Rs256, JwtKeyMaterial::Secret(SECRET.to_vec()));
    assert!(JwtVerifier::new(&rs_with_secret).is_err());
}

#[test]
fn exp_is_required_and_checked_with_the_leeway() {
    let v = hs256();
    let msg = refused(&v, &hs(&claims(json!({"exp": now() - 100}))));
    assert!(msg.contains("expired"), "{msg}");
    assert!(
        refused(&v, &hs(&claims(json!({"exp": null})))).contains("`exp`"),
        "exp is required"
    );
    refused(&v, &hs(&claims(json!({"exp": "tomorrow"}))));
    // Within the 30 s leeway: still accepted (its stream ends at once, at exp).
    assert!(v.verify(&hs(&claims(json!({"exp": now() - 10})))).is_ok());
    // A fractional NumericDate is fine.
    let p = v
        .verify(&hs(&claims(json!({"exp": now() as f64 + 60.5}))))
        .unwrap();
    assert!(p.expires.is_some());
}

#[test]
fn a_zero_leeway_refuses_a_token_just_expired() {
    let mut cfg = config(JwtAlgorithm::Hs256, JwtKeyMaterial::Secret(SECRET.to_vec()));
    cfg.leeway = Duration::ZERO;
    let v = JwtVerifier::new(&cfg).unwrap();
    refused(&v, &hs(&claims(json!({"exp": now() - 5}))));
    refused(&v, &hs(&claims(json!({"nbf": now() + 5}))));
}

#[test]
fn nbf_is_honoured_with_the_leeway() {
    let v = hs256();
    let msg = refused(&v, &hs(&claims(json!({"nbf": now() + 100}))));
    assert!(msg.contains("not valid yet"), "{msg}");
    assert!(v.verify(&hs(&claims(json!({"nbf": now() + 10})))).is_ok());
    assert!(v.verify(&hs(&claims(json!({"nbf": now() - 10})))).is_ok());
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let mut cfg = config(JwtAlgorithm::Hs256, JwtKeyMaterial::Secret(SECRET.to_vec()));
    cfg.audience = Some("sse".into());
    cfg.issuer = Some("https://auth.example".into());
    let v = JwtVerifier::new(&cfg).unwrap();
    let good = json!({"aud": "sse", "iss": "https://auth.example"});
    assert!(v.verify(&hs(&claims(good.clone()))).is_ok());
    let listed = json!({"aud": ["other", "sse"], "iss": "https://auth.example"});
    assert!(v.verify(&hs(&claims(listed))).is_ok());
    let wrong_aud = json!({"aud": "other", "iss": "https://auth.example"});
    assert!(refused(&v, &hs(&claims(wrong_aud))).contains("audience"));
    let wrong_iss = json!({"aud": "sse", "iss": "https://evil.example"});
    assert!(refused(&v, &hs(&claims(wrong_iss))).contains("issuer"));
    let no_aud = json!({"iss": "https://auth.example"});
    assert!(refused(&v, &hs(&claims(no_aud))).contains("`aud`"));
    let no_iss = json!({"aud": "sse"});
    assert!(refused(&v, &hs(&claims(no_iss))).contains("`iss`"));
    // Without a configured audience, a token meant for someone else (`aud`) is refused.
    assert!(refused(&hs256(), &hs(&claims(good))).contains("audience"));
}

#[test]
fn sub_is_required_and_bounded() {
    let v = hs256();
    assert!(refused(&v, &hs(&claims(json!({"sub": null})))).contains("`sub`"));
    refused(&v, &hs(&claims(json!({"sub": ""}))));
    refused(&v, &hs(&claims(json!({"sub": "x".repeat(257)}))));
    refused(&v, &hs(&claims(json!({"sub": 42}))));
}

#[test]
fn sub_is_expanded_only_when_it_is_made_of_channel_characters() {
    let v = hs256();
    let p = v
        .verify(&hs(&claims(json!({"sub": "u-42:eu/x_y.z"}))))
        .unwrap();
    assert_eq!(
        p.subscribe[0],
        ChannelPattern::Prefix("user.u-42:eu/x_y.z.".into())
    );
    // `*` would turn `user.{sub}.out` into a prefix; other characters make no channel at all.
    for sub in [
        "*",
        "a*",
        "a b",
        "a,b",
        "é",
        "a\nb",
        "{sub}",
        "x".repeat(130).as_str(),
    ] {
        let msg = refused(&v, &hs(&claims(json!({"sub": sub}))));
        assert!(
            msg.contains("`sub`") || msg.contains("invalid channel pattern"),
            "{sub:?}: {msg}"
        );
    }
    // A subject no pattern uses may be anything (within the length limit): nothing to widen.
    let plain = json!({"sub": "alice@example.com", "subscribe": ["news"], "publish": []});
    let p = v.verify(&hs(&claims(plain))).unwrap();
    assert_eq!(&*p.name, "alice@example.com");
}

#[test]
fn claims_of_the_wrong_shape_are_refused() {
    let v = hs256();
    for bad in [
        json!({"subscribe": "news"}),
        json!({"subscribe": [1]}),
        json!({"publish": ["a b"]}),
        json!({"subscribe": ["news**"]}),
        json!({"admin": "yes"}),
        json!({"exp": -5}),
    ] {
        refused(&v, &hs(&claims(bad)));
    }
    // Absent rights claims mean no rights.
    let none = json!({"subscribe": null, "publish": null, "admin": null});
    let p = v.verify(&hs(&claims(none))).unwrap();
    assert!(p.subscribe.is_empty() && p.publish.is_empty() && !p.admin);
}

#[test]
fn malformed_tokens_and_garbage_base64_are_refused() {
    let v = hs256();
    let real = hs(&claims(json!({})));
    let mut parts = real.split('.');
    let (h, c, s) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    for token in [
        String::new(),
        "abc".into(),
        "a.b".into(),
        "a.b.c".into(),
        "...".into(),
        format!("{real}.x"),
        format!("{h}.{c}"),
        format!("!!!.{c}.{s}"),
        format!("{h}.%%%.{s}"),
        format!("{h}.{c}.***"),
        format!("{h}.{c}x.{s}"),
        format!("{h}.{}.{s}", b64(b"not json")),
        format!("{}.{c}.{s}", b64(b"[]")),
        format!("{h}=.{c}.{s}"),
        "x".repeat(9000),
    ] {
        refused(&v, &token);
    }
}

#[test]
fn public_keys_are_checked_when_loaded() {
    assert_eq!(check_public_key(RSA_PUBLIC), Ok(PublicKeyKind::Rsa));
    assert_eq!(check_public_key(EC_PUBLIC), Ok(PublicKeyKind::Ec));
    let bits = check_public_key(RSA_1024_PUBLIC).unwrap_err();
    assert!(bits.contains("1024 bits"), "{bits}");
    assert!(check_public_key(EC_P384_PUBLIC)
        .unwrap_err()
        .contains("P-256"));
    assert!(check_public_key(RSA_PRIVATE)
        .unwrap_err()
        .contains("private key"));
    assert!(check_public_key(EC_PRIVATE)
        .unwrap_err()
        .contains("private key"));
    assert!(check_public_key(b"hello").unwrap_err().contains("PEM"));
    assert!(check_public_key(&[0xff, 0xfe]).is_err());
    let broken = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    assert!(check_public_key(broken.as_bytes()).is_err());
    let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(check_public_key(cert.as_bytes())
        .unwrap_err()
        .contains("CERTIFICATE"));
}
