//! Feeds arbitrary bytes to what turns a request into a subscription: the query string, the
//! `Last-Event-ID` header and the credential headers. Nothing may panic, and whatever is
//! accepted must be what the hub is promised: valid, distinct channel names within the limit,
//! valid event types, and no credential accepted that is not configured (JWTs are enabled too,
//! so the token parser sees the headers and `?access_token=`; no fuzzed token can carry a valid
//! signature, and no fuzzed `?ticket=` names one that was issued).
//!
//! Input layout: byte 0 is the channel limit (1..=32), then four fields separated by 0xFF
//! bytes: query, Last-Event-ID, X-API-Key value, Authorization value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sse_gateway::auth::Authenticator;
use sse_gateway::config::{self, is_valid_channel};
use sse_gateway::stream::StreamRequest;

/// One configured key, so that a match would be a real authentication.
const CONFIG: &str = "auth:\n  jwt: {secret_env: FUZZ_JWT_SECRET}\n  api_keys:\n    - {name: k, key_env: FUZZ_KEY, publish: [\"*\"]}\n";
const KEY: &str = "fuzz-secret-key-0123";

/// Reading a credential may wait on a ticket store; with the in-process store it never does.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fn authenticator() -> &'static Authenticator {
    static AUTH: std::sync::OnceLock<Authenticator> = std::sync::OnceLock::new();
    AUTH.get_or_init(|| {
        std::env::set_var("FUZZ_KEY", KEY);
        std::env::set_var("FUZZ_JWT_SECRET", "fuzz-jwt-secret-fuzz-jwt-secret-0123");
        let cfg = config::load_str(CONFIG, None).expect("fuzz config");
        Authenticator::new(&cfg.auth, Default::default()).expect("fuzz authenticator")
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&limit, rest)) = input.split_first() else {
        return;
    };
    let max_channels = usize::from(limit % 32) + 1;
    let mut fields = rest.split(|&b| b == 0xFF);
    let query = fields.next().unwrap_or_default();
    let last_event_id = fields.next();
    let api_key = fields.next().unwrap_or_default();
    let authorization = fields.next().unwrap_or_default();

    let query = String::from_utf8_lossy(query);
    if let Ok(req) = StreamRequest::parse(Some(&query), last_event_id, max_channels) {
        assert!(!req.channels.is_empty() && req.channels.len() <= max_channels);
        for (i, channel) in req.channels.iter().enumerate() {
            assert!(is_valid_channel(channel), "{channel:?}");
            assert!(
                !req.channels[..i].contains(channel),
                "duplicate {channel:?}"
            );
        }
        if let Some(types) = &req.types {
            assert!(!types.is_empty() && types.len() <= 64);
        }
        if let Some(id) = &req.last_event_id {
            assert!(!id.is_empty());
        }
    }

    // The query also goes into the request target, where `?access_token=` and `?ticket=` are read.
    let target = format!("/events?{query}");
    let mut header = pingora::http::RequestHeader::build("GET", target.as_bytes(), None)
        .or_else(|_| pingora::http::RequestHeader::build("GET", b"/events", None))
        .expect("header");
    for (name, value) in [("x-api-key", api_key), ("authorization", authorization)] {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            header.insert_header(name, value).expect("insert");
        }
    }
    if let Ok(caller) = runtime().block_on(authenticator().identify_stream(&header)) {
        let Some(who) = caller.who else { return };
        // Only the configured key authenticates, by either header.
        let presented = [api_key, authorization];
        assert!(
            presented
                .iter()
                .any(|v| v.windows(KEY.len()).any(|w| w == KEY.as_bytes())),
            "authenticated {who:?} without the key"
        );
    }
});
