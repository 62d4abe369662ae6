use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(invalid_upserts_are_400_and_write_nothing);

async fn invalid_upserts_are_400_and_write_nothing(server: TestServer) {
    let key = server.admin_key().await;
    let limit = json!({"name": "api", "limit": 5, "duration": 1000, "autoApply": true});
    for body in [
        json!({"externalId": ""}),
        json!({"meta": {}}),
        json!({"externalId": "u", "meta": 1}),
        json!({"externalId": "u", "ratelimits": [limit, limit]}),
    ] {
        let response = server.call("identities.upsertIdentity", &key, body.clone()).await;
        response.assert_error(400, "unkey/application/invalid_input");
    }
    assert!(server.list_all_ids(&key).await.is_empty());
}
