use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(schema_violations_are_400);

async fn schema_violations_are_400(server: TestServer) {
    let key = server.admin_key().await;
    for body in [json!({}), json!({"identity": ""}), json!({"identity": null}), json!({"identity": "x", "force": true})]
    {
        let response = server.call("identities.deleteIdentity", &key, body.clone()).await;
        response.assert_error(400, "unkey/application/invalid_input");
        assert_eq!(
            response.detail(),
            "POST request body for '/v2/identities.deleteIdentity' failed to validate schema",
            "{body}"
        );
    }
}
