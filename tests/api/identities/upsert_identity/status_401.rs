use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(an_unknown_root_key_is_401);

async fn an_unknown_root_key_is_401(server: TestServer) {
    let response = server.call("identities.upsertIdentity", "invalid_key", json!({"externalId": "u"})).await;
    response.assert_error(401, "unkey/authentication/key_not_found");
}
