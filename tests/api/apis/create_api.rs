use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(
    create_api_200_answers_an_api_id_that_get_api_finds,
    create_api_400_for_a_short_name,
    create_api_401_for_an_unknown_key,
    create_api_403_without_create_api,
);

async fn create_api_200_answers_an_api_id_that_get_api_finds(server: TestServer) {
    let key = server.admin_key().await;
    let created = server.call("apis.createApi", &key, json!({"name": "production"})).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let api_id = created.body["data"]["apiId"].as_str().unwrap();
    assert!(api_id.starts_with("api_"), "{api_id}");
    let got = server.call("apis.getApi", &key, json!({"apiId": api_id})).await;
    assert_eq!(got.body["data"], json!({"id": api_id, "name": "production"}));
    let same_name = server.call("apis.createApi", &key, json!({"name": "production"})).await;
    assert_eq!(same_name.status, 200, "names need not be unique, as in Unkey");
}

async fn create_api_400_for_a_short_name(server: TestServer) {
    let key = server.admin_key().await;
    let response = server.call("apis.createApi", &key, json!({"name": "ab"})).await;
    response.assert_error(400, "unkey/application/invalid_input");
}

async fn create_api_401_for_an_unknown_key(server: TestServer) {
    let response = server.call("apis.createApi", "not_a_key", json!({"name": "production"})).await;
    response.assert_error(401, "unkey/authentication/key_not_found");
}

async fn create_api_403_without_create_api(server: TestServer) {
    let reader = server.root_key(&["api.*.read_api"]).await;
    let response = server.call("apis.createApi", &reader, json!({"name": "production"})).await;
    response.assert_error(403, "unkey/authorization/insufficient_permissions");
}
