use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(schema_violations_are_400, auth_header_problems_are_400);

async fn schema_violations_are_400(server: TestServer) {
    let key = server.admin_key().await;
    for (body, location) in [
        (json!({"identity": ""}), "/properties/identity/minLength"),
        (json!({}), "/required"),
        (json!({"identity": 7}), "/properties/identity/type"),
        (json!({"identity": "x", "extra": 1}), "/additionalProperties"),
    ] {
        let response = server.call("identities.getIdentity", &key, body.clone()).await;
        response.assert_error(400, "unkey/application/invalid_input");
        assert_eq!(response.body["error"]["errors"][0]["location"], location, "{body}");
    }
}

async fn auth_header_problems_are_400(server: TestServer) {
    let missing = server.send(server.post("identities.getIdentity").json(&json!({"identity": "x"}))).await;
    missing.assert_error(400, "unkey/application/invalid_input");
    let malformed = server
        .send(
            server
                .post("identities.getIdentity")
                .header("authorization", "InvalidFormat xyz")
                .json(&json!({"identity": "x"})),
        )
        .await;
    malformed.assert_error(400, "unkey/authentication/malformed");
}
