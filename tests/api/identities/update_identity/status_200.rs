use futures::future::join_all;
use serde_json::{Value, json};

use crate::harness::TestServer;

crate::backend_tests!(
    ratelimits_are_reconciled_by_name_and_keep_their_ids,
    meta_is_replaced_and_omitted_parts_stay,
    empty_values_clear,
    concurrent_updates_of_one_identity_all_succeed,
    ratelimits_as_read_can_be_sent_back,
    a_key_that_may_not_read_gets_only_the_names,
);

fn limit(name: &str, limit: i64) -> Value {
    json!({"name": name, "limit": limit, "duration": 60000, "autoApply": false})
}

async fn ratelimits_are_reconciled_by_name_and_keep_their_ids(server: TestServer) {
    let key = server.admin_key().await;
    let body = json!({"externalId": "u", "ratelimits": [limit("api_calls", 100), limit("special_feature", 5)]});
    let id = server.create_identity(&key, body).await;
    let before = server.call("identities.getIdentity", &key, json!({"identity": id})).await;
    let api_calls_id = before.body["data"]["ratelimits"][0]["id"].clone();

    let update = json!({"identity": "u", "ratelimits": [limit("new_feature", 1), limit("api_calls", 200)]});
    let response = server.call("identities.updateIdentity", &key, update).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let limits = response.body["data"]["ratelimits"].as_array().unwrap();
    assert_eq!(limits.len(), 2);
    assert_eq!(limits[0]["name"], "api_calls");
    assert_eq!(limits[0]["limit"], 200);
    assert_eq!(limits[0]["id"], api_calls_id, "an updated ratelimit keeps its id");
    assert_eq!(limits[1]["name"], "new_feature");

    let after = server.call("identities.getIdentity", &key, json!({"identity": id})).await;
    assert_eq!(after.body["data"], response.body["data"], "the response is what is stored");
}

async fn meta_is_replaced_and_omitted_parts_stay(server: TestServer) {
    let key = server.admin_key().await;
    let id = server
        .create_identity(&key, json!({"externalId": "u", "meta": {"a": 1, "b": 2}, "ratelimits": [limit("api", 1)]}))
        .await;
    let response = server.call("identities.updateIdentity", &key, json!({"identity": id, "meta": {"c": 3}})).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["data"]["meta"], json!({"c": 3}), "meta is replaced, not merged");
    assert_eq!(response.body["data"]["ratelimits"][0]["name"], "api", "omitted ratelimits stay");
    let response = server.call("identities.updateIdentity", &key, json!({"identity": id, "ratelimits": []})).await;
    assert_eq!(response.body["data"]["meta"], json!({"c": 3}), "omitted meta stays");
}

async fn empty_values_clear(server: TestServer) {
    let key = server.admin_key().await;
    let id = server
        .create_identity(&key, json!({"externalId": "u", "meta": {"a": 1}, "ratelimits": [limit("api", 1)]}))
        .await;
    let response =
        server.call("identities.updateIdentity", &key, json!({"identity": id, "meta": {}, "ratelimits": []})).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["data"], json!({"id": id, "externalId": "u"}));
}

async fn concurrent_updates_of_one_identity_all_succeed(server: TestServer) {
    let key = server.admin_key().await;
    server.create_identity(&key, json!({"externalId": "hot", "ratelimits": [limit("api", 1)]})).await;
    let updates = (0..10).map(|n| {
        let body = json!({"identity": "hot", "meta": {"n": n}, "ratelimits": [limit("api", n + 1), limit(&format!("extra_{n}"), 1)]});
        server.call("identities.updateIdentity", &key, body)
    });
    for response in join_all(updates).await {
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let after = server.call("identities.getIdentity", &key, json!({"identity": "hot"})).await;
    let n = after.body["data"]["meta"]["n"].as_i64().unwrap();
    let limits = after.body["data"]["ratelimits"].as_array().unwrap();
    assert_eq!(limits.len(), 2, "one update's set, whole: {limits:?}");
    assert_eq!(limits[0]["limit"], n + 1, "meta and ratelimits come from the same update");
    assert_eq!(limits[1]["name"], format!("extra_{n}"));
}

/// A client may read an identity, edit it and send its ratelimits back as they came, `id` included: Unkey's
/// RatelimitRequest does not forbid extra members.
async fn ratelimits_as_read_can_be_sent_back(server: TestServer) {
    let key = server.admin_key().await;
    let id = server.create_identity(&key, json!({"externalId": "u", "ratelimits": [limit("api", 1)]})).await;
    let read = server.call("identities.getIdentity", &key, json!({"identity": id})).await;
    let mut ratelimits = read.body["data"]["ratelimits"].clone();
    ratelimits[0]["limit"] = json!(7);
    let response =
        server.call("identities.updateIdentity", &key, json!({"identity": id, "ratelimits": ratelimits})).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["data"]["ratelimits"], ratelimits, "same id, new limit");
}

/// An update must not show meta or ratelimits to a key that may write but not read them.
async fn a_key_that_may_not_read_gets_only_the_names(server: TestServer) {
    let admin = server.admin_key().await;
    let id = server.create_identity(&admin, json!({"externalId": "u", "meta": {"secret": 1}})).await;
    let writer = server.root_key(&["identity.*.update_identity"]).await;
    let updated = server.call("identities.updateIdentity", &writer, json!({"identity": "u"})).await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["data"], json!({"id": id, "externalId": "u"}));
}
