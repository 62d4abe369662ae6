use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(deleting_answers_only_meta_and_frees_the_externalid);

async fn deleting_answers_only_meta_and_frees_the_externalid(server: TestServer) {
    let key = server.admin_key().await;
    let limit = json!({"name": "per_month", "limit": 100, "duration": 2592000000_i64, "autoApply": true});
    let first = server.create_identity(&key, json!({"externalId": "tier", "ratelimits": [limit]})).await;
    let response = server.call("identities.deleteIdentity", &key, json!({"identity": "tier"})).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body.as_object().unwrap().keys().collect::<Vec<_>>(), ["meta"]);
    // Delete, create, delete again: the Stripe tier-change flow that made Unkey 500.
    let second = server.create_identity(&key, json!({"externalId": "tier", "ratelimits": [limit]})).await;
    assert_ne!(first, second);
    assert_eq!(server.call("identities.deleteIdentity", &key, json!({"identity": second})).await.status, 200);
    assert!(server.list_all_ids(&key).await.is_empty());
}
