//! Authentication over real sockets against the real binary: JWTs (HS256, RS256, ES256) by
//! header, cookie and query; API keys by both headers; connect tickets; channel policies;
//! publish and admin rights from claims; the `token_expired` end of a stream; and credentials
//! kept out of the logs.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(5);

fn fixture(name: &str) -> String {
    workspace_root()
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Alice's token: ten minutes, her own `secret.alice.*` channels, `extra` merged in.
fn claims(extra: Value) -> Value {
    let mut c = json!({
        "sub": "alice",
        "exp": now() + 600,
        "subscribe": ["secret.{sub}.*"],
        "publish": ["secret.{sub}.*"],
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn hs256(claims: &Value) -> String {
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

fn alice() -> String {
    hs256(&claims(json!({})))
}

/// Opens a stream, then publishes on `channel` and checks the event arrives.
async fn assert_stream_works(gw: &Gateway, path: &str, headers: &[(&str, &str)], channel: &str) {
    let mut c = SseClient::connect_with(&gw.url(path), headers).await;
    assert_eq!(c.status, 200, "{path}");
    c.next_item(T).await.expect("opening");
    let id = gw.publish_ok(channel, "note", "hello").await;
    let e = c.next_event(T).await.expect("the event");
    assert_eq!((e.id.as_str(), e.data.as_str()), (id.as_str(), "hello"));
}

#[tokio::test]
async fn a_bearer_jwt_opens_the_channels_its_claims_cover_and_no_others() {
    let gw = Gateway::start(&jwt_config(""));
    let bearer = format!("Bearer {}", alice());
    let auth = [("authorization", bearer.as_str())];
    assert_stream_works(
        &gw,
        "/events?channel=secret.alice.inbox",
        &auth,
        "secret.alice.inbox",
    )
    .await;

    // claims: a token that does not cover the channel is 403; none is 401.
    let other = "/events?channel=secret.bob.inbox";
    assert_eq!(
        status_and_code(&gw, other, &auth).await,
        (403, "forbidden".into())
    );
    assert_eq!(
        status_and_code(&gw, other, &[]).await,
        (401, "unauthorized".into())
    );
    // One channel not covered refuses the whole stream.
    let mixed = "/events?channels=secret.alice.a,secret.bob.b";
    assert_eq!(status_and_code(&gw, mixed, &auth).await.0, 403);
    // authenticated: any valid token; public: anyone.
    assert_eq!(
        status_and_code(&gw, "/events?channel=members.x", &auth)
            .await
            .0,
        200
    );
    assert_eq!(
        status_and_code(&gw, "/events?channel=members.x", &[])
            .await
            .0,
        401
    );
    assert_eq!(
        status_and_code(&gw, "/events?channel=news", &[]).await.0,
        200
    );
    // A bad token is 401 even where no credential is needed.
    for bad in [
        "Bearer x.y.z".to_string(),
        format!("Bearer {}", hs256(&claims(json!({"exp": now() - 3600})))),
        format!("Bearer {}x", alice()),
    ] {
        let resp = status_and_code(&gw, "/events?channel=news", &[("authorization", &bad)]).await;
        assert_eq!(resp, (401, "unauthorized".into()), "{bad}");
    }
}

#[tokio::test]
async fn a_jwt_in_the_cookie_or_the_query_opens_a_stream() {
    let gw = Gateway::start(&jwt_config("  cookie_name: app_token\n"));
    let cookie = format!("theme=dark; app_token={}", alice());
    let channel = "secret.alice.feed";
    assert_stream_works(
        &gw,
        &format!("/events?channel={channel}"),
        &[("cookie", &cookie)],
        channel,
    )
    .await;
    // The default cookie name is not read once another is configured.
    let default_name = format!("sse_token={}", alice());
    let path = format!("/events?channel={channel}");
    assert_eq!(
        status_and_code(&gw, &path, &[("cookie", &default_name)])
            .await
            .0,
        401
    );
    assert_stream_works(
        &gw,
        &format!("/events?channel={channel}&access_token={}", alice()),
        &[],
        channel,
    )
    .await;
    let bad = format!("/events?channel=news&access_token={}", "e30.e30.e30");
    assert_eq!(
        status_and_code(&gw, &bad, &[]).await,
        (401, "unauthorized".into())
    );
}

#[tokio::test]
async fn api_keys_work_by_both_headers_and_carry_no_subscribe_rights() {
    let gw = Gateway::start(&jwt_config(""));
    let bearer = format!("Bearer {KEY}");
    for headers in [[("x-api-key", KEY)], [("authorization", bearer.as_str())]] {
        assert_stream_works(&gw, "/events?channel=members.a", &headers, "members.a").await;
        let claims_channel = "/events?channel=secret.alice.a";
        assert_eq!(status_and_code(&gw, claims_channel, &headers).await.0, 403);
    }
    assert_eq!(
        status_and_code(&gw, "/events?channel=members.a", &[("x-api-key", "wrong")]).await,
        (401, "unauthorized".into())
    );
    // X-API-Key takes API keys only, never a JWT.
    let jwt_as_key = [("x-api-key", alice())];
    let jwt_as_key: Vec<(&str, &str)> = jwt_as_key.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        status_and_code(&gw, "/events?channel=members.a", &jwt_as_key)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn publish_uses_the_publish_claim_from_headers_only() {
    let gw = Gateway::start(&jwt_config(""));
    let publish = |auth: Vec<(&'static str, String)>, channel: &'static str| {
        let gw = &gw;
        async move {
            let mut req = http()
                .post(gw.url("/broadcast"))
                .json(&json!({"channel": channel, "data": "x"}));
            for (k, v) in auth {
                req = req.header(k, v);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    let bearer = || vec![("authorization", format!("Bearer {}", alice()))];
    assert_eq!(publish(bearer(), "secret.alice.out").await, 202);
    assert_eq!(publish(bearer(), "secret.bob.out").await, 403);
    // Expired 5 s ago: within the 30 s leeway a publish still verifies, but nothing that lasts
    // (a stream, a ticket) is opened with it.
    let late = hs256(&claims(json!({"exp": now() - 5})));
    let late_bearer = vec![("authorization", format!("Bearer {late}"))];
    assert_eq!(publish(late_bearer, "secret.alice.out").await, 202);
    let late_bearer = format!("Bearer {late}");
    let late_auth = [("authorization", late_bearer.as_str())];
    let stream = status_and_code(&gw, "/events?channel=secret.alice.out", &late_auth).await;
    assert_eq!(stream, (401, "unauthorized".into()));
    assert_eq!(
        post_ticket(&gw, &[("authorization", &late_bearer)]).await.0,
        401
    );
    // A cookie or a query token is never a credential for publishing (cross-site requests).
    let cookie = vec![("cookie", format!("sse_token={}", alice()))];
    assert_eq!(publish(cookie, "secret.alice.out").await, 401);
    let resp = http()
        .post(gw.url(&format!("/broadcast?access_token={}", alice())))
        .json(&json!({"channel": "secret.alice.out", "data": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn the_admin_claim_opens_stats_and_clients_shows_the_subject_not_the_token() {
    let gw = Gateway::start(&jwt_config(""));
    let admin = format!(
        "Bearer {}",
        hs256(&claims(json!({"sub": "root", "admin": true})))
    );
    let plain = format!("Bearer {}", alice());
    assert_eq!(
        status_and_code(&gw, "/stats", &[("authorization", &admin)])
            .await
            .0,
        200
    );
    assert_eq!(
        status_and_code(&gw, "/stats", &[("authorization", &plain)]).await,
        (403, "forbidden".into())
    );
    assert_eq!(status_and_code(&gw, "/stats", &[]).await.0, 401);

    let token = alice();
    let mut c = SseClient::connect(&gw.url(&format!(
        "/events?channel=secret.alice.x&access_token={token}"
    )))
    .await;
    assert_eq!(c.status, 200);
    c.next_item(T).await;
    let resp = http()
        .get(gw.url("/clients"))
        .header("authorization", &admin)
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let page: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(page["clients"][0]["principal"], "alice");
    assert!(!text.contains(&token), "{text}");
}

#[tokio::test]
async fn tickets_stand_for_the_credential_once() {
    let gw = Gateway::start(&jwt_config(""));
    let bearer = format!("Bearer {}", alice());
    let (status, headers, body) = post_ticket(&gw, &[("authorization", &bearer)]).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["expires_in"], 30);
    let ticket = body["ticket"].as_str().unwrap().to_string();
    assert!(ticket.len() >= 32 && ticket.bytes().all(|b| b.is_ascii_alphanumeric()));

    let path = format!("/events?channel=secret.alice.t&ticket={ticket}");
    assert_stream_works(&gw, &path, &[], "secret.alice.t").await;
    // Single use; unknown tickets are refused the same way.
    assert_eq!(
        status_and_code(&gw, &path, &[]).await,
        (401, "invalid_ticket".into())
    );
    let unknown = format!("/events?channel=news&ticket={}", "0".repeat(64));
    assert_eq!(
        status_and_code(&gw, &unknown, &[]).await,
        (401, "invalid_ticket".into())
    );
    // Bound to the credential's rights: alice's ticket does not open bob's channel.
    let (_, _, body) = post_ticket(&gw, &[("authorization", &bearer)]).await;
    let bobs = format!(
        "/events?channel=secret.bob.t&ticket={}",
        body["ticket"].as_str().unwrap()
    );
    assert_eq!(status_and_code(&gw, &bobs, &[]).await.0, 403);

    // Minted by headers or the cookie, never by a query token or another ticket.
    let cookie = format!("sse_token={}", alice());
    assert_eq!(post_ticket(&gw, &[("cookie", &cookie)]).await.0, 201);
    assert_eq!(post_ticket(&gw, &[("x-api-key", KEY)]).await.0, 201);
    assert_eq!(post_ticket(&gw, &[]).await.0, 401);
    let resp = http()
        .post(gw.url(&format!("/tickets?access_token={}", alice())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let (_, _, body) = post_ticket(&gw, &[("x-api-key", KEY)]).await;
    let by_ticket = format!("/tickets?ticket={}", body["ticket"].as_str().unwrap());
    assert_eq!(
        http()
            .post(gw.url(&by_ticket))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http()
            .get(gw.url("/tickets"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );

    // CORS applies as everywhere.
    let (status, headers, _) = post_ticket(
        &gw,
        &[("authorization", &bearer), ("origin", "http://app.test")],
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(headers["access-control-allow-origin"], "http://app.test");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    let (status, _, _) = post_ticket(
        &gw,
        &[("authorization", &bearer), ("origin", "http://evil.test")],
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn tickets_expire_after_the_ticket_ttl() {
    let gw = Gateway::start(&jwt_config("  ticket_ttl: 1s\n"));
    let (status, _, body) = post_ticket(&gw, &[("x-api-key", KEY)]).await;
    assert_eq!((status, body["expires_in"].as_u64()), (201, Some(1)));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let path = format!(
        "/events?channel=members.a&ticket={}",
        body["ticket"].as_str().unwrap()
    );
    assert_eq!(
        status_and_code(&gw, &path, &[]).await,
        (401, "invalid_ticket".into())
    );
}

/// How soon a stream must end once its token, at most 2 s from expiry, does: three times
/// that, for a busy machine, and nowhere near the one-hour lifetime it would have otherwise.
const EXPIRY_CEILING: Duration = Duration::from_secs(3 * 2);

#[tokio::test]
async fn a_stream_ends_with_token_expired_when_its_token_does() {
    let gw = Gateway::start(&jwt_config(""));
    // At most 2 s away (`now` is in whole seconds).
    let exp = now() + 2;
    let token = hs256(&claims(json!({"exp": exp})));
    let path = format!("/events?channel=secret.alice.live&access_token={token}");
    let mut c = SseClient::connect(&gw.url(&path)).await;
    assert_eq!(c.status, 200);
    c.next_item(T).await.expect("opening");
    let id = gw.publish_ok("secret.alice.live", "note", "before").await;
    let opened = std::time::Instant::now();
    let items = c.until_end(2 * EXPIRY_CEILING).await;
    let events: Vec<_> = items
        .into_iter()
        .filter_map(|i| match i {
            sse_gateway::sse::parse::ParsedItem::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    let last = events.last().expect("events");
    assert_eq!(last.event, "token_expired");
    assert_eq!(last.data, r#"{"reason":"token_expired"}"#);
    assert_eq!(
        last.id, id,
        "repeats the last id, so the resume point stays"
    );
    assert!(events.iter().any(|e| e.data == "before"));
    // It ended at exp (whole seconds), not at the one-hour lifetime.
    let ended_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    assert!(
        ended_at.as_secs_f64() >= exp as f64 - 0.05,
        "{ended_at:?} vs {exp}"
    );
    assert!(opened.elapsed() < EXPIRY_CEILING, "{:?}", opened.elapsed());
    eventually(T, "counted as token_expired", || async {
        gw.metric(
            "sse_gateway_streams_closed_total",
            "reason=\"token_expired\"",
        )
        .await
            == 1.0
    })
    .await;
    // Reconnecting with the same (now expired) token is 401: the app must fetch a new one.
    assert_eq!(
        status_and_code(&gw, &path, &[]).await,
        (401, "unauthorized".into())
    );
}

#[tokio::test]
async fn rs256_and_es256_gateways_verify_with_public_keys_and_refuse_key_confusion() {
    for (alg, private, public) in [
        (Algorithm::RS256, "jwt-rsa.key.pem", "jwt-rsa.pub.pem"),
        (Algorithm::ES256, "jwt-ec.key.pem", "jwt-ec.pub.pem"),
    ] {
        let yaml = jwt_config("").replace(
            "    secret_env: TEST_JWT_SECRET\n",
            &format!(
                "    algorithms: [{alg:?}]\n    public_key_file: {}\n",
                fixture(public)
            ),
        );
        let gw = Gateway::start(&yaml);
        let pem = std::fs::read(fixture(private)).unwrap();
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
            _ => EncodingKey::from_ec_pem(&pem).unwrap(),
        };
        let token = encode(&Header::new(alg), &claims(json!({})), &key).unwrap();
        let bearer = format!("Bearer {token}");
        let path = "/events?channel=secret.alice.k";
        assert_stream_works(&gw, path, &[("authorization", &bearer)], "secret.alice.k").await;

        // The public key is public: an HS256 token "signed" with it must not verify.
        let public_pem = std::fs::read(fixture(public)).unwrap();
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &claims(json!({"subscribe": ["*"], "admin": true})),
            &EncodingKey::from_secret(&public_pem),
        )
        .unwrap();
        let forged = format!("Bearer {forged}");
        assert_eq!(
            status_and_code(&gw, path, &[("authorization", &forged)])
                .await
                .0,
            401
        );
        assert_eq!(
            status_and_code(&gw, "/stats", &[("authorization", &forged)])
                .await
                .0,
            401
        );
        // Nor does the shared-secret token of the HS256 gateways.
        let hs = format!("Bearer {}", alice());
        assert_eq!(
            status_and_code(&gw, path, &[("authorization", &hs)])
                .await
                .0,
            401
        );
    }
}

#[tokio::test]
async fn credentials_in_urls_never_reach_the_logs() {
    let gw = Gateway::start_with_env(&jwt_config(""), &[("RUST_LOG", "trace")]);
    let token = alice();
    let bad_token = hs256(&claims(json!({"exp": now() - 3600})));
    // A good query token, a refused one, and a refused stream (403) with a query token.
    assert_stream_works(
        &gw,
        &format!("/events?channel=secret.alice.l&access_token={token}"),
        &[],
        "secret.alice.l",
    )
    .await;
    let path = format!("/events?channel=news&access_token={bad_token}");
    assert_eq!(status_and_code(&gw, &path, &[]).await.0, 401);
    let path = format!("/events?channel=secret.bob.l&access_token={token}");
    assert_eq!(status_and_code(&gw, &path, &[]).await.0, 403);
    // A ticket, used, then reused (refused).
    let (_, _, body) = post_ticket(&gw, &[("authorization", &format!("Bearer {token}"))]).await;
    let ticket = body["ticket"].as_str().unwrap().to_string();
    let path = format!("/events?channel=secret.alice.l&ticket={ticket}");
    assert_eq!(status_and_code(&gw, &path, &[]).await.0, 200);
    assert_eq!(status_and_code(&gw, &path, &[]).await.0, 401);
    // A request head pingora cannot parse, with a token in it.
    let mut raw = std::net::TcpStream::connect(gw.addr).unwrap();
    raw.set_read_timeout(Some(T)).unwrap();
    write!(
        raw,
        "GET /events?access_token={token}&ticket={ticket} HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"
    )
    .unwrap();
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink);

    eventually(T, "the refusals are logged", || async {
        gw.logs().contains("request refused")
    })
    .await;
    let logs = gw.logs();
    for secret in [&token, &bad_token, &ticket, &JWT_SECRET.to_string()] {
        // The signature part alone is already a secret.
        let tail = secret.rsplit('.').next().unwrap();
        assert!(
            !logs.contains(tail),
            "a credential leaked into the logs:\n{logs}"
        );
    }
    assert!(logs.contains("access_token=REDACTED"), "{logs}");
    assert!(logs.contains("ticket=REDACTED"), "{logs}");
}

#[test]
fn unusable_jwt_keys_are_config_errors_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "auth:\n  jwt:\n    algorithms: [RS256]\n    public_key_file: {}\n",
            fixture("jwt-rsa.key.pem")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sse-gateway"))
        .args(["--check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:4:22: auth.jwt.public_key_file: ", config.display());
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(stderr.contains("holds a private key"), "{stderr}");

    // Starting (not only --check) refuses the same way, with an unset secret variable.
    std::fs::write(
        &config,
        "listen: 127.0.0.1:0\nauth:\n  jwt:\n    secret_env: SSE_GATEWAY_TEST_UNSET_SECRET\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sse-gateway"))
        .arg("--config")
        .arg(&config)
        .env_remove("SSE_GATEWAY_TEST_UNSET_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":4:17: auth.jwt.secret_env: environment variable SSE_GATEWAY_TEST_UNSET_SECRET is not set"),
        "{stderr}"
    );
}
