use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(a_body_over_ten_mebibytes_is_413);

async fn a_body_over_ten_mebibytes_is_413(server: TestServer) {
    let key = server.admin_key().await;
    // Past 4 MiB a body is refused (meta holds at most 1 MiB); one of Unkey's 10 MiB is still read, and thrown
    // away, so that its client gets the 413 rather than a reset connection.
    let body = json!({"externalId": "big", "meta": {"blob": "x".repeat(10 * 1024 * 1024)}});
    let response = server.call("identities.createIdentity", &key, body).await;
    response.assert_error(413, "user/bad_request/request_body_too_large");
    assert!(server.list_all_ids(&key).await.is_empty());
}
