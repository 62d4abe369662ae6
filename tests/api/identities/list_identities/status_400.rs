use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(out_of_range_arguments_are_400);

async fn out_of_range_arguments_are_400(server: TestServer) {
    let key = server.admin_key().await;
    for (body, location) in [
        (json!({"limit": 0}), "/properties/limit/minimum"),
        (json!({"limit": -1}), "/properties/limit/minimum"),
        (json!({"limit": 101}), "/properties/limit/maximum"),
        (json!({"limit": 1000}), "/properties/limit/maximum"),
        (json!({"limit": 1.5}), "/properties/limit/type"),
        (json!({"limit": "10"}), "/properties/limit/type"),
        (json!({"search": "x".repeat(257)}), "/properties/search/maxLength"),
        (json!({"cursor": 5}), "/properties/cursor/type"),
        (json!({"environment": "prod"}), "/additionalProperties"),
    ] {
        let response = server.call("identities.listIdentities", &key, body.clone()).await;
        response.assert_error(400, "unkey/application/invalid_input");
        assert_eq!(response.body["error"]["errors"][0]["location"], location, "{body}");
    }
}
