use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(invalid_updates_are_400_and_change_nothing);

async fn invalid_updates_are_400_and_change_nothing(server: TestServer) {
    let key = server.admin_key().await;
    server.create_identity(&key, json!({"externalId": "u", "meta": {"keep": true}})).await;
    let limit = json!({"name": "api_calls", "limit": 1, "duration": 1000, "autoApply": false});
    let duplicate = server
        .call("identities.updateIdentity", &key, json!({"identity": "u", "meta": {}, "ratelimits": [limit, limit]}))
        .await;
    duplicate.assert_error(400, "unkey/application/invalid_input");
    assert!(duplicate.detail().contains("api_calls"));
    for (body, location) in [
        (json!({"identity": ""}), "/properties/identity/minLength"),
        (json!({"meta": {}}), "/required"),
        (json!({"identity": "u", "meta": []}), "/properties/meta/type"),
        (json!({"identity": "u", "name": "renamed"}), "/additionalProperties"),
        (json!({"identity": "u", "externalId": "with space"}), "/properties/externalId/pattern"),
    ] {
        let response = server.call("identities.updateIdentity", &key, body.clone()).await;
        response.assert_error(400, "unkey/application/invalid_input");
        assert_eq!(
            response.detail(),
            "POST request body for '/v2/identities.updateIdentity' failed to validate schema"
        );
        assert_eq!(response.body["error"]["errors"][0]["location"], location, "{body}");
    }
    let after = server.call("identities.getIdentity", &key, json!({"identity": "u"})).await;
    assert_eq!(after.body["data"]["meta"], json!({"keep": true}));
}
