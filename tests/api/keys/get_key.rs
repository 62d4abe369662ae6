use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(
    get_key_200_shows_the_key_as_unkey_does_without_the_key_itself,
    get_key_400_for_decrypt,
    get_key_401_for_an_unknown_key,
    get_key_403_without_read_key_for_its_api,
    get_key_404_for_missing_deleted_or_another_workspaces,
);

pub async fn api_and_key(server: &TestServer, root_key: &str, body: serde_json::Value) -> (String, String, String) {
    let api = server.call("apis.createApi", root_key, json!({"name": "production"})).await;
    let api_id = api.body["data"]["apiId"].as_str().expect("apiId").to_owned();
    let mut body = body;
    body["apiId"] = json!(api_id);
    let created = server.call("keys.createKey", root_key, body).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let data = &created.body["data"];
    (api_id, data["keyId"].as_str().unwrap().to_owned(), data["key"].as_str().unwrap().to_owned())
}

async fn get_key_200_shows_the_key_as_unkey_does_without_the_key_itself(server: TestServer) {
    let admin = server.admin_key().await;
    let body = json!({"prefix": "sk", "name": "ci", "meta": {"plan": "pro"}, "externalId": "user_1",
        "credits": {"remaining": 5}, "expires": 4_102_444_800_000_i64,
        "ratelimits": [{"name": "requests", "limit": 10, "duration": 1000, "autoApply": true}]});
    let (_, key_id, key) = api_and_key(&server, &admin, body).await;
    let got = server.call("keys.getKey", &admin, json!({"keyId": key_id})).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let data = &got.body["data"];
    assert_eq!(data["keyId"], key_id.as_str());
    assert_eq!(data["start"], key[..7].to_owned(), "sk_ and four characters");
    assert_eq!((&data["name"], &data["meta"], &data["enabled"]), (&json!("ci"), &json!({"plan": "pro"}), &json!(true)));
    assert_eq!(data["credits"], json!({"remaining": 5}));
    assert_eq!(data["expires"], 4_102_444_800_000_i64);
    assert_eq!(data["identity"]["externalId"], "user_1");
    assert_eq!(data["ratelimits"][0]["name"], "requests");
    assert!(data["createdAt"].as_i64().is_some_and(|at| at > 0));
    assert!(!got.text.contains(&key), "the key itself is never shown again");
    let (_, bare, _) = api_and_key(&server, &admin, json!({})).await;
    let got = server.call("keys.getKey", &admin, json!({"keyId": bare})).await;
    let fields: Vec<&String> = got.body["data"].as_object().unwrap().keys().collect();
    assert_eq!(fields, ["keyId", "start", "createdAt", "enabled"], "empty parts are left out");
}

async fn get_key_400_for_decrypt(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, key_id, _) = api_and_key(&server, &admin, json!({})).await;
    let response = server.call("keys.getKey", &admin, json!({"keyId": key_id, "decrypt": true})).await;
    response.assert_error(400, "unkey/application/invalid_input");
}

async fn get_key_401_for_an_unknown_key(server: TestServer) {
    let response = server.call("keys.getKey", "not_a_key", json!({"keyId": "key_anything"})).await;
    response.assert_error(401, "unkey/authentication/key_not_found");
}

async fn get_key_403_without_read_key_for_its_api(server: TestServer) {
    let admin = server.admin_key().await;
    let (api_id, key_id, _) = api_and_key(&server, &admin, json!({})).await;
    let (other_api, _, _) = api_and_key(&server, &admin, json!({})).await;
    let other = server.root_key(&[&format!("api.{other_api}.read_key"), &format!("api.{api_id}.create_key")]).await;
    let response = server.call("keys.getKey", &other, json!({"keyId": key_id})).await;
    response.assert_error(403, "unkey/authorization/insufficient_permissions");
    let granted = server.root_key(&[&format!("api.{api_id}.read_key")]).await;
    assert_eq!(server.call("keys.getKey", &granted, json!({"keyId": key_id})).await.status, 200);
}

async fn get_key_404_for_missing_deleted_or_another_workspaces(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, deleted, _) = api_and_key(&server, &admin, json!({})).await;
    server.call("keys.deleteKey", &admin, json!({"keyId": deleted})).await;
    let (api_gone, in_deleted_api, _) = api_and_key(&server, &admin, json!({})).await;
    server.call("apis.deleteApi", &admin, json!({"apiId": api_gone})).await;
    let theirs_key = server.admin_key_in("other").await;
    let (_, theirs, _) = api_and_key(&server, &theirs_key, json!({})).await;
    for asked in ["key_missing", deleted.as_str(), in_deleted_api.as_str(), theirs.as_str()] {
        let response = server.call("keys.getKey", &admin, json!({"keyId": asked})).await;
        response.assert_error(404, "unkey/data/key_not_found");
        assert_eq!(response.detail(), "We could not find the requested key.");
    }
}
