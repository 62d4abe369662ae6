use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(
    creates_an_identity_that_reads_back_whole,
    externalid_bounds_are_inclusive,
    meta_of_every_json_type_round_trips,
    meta_of_almost_one_mebibyte_is_stored,
    a_urn_grant_allows_create,
    externalids_are_case_sensitive_and_per_workspace,
);

async fn creates_an_identity_that_reads_back_whole(server: TestServer) {
    let key = server.admin_key().await;
    let response = server
        .call(
            "identities.createIdentity",
            &key,
            json!({
                "externalId": "user_123",
                "meta": {"plan": "pro", "seats": 3},
                "ratelimits": [
                    {"name": "tokens", "limit": 1000, "duration": 3600000, "autoApply": false},
                    {"name": "api", "limit": 10, "duration": 1000, "autoApply": true}
                ]
            }),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(response.request_id().starts_with("req_"));
    let id = response.body["data"]["identityId"].as_str().unwrap();
    assert!(id.starts_with("id_"));
    assert_eq!(response.body["data"].as_object().unwrap().len(), 1, "only identityId is returned");

    let got = server.call("identities.getIdentity", &key, json!({"identity": id})).await;
    assert_eq!(got.status, 200);
    let data = &got.body["data"];
    assert_eq!(data["externalId"], "user_123");
    assert_eq!(data["meta"], json!({"plan": "pro", "seats": 3}));
    let names: Vec<&str> = data["ratelimits"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["api", "tokens"], "ratelimits come back sorted by name");
    assert_eq!(data["ratelimits"][0]["limit"], 10);
    assert_eq!(data["ratelimits"][0]["duration"], 1000);
    assert_eq!(data["ratelimits"][0]["autoApply"], true);
    assert!(data["ratelimits"][0]["id"].as_str().unwrap().starts_with("rl_"));
}

async fn externalid_bounds_are_inclusive(server: TestServer) {
    let key = server.root_key(&["identity.*.create_identity"]).await;
    for external_id in ["a".to_owned(), "x".repeat(255), "A-z_0.9".to_owned()] {
        let response = server.call("identities.createIdentity", &key, json!({"externalId": external_id})).await;
        assert_eq!(response.status, 200, "{external_id}: {}", response.body);
    }
}

/// Meta may be up to 1 MiB (serialized), so the body that carries it must be allowed to be larger: this
/// one is just over 1 MiB.
async fn meta_of_almost_one_mebibyte_is_stored(server: TestServer) {
    let key = server.admin_key().await;
    let meta = json!({"blob": "x".repeat(1024 * 1024 - 16)});
    let id = server.create_identity(&key, json!({"externalId": "large", "meta": meta})).await;
    let got = server.call("identities.getIdentity", &key, json!({"identity": id})).await;
    assert_eq!(got.body["data"]["meta"], meta);
}

async fn meta_of_every_json_type_round_trips(server: TestServer) {
    let key = server.admin_key().await;
    let meta = json!({
        "string": "héllo 👋 世界", "int": 42, "float": 1.5, "negative": -7, "bool": false, "null": null,
        "array": [1, "two", {"three": 3}], "empty_array": [], "empty_object": {},
        "nested": {"deep": {"deeper": {"deepest": true}}}
    });
    let id = server.create_identity(&key, json!({"externalId": "typed", "meta": meta})).await;
    let got = server.call("identities.getIdentity", &key, json!({"identity": id})).await;
    assert_eq!(got.body["data"]["meta"], meta);
}

async fn a_urn_grant_allows_create(server: TestServer) {
    let (workspace, _) = server.store.ensure_workspace(crate::harness::WORKSPACE).await.unwrap();
    let grant = format!("unkey:v1:{}:projects/*/identities/*#create_identity", workspace.as_str());
    let key = server.root_key(&[&grant]).await;
    let response = server.call("identities.createIdentity", &key, json!({"externalId": "urn_user"})).await;
    assert_eq!(response.status, 200, "{}", response.body);
}

async fn externalids_are_case_sensitive_and_per_workspace(server: TestServer) {
    let key = server.admin_key().await;
    let other_workspace_key = server.admin_key_in("other").await;
    for (key, external_id) in [(&key, "Alice"), (&key, "alice"), (&other_workspace_key, "alice")] {
        let response = server.call("identities.createIdentity", key, json!({"externalId": external_id})).await;
        assert_eq!(response.status, 200, "{external_id}: {}", response.body);
    }
}
