//! `GET /openapi.json`: the API description `api/openapi.yaml`, built into the binary and
//! converted to JSON once when the node starts, so the document served is the file of the build
//! that serves it (tests/openapi.rs compares the two).

use bytes::Bytes;
use pingora::protocols::http::ServerSession;

use crate::reply::{self, CommonHeaders};

/// The document as written.
const YAML: &str = include_str!("../../api/openapi.yaml");

/// The document as JSON. Called once by the wiring: an unreadable document stops the start
/// with a message (the unit test below keeps that from ever shipping).
pub fn document() -> Result<Bytes, String> {
    let value: serde_json::Value = serde_saphyr::from_str(YAML)
        .map_err(|e| format!("api/openapi.yaml (built in) cannot be read: {e}"))?;
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|e| format!("api/openapi.yaml (built in) cannot be written as JSON: {e}"))
}

pub(super) async fn serve(
    session: &mut ServerSession,
    common: &CommonHeaders,
    document: &Bytes,
) -> pingora::Result<()> {
    reply::send(
        session,
        common,
        200,
        "application/json",
        &[],
        document.clone(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_document_converts_to_openapi_3_1_json() {
        let json: serde_json::Value = serde_json::from_slice(&document().unwrap()).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        // Response codes stay strings (JSON object keys), as YAML keys they are quoted.
        assert!(json["paths"]["/broadcast"]["post"]["responses"]["202"].is_object());
    }
}
