use serde_json::json;

use crate::harness::TestServer;
use crate::keys::get_key::api_and_key;

crate::backend_tests!(
    whoami_200_names_the_key_whose_value_is_sent,
    whoami_401_for_an_unknown_root_key,
    whoami_404_for_an_unknown_deleted_or_unreadable_value,
);

async fn whoami_200_names_the_key_whose_value_is_sent(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, key_id, key) = api_and_key(&server, &admin, json!({"prefix": "sk", "externalId": "user_1"})).await;
    let found = server.call("keys.whoami", &admin, json!({"key": key})).await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.body["data"]["keyId"], key_id.as_str());
    assert_eq!(found.body["data"]["identity"]["externalId"], "user_1");
    assert!(!found.text.contains(&key), "the value is not shown back");
}

async fn whoami_401_for_an_unknown_root_key(server: TestServer) {
    let response = server.call("keys.whoami", "not_a_key", json!({"key": "sk_anything"})).await;
    response.assert_error(401, "unkey/authentication/key_not_found");
}

/// A root key that may not read the key gets the 404 of an unknown value, so it cannot tell which values
/// are keys.
async fn whoami_404_for_an_unknown_deleted_or_unreadable_value(server: TestServer) {
    let admin = server.admin_key().await;
    let (api_id, _, readable) = api_and_key(&server, &admin, json!({})).await;
    let (_, deleted_id, deleted) = api_and_key(&server, &admin, json!({})).await;
    server.call("keys.deleteKey", &admin, json!({"keyId": deleted_id})).await;
    for value in ["sk_not_a_key", deleted.as_str()] {
        let response = server.call("keys.whoami", &admin, json!({"key": value})).await;
        response.assert_error(404, "unkey/data/key_not_found");
    }
    let other_api_reader = server.root_key(&["api.api_elsewhere.read_key"]).await;
    let response = server.call("keys.whoami", &other_api_reader, json!({"key": readable})).await;
    response.assert_error(404, "unkey/data/key_not_found");
    let reader = server.root_key(&[&format!("api.{api_id}.read_key")]).await;
    assert_eq!(server.call("keys.whoami", &reader, json!({"key": readable})).await.status, 200);
}
