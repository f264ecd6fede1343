//! `GET /openapi.json`: the gateway serves `api/openapi.yaml`, as JSON, unchanged.

mod common;

use common::{http, workspace_root, Gateway};

#[tokio::test]
async fn the_served_document_is_api_openapi_yaml() {
    let file = std::fs::read_to_string(workspace_root().join("api/openapi.yaml")).expect("read");
    let expected: serde_json::Value = serde_saphyr::from_str(&file).expect("api/openapi.yaml");
    let gw = Gateway::start("");
    let resp = http()
        .get(gw.url("/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json",
        "served as JSON"
    );
    let served: serde_json::Value = resp.json().await.expect("JSON body");
    assert_eq!(served, expected);
}

#[tokio::test]
async fn the_document_is_read_only() {
    let gw = Gateway::start("");
    let resp = http()
        .post(gw.url("/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD");
}
