//! What the section tests share: an environment of fixed values (never the process's, which
//! tests running in parallel must not set) and ways to load a config or list its problems.

use std::ffi::OsString;

use super::*;

pub(super) const UNIT_JWT_SECRET: &str = "unit-test-jwt-secret-of-at-least-32-bytes";

/// The environment every config here sees: a fixed map, never the process environment,
/// which tests running in parallel must not set.
pub(super) fn test_env(name: &str) -> Option<OsString> {
    let value = match name {
        "SSE_GATEWAY_DEV_KEY" => "unit-test-dev-key",
        "SSE_GATEWAY_JWT_SECRET" | "SSE_GATEWAY_UNIT_JWT" => UNIT_JWT_SECRET,
        "SSE_GATEWAY_UNIT_KEY_A" => "env-secret-value",
        "SSE_GATEWAY_UNIT_KEY_EMPTY" => "",
        "SSE_GATEWAY_UNIT_SHORT_JWT" => "too-short",
        _ => return None,
    };
    Some(value.into())
}

pub(super) fn load_ok(text: &str) -> Config {
    load_str_with_env(text, None, &test_env).unwrap_or_else(|e| panic!("{e}"))
}

/// The messages, each prefixed with its `line:col`.
/// Each problem starts with its expected text, in order, and there are no others.
pub(super) fn assert_starts(found: &[String], expected: &[&str]) {
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (got, start) in found.iter().zip(expected) {
        assert!(
            got.starts_with(start),
            "{got:?} should start with {start:?}"
        );
    }
}

pub(super) fn problems(text: &str) -> Vec<String> {
    match load_str_with_env(text, None, &test_env) {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(errors) => errors
            .errors
            .into_iter()
            .map(|e| format!("{}:{}: {}", e.line, e.col, e.message))
            .collect(),
    }
}

/// Asserts exactly one problem, starting with `start`.
pub(super) fn one_problem(text: &str, start: &str) {
    let found = problems(text);
    assert!(
        found.len() == 1 && found[0].starts_with(start),
        "expected one problem starting with {start:?}, got {found:#?}"
    );
}
