use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(an_unknown_root_key_is_401);

async fn an_unknown_root_key_is_401(server: TestServer) {
    for key in ["invalid_token", "123", "sigil_0000000000000000000000000000000000000000"] {
        let response = server.call("identities.createIdentity", key, json!({"externalId": "u"})).await;
        response.assert_error(401, "unkey/authentication/key_not_found");
        assert_eq!(response.body["error"]["title"], "Unauthorized");
    }
}
