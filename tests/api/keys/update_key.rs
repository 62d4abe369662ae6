use futures::future::join_all;
use serde_json::{Value, json};

use crate::harness::TestServer;
use crate::keys::get_key::api_and_key;
use crate::keys::stored_keys;

crate::backend_tests!(
    update_key_200_changes_what_is_sent_and_clears_what_is_null,
    update_key_200_replaces_ratelimits_keeping_the_ids_of_names_still_sent,
    update_key_200_credits_as_unkeys_three_states,
    update_key_200_links_gets_or_creates_and_unlinks_an_identity,
    update_key_200_for_100_concurrent_links_of_one_new_external_id_with_one_identity,
    update_key_400_for_credit_rules_roles_and_the_schema,
    update_key_401_for_an_unknown_key,
    update_key_403_without_update_key_for_its_api,
    update_key_404_for_missing_deleted_or_another_workspaces,
    update_key_replays_to_a_retry,
);

async fn got(server: &TestServer, key: &str, key_id: &str) -> Value {
    let got = server.call("keys.getKey", key, json!({"keyId": key_id})).await;
    assert_eq!(got.status, 200, "{}", got.body);
    got.body["data"].clone()
}

async fn update(server: &TestServer, key: &str, body: Value) -> Value {
    let updated = server.call("keys.updateKey", key, body).await;
    assert_eq!((updated.status, &updated.body["data"]), (200, &json!({})), "{}", updated.body);
    updated.body
}

async fn update_key_200_changes_what_is_sent_and_clears_what_is_null(server: TestServer) {
    let admin = server.admin_key().await;
    let body = json!({"name": "ci", "meta": {"plan": "pro"}, "expires": 4_102_444_800_000_i64});
    let (_, key_id, _) = api_and_key(&server, &admin, body).await;
    update(&server, &admin, json!({"keyId": key_id, "enabled": false, "meta": {"plan": "team"}})).await;
    let data = got(&server, &admin, &key_id).await;
    assert_eq!(
        (&data["name"], &data["meta"], &data["enabled"]),
        (&json!("ci"), &json!({"plan": "team"}), &json!(false))
    );
    assert_eq!(data["expires"], 4_102_444_800_000_i64, "left out, so unchanged");
    assert!(data["updatedAt"].as_i64().is_some_and(|at| at >= data["createdAt"].as_i64().unwrap()));
    update(&server, &admin, json!({"keyId": key_id, "name": null, "meta": null, "expires": null})).await;
    let data = got(&server, &admin, &key_id).await;
    for cleared in ["name", "meta", "expires"] {
        assert!(data.get(cleared).is_none(), "{cleared} was cleared: {data}");
    }
    assert_eq!(data["enabled"], false);
}

async fn update_key_200_replaces_ratelimits_keeping_the_ids_of_names_still_sent(server: TestServer) {
    let admin = server.admin_key().await;
    let limit = |name: &str, limit: i64| json!({"name": name, "limit": limit, "duration": 1000, "autoApply": true});
    let (_, key_id, _) = api_and_key(&server, &admin, json!({"ratelimits": [limit("aaa", 1), limit("bbb", 2)]})).await;
    let before = got(&server, &admin, &key_id).await["ratelimits"].clone();
    update(&server, &admin, json!({"keyId": key_id, "ratelimits": [limit("aaa", 5), limit("ccc", 3)]})).await;
    let after = got(&server, &admin, &key_id).await["ratelimits"].clone();
    let names: Vec<&str> = after.as_array().unwrap().iter().map(|limit| limit["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["aaa", "ccc"], "bbb is gone: the set is replaced");
    assert_eq!((&after[0]["id"], &after[0]["limit"]), (&before[0]["id"], &json!(5)), "aaa kept its id");
    update(&server, &admin, json!({"keyId": key_id, "ratelimits": []})).await;
    assert!(got(&server, &admin, &key_id).await.get("ratelimits").is_none(), "[] removes all");
    let null = server.call("keys.updateKey", &admin, json!({"keyId": key_id, "ratelimits": null})).await;
    null.assert_error(400, "unkey/application/invalid_input");
}

async fn update_key_200_credits_as_unkeys_three_states(server: TestServer) {
    let admin = server.admin_key().await;
    let credits = json!({"remaining": 5, "refill": {"interval": "daily", "amount": 10}});
    let (_, key_id, _) = api_and_key(&server, &admin, json!({"credits": credits})).await;
    update(&server, &admin, json!({"keyId": key_id, "credits": {"remaining": 7}})).await;
    let refill = json!({"interval": "daily", "amount": 10});
    assert_eq!(got(&server, &admin, &key_id).await["credits"], json!({"remaining": 7, "refill": refill}));
    update(&server, &admin, json!({"keyId": key_id, "credits": {"refill": null}})).await;
    assert_eq!(got(&server, &admin, &key_id).await["credits"], json!({"remaining": 7}));
    let monthly = json!({"interval": "monthly", "amount": 3, "refillDay": 15});
    update(&server, &admin, json!({"keyId": key_id, "credits": {"refill": monthly}})).await;
    assert_eq!(got(&server, &admin, &key_id).await["credits"], json!({"remaining": 7, "refill": monthly}));
    update(&server, &admin, json!({"keyId": key_id, "credits": {"remaining": null}})).await;
    assert!(got(&server, &admin, &key_id).await.get("credits").is_none(), "remaining null: unlimited, no refill");
    update(&server, &admin, json!({"keyId": key_id, "credits": {"remaining": 2}})).await;
    update(&server, &admin, json!({"keyId": key_id, "credits": null})).await;
    assert!(got(&server, &admin, &key_id).await.get("credits").is_none(), "null: unlimited");
}

async fn update_key_200_links_gets_or_creates_and_unlinks_an_identity(server: TestServer) {
    let admin = server.admin_key().await;
    let existing = server.create_identity(&admin, json!({"externalId": "user_1"})).await;
    let (_, key_id, _) = api_and_key(&server, &admin, json!({})).await;
    update(&server, &admin, json!({"keyId": key_id, "externalId": "user_1"})).await;
    assert_eq!(got(&server, &admin, &key_id).await["identity"]["id"], existing.as_str(), "the live identity");
    update(&server, &admin, json!({"keyId": key_id, "externalId": "user_2"})).await;
    let created = got(&server, &admin, &key_id).await["identity"].clone();
    assert_eq!((&created["externalId"], created["id"] != existing.as_str()), (&json!("user_2"), true));
    update(&server, &admin, json!({"keyId": key_id, "externalId": null})).await;
    assert!(got(&server, &admin, &key_id).await.get("identity").is_none(), "unlinked");
    let kept = server.call("identities.getIdentity", &admin, json!({"identity": "user_2"})).await;
    assert_eq!(kept.status, 200, "the identity is kept: {}", kept.body);
}

/// Unkey's TestUpdateKeyConcurrentWithSameExternalId: one identity results.
async fn update_key_200_for_100_concurrent_links_of_one_new_external_id_with_one_identity(server: TestServer) {
    let admin = server.admin_key().await;
    let (api_id, _, _) = api_and_key(&server, &admin, json!({})).await;
    let mut key_ids = Vec::new();
    for _ in 0..100 {
        let created = server.call("keys.createKey", &admin, json!({"apiId": api_id})).await;
        key_ids.push(created.body["data"]["keyId"].as_str().unwrap().to_owned());
    }
    let updates = key_ids
        .iter()
        .map(|key_id| server.call("keys.updateKey", &admin, json!({"keyId": key_id, "externalId": "user_new"})));
    for response in join_all(updates).await {
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let identity_ids: std::collections::HashSet<Option<String>> = stored_keys(&server)
        .await
        .into_iter()
        .filter(|(id, _, _)| key_ids.contains(id))
        .map(|(_, identity, _)| identity)
        .collect();
    assert_eq!(identity_ids.len(), 1, "one identity: {identity_ids:?}");
    assert!(!identity_ids.contains(&None), "every key is linked");
    assert_eq!(server.list_all_ids(&admin).await.len(), 1);
}

async fn update_key_400_for_credit_rules_roles_and_the_schema(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, key_id, _) = api_and_key(&server, &admin, json!({"name": "kept"})).await;
    for (extra, detail) in [
        (
            json!({"credits": {"remaining": 5, "refill": {"interval": "monthly", "amount": 10}}}),
            "`refillDay` must be provided when the refill interval is `monthly`.",
        ),
        (
            json!({"credits": {"remaining": 5, "refill": {"interval": "daily", "amount": 10, "refillDay": 3}}}),
            "`refillDay` must not be provided when the refill interval is `daily`.",
        ),
        (
            json!({"credits": {"refill": {"interval": "daily", "amount": 10}}}),
            "The key has unlimited credits, so a refill has nothing to refill: send `credits.remaining` with it.",
        ),
        (
            json!({"credits": {"remaining": null, "refill": {"interval": "daily", "amount": 10}}}),
            "The key has unlimited credits, so a refill has nothing to refill: send `credits.remaining` with it.",
        ),
        (json!({"roles": ["admin"]}), "Roles on keys are not supported by Sigil yet; send no roles."),
        (json!({"name": ""}), "POST request body for '/v2/keys.updateKey' failed to validate schema"),
        (json!({"unknown": 1}), "POST request body for '/v2/keys.updateKey' failed to validate schema"),
    ] {
        let mut body = json!({"keyId": key_id, "name": "changed"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let response = server.call("keys.updateKey", &admin, body).await;
        response.assert_error(400, "unkey/application/invalid_input");
        assert_eq!(response.detail(), detail);
    }
    assert_eq!(got(&server, &admin, &key_id).await["name"], "kept", "nothing was written");
    let empty = json!({"keyId": key_id, "roles": [], "permissions": []});
    update(&server, &admin, empty).await;
}

async fn update_key_401_for_an_unknown_key(server: TestServer) {
    let response = server.call("keys.updateKey", "not_a_key", json!({"keyId": "key_anything"})).await;
    response.assert_error(401, "unkey/authentication/key_not_found");
}

async fn update_key_403_without_update_key_for_its_api(server: TestServer) {
    let admin = server.admin_key().await;
    let (api_id, key_id, _) = api_and_key(&server, &admin, json!({"name": "kept"})).await;
    let reader = server.root_key(&[&format!("api.{api_id}.read_key"), "api.api_other.update_key"]).await;
    let response = server.call("keys.updateKey", &reader, json!({"keyId": key_id, "name": "changed"})).await;
    response.assert_error(403, "unkey/authorization/insufficient_permissions");
    assert_eq!(got(&server, &admin, &key_id).await["name"], "kept");
    let granted = server.root_key(&[&format!("api.{api_id}.update_key")]).await;
    update(&server, &granted, json!({"keyId": key_id, "name": "changed"})).await;
}

async fn update_key_404_for_missing_deleted_or_another_workspaces(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, deleted, _) = api_and_key(&server, &admin, json!({})).await;
    server.call("keys.deleteKey", &admin, json!({"keyId": deleted})).await;
    let (api_id, of_deleted_api, _) = api_and_key(&server, &admin, json!({})).await;
    server.call("apis.deleteApi", &admin, json!({"apiId": api_id})).await;
    let other = server.admin_key_in("other").await;
    let (_, others, _) = api_and_key(&server, &other, json!({})).await;
    for key_id in ["key_missing", deleted.as_str(), of_deleted_api.as_str(), others.as_str()] {
        let response = server.call("keys.updateKey", &admin, json!({"keyId": key_id, "name": "x"})).await;
        response.assert_error(404, "unkey/data/key_not_found");
        assert_eq!(response.detail(), "We could not find the requested key.");
    }
}

async fn update_key_replays_to_a_retry(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, key_id, _) = api_and_key(&server, &admin, json!({"credits": {"remaining": 5}})).await;
    let body = json!({"keyId": key_id, "name": "first"}).to_string();
    let first = server.call_idempotent("keys.updateKey", &admin, "update-key", &body).await;
    assert_eq!(first.status, 200, "{}", first.body);
    update(&server, &admin, json!({"keyId": key_id, "name": "second"})).await;
    let retry = server.call_idempotent("keys.updateKey", &admin, "update-key", &body).await;
    assert_eq!((retry.status, retry.headers["idempotent-replayed"].to_str().unwrap()), (200, "true"));
    assert_eq!(got(&server, &admin, &key_id).await["name"], "second", "the retry did not run again");
}
