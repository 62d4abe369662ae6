use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(a_body_over_ten_mebibytes_is_413);

async fn a_body_over_ten_mebibytes_is_413(server: TestServer) {
    let key = server.admin_key().await;
    // Unkey's cap: bodies up to 10 MiB are read, so that a meta of up to 1 MiB, escaped, always fits.
    let body = json!({"externalId": "big", "meta": {"blob": "x".repeat(10 * 1024 * 1024)}});
    let response = server.call("identities.createIdentity", &key, body).await;
    response.assert_error(413, "user/bad_request/request_body_too_large");
    assert!(server.list_all_ids(&key).await.is_empty());
}
