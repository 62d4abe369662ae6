use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(
    finds_an_identity_by_id_and_by_externalid,
    empty_meta_and_ratelimits_are_omitted,
    a_per_identity_grant_allows_reading_that_identity,
    an_id_match_wins_over_an_externalid_match,
);

async fn finds_an_identity_by_id_and_by_externalid(server: TestServer) {
    let key = server.admin_key().await;
    let id = server.create_identity(&key, json!({"externalId": "user_9", "meta": {"n": 100}})).await;
    for lookup in [id.as_str(), "user_9"] {
        let response = server.call("identities.getIdentity", &key, json!({"identity": lookup})).await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.body["data"], json!({"id": id, "externalId": "user_9", "meta": {"n": 100}}));
    }
}

async fn empty_meta_and_ratelimits_are_omitted(server: TestServer) {
    let key = server.admin_key().await;
    let id = server.create_identity(&key, json!({"externalId": "bare", "meta": {}, "ratelimits": []})).await;
    let response = server.call("identities.getIdentity", &key, json!({"identity": id})).await;
    assert_eq!(response.body["data"], json!({"id": id, "externalId": "bare"}));
}

async fn a_per_identity_grant_allows_reading_that_identity(server: TestServer) {
    let admin = server.admin_key().await;
    let id = server.create_identity(&admin, json!({"externalId": "granted"})).await;
    let reader = server.root_key(&[&format!("identity.{id}.read_identity")]).await;
    let response = server.call("identities.getIdentity", &reader, json!({"identity": "granted"})).await;
    assert_eq!(response.status, 200, "{}", response.body);
}

async fn an_id_match_wins_over_an_externalid_match(server: TestServer) {
    let key = server.admin_key().await;
    let first = server.create_identity(&key, json!({"externalId": "first"})).await;
    // A second identity whose externalId is spelled like the first one's id.
    server.create_identity(&key, json!({"externalId": first})).await;
    let response = server.call("identities.getIdentity", &key, json!({"identity": first})).await;
    assert_eq!(response.body["data"]["externalId"], "first");
}
