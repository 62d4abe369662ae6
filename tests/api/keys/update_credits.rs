use futures::future::join_all;
use serde_json::json;

use crate::harness::TestServer;
use crate::keys::get_key::api_and_key;

crate::backend_tests!(
    update_credits_200_sets_increments_and_decrements,
    update_credits_200_for_64_concurrent_increments_loses_none,
    update_credits_400_without_a_value_or_for_an_unlimited_key,
    update_credits_401_for_an_unknown_key,
    update_credits_403_without_update_key_for_its_api,
    update_credits_404_for_a_missing_key,
);

async fn credits(server: &TestServer, key: &str, body: serde_json::Value) -> serde_json::Value {
    let updated = server.call("keys.updateCredits", key, body).await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    updated.body["data"].clone()
}

async fn update_credits_200_sets_increments_and_decrements(server: TestServer) {
    let admin = server.admin_key().await;
    let refill = json!({"interval": "daily", "amount": 10});
    let (_, key_id, _) = api_and_key(&server, &admin, json!({"credits": {"remaining": 5, "refill": refill}})).await;
    let change =
        |operation: &str, value: serde_json::Value| json!({"keyId": key_id, "operation": operation, "value": value});
    assert_eq!(
        credits(&server, &admin, change("increment", json!(3))).await,
        json!({"remaining": 8, "refill": refill})
    );
    assert_eq!(
        credits(&server, &admin, change("decrement", json!(2))).await,
        json!({"remaining": 6, "refill": refill})
    );
    assert_eq!(credits(&server, &admin, change("decrement", json!(50))).await["remaining"], 0, "floors at 0");
    assert_eq!(credits(&server, &admin, change("set", json!(42))).await, json!({"remaining": 42, "refill": refill}));
    assert_eq!(
        credits(&server, &admin, change("set", json!(null))).await,
        json!({"remaining": null}),
        "unlimited, no refill"
    );
    let key = server.call("keys.getKey", &admin, json!({"keyId": key_id})).await;
    assert!(key.body["data"].get("credits").is_none(), "{}", key.body);
    let set = json!({"keyId": key_id, "operation": "set", "value": 9});
    assert_eq!(credits(&server, &admin, set).await, json!({"remaining": 9}), "an unlimited key gets a limit");
}

async fn update_credits_200_for_64_concurrent_increments_loses_none(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, key_id, _) = api_and_key(&server, &admin, json!({"credits": {"remaining": 0}})).await;
    let increments = (0..64).map(|_| {
        server.call("keys.updateCredits", &admin, json!({"keyId": key_id, "operation": "increment", "value": 1}))
    });
    for response in join_all(increments).await {
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let key = server.call("keys.getKey", &admin, json!({"keyId": key_id})).await;
    assert_eq!(key.body["data"]["credits"]["remaining"], 64);
}

async fn update_credits_400_without_a_value_or_for_an_unlimited_key(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, key_id, _) = api_and_key(&server, &admin, json!({})).await;
    for (body, detail) in [
        (
            json!({"keyId": key_id, "operation": "increment"}),
            "When specifying an increment or decrement operation, a value must be provided.",
        ),
        (
            json!({"keyId": key_id, "operation": "decrement", "value": 1}),
            "You cannot increment or decrement a key with unlimited credits.",
        ),
        (
            json!({"keyId": key_id, "operation": "double", "value": 1}),
            "POST request body for '/v2/keys.updateCredits' failed to validate schema",
        ),
        (
            json!({"keyId": key_id, "operation": "set", "value": -1}),
            "POST request body for '/v2/keys.updateCredits' failed to validate schema",
        ),
    ] {
        let response = server.call("keys.updateCredits", &admin, body).await;
        response.assert_error(400, "unkey/application/invalid_input");
        assert_eq!(response.detail(), detail);
    }
}

async fn update_credits_401_for_an_unknown_key(server: TestServer) {
    let body = json!({"keyId": "key_anything", "operation": "set", "value": 1});
    server.call("keys.updateCredits", "not_a_key", body).await.assert_error(401, "unkey/authentication/key_not_found");
}

async fn update_credits_403_without_update_key_for_its_api(server: TestServer) {
    let admin = server.admin_key().await;
    let (api_id, key_id, _) = api_and_key(&server, &admin, json!({"credits": {"remaining": 5}})).await;
    let reader = server.root_key(&[&format!("api.{api_id}.read_key")]).await;
    let body = json!({"keyId": key_id, "operation": "set", "value": 100});
    let response = server.call("keys.updateCredits", &reader, body.clone()).await;
    response.assert_error(403, "unkey/authorization/insufficient_permissions");
    let granted = server.root_key(&[&format!("api.{api_id}.update_key")]).await;
    assert_eq!(credits(&server, &granted, body).await["remaining"], 100);
}

async fn update_credits_404_for_a_missing_key(server: TestServer) {
    let admin = server.admin_key().await;
    let body = json!({"keyId": "key_missing", "operation": "set", "value": 1});
    server.call("keys.updateCredits", &admin, body).await.assert_error(404, "unkey/data/key_not_found");
}
