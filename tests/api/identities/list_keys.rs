//! `identities.listKeys`, Sigil's own: an identity's keys across APIs.

use serde_json::{Value, json};

use crate::harness::TestServer;
use crate::keys::get_key::api_and_key;

crate::backend_tests!(
    list_keys_200_pages_an_identitys_keys_across_apis,
    list_keys_403_without_read_key_on_every_api_or_read_identity,
    list_keys_400_for_a_limit_out_of_range,
    list_keys_401_for_an_unknown_key,
    list_keys_404_for_a_missing_or_deleted_identity,
);

fn ids(page: &Value) -> Vec<String> {
    page["data"].as_array().expect("a list").iter().map(|key| key["keyId"].as_str().unwrap().to_owned()).collect()
}

async fn list_keys_200_pages_an_identitys_keys_across_apis(server: TestServer) {
    let admin = server.admin_key().await;
    let mut expected = Vec::new();
    for _ in 0..3 {
        let (_, key_id, _) = api_and_key(&server, &admin, json!({"externalId": "user_1"})).await;
        expected.push(key_id);
    }
    let (_, deleted, _) = api_and_key(&server, &admin, json!({"externalId": "user_1"})).await;
    server.call("keys.deleteKey", &admin, json!({"keyId": deleted})).await;
    api_and_key(&server, &admin, json!({"externalId": "user_2"})).await;
    expected.sort();
    let (mut listed, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let mut body = json!({"identity": "user_1", "limit": 2});
        if let Some(cursor) = &cursor {
            body["cursor"] = json!(cursor);
        }
        let page = server.call("identities.listKeys", &admin, body).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body["data"].as_array().unwrap().iter().all(|key| key["identity"]["externalId"] == "user_1"));
        listed.extend(ids(&page.body));
        match page.body["pagination"]["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed, expected, "the live keys of user_1 alone, in id order, across three APIs");
    let identity_id =
        server.call("identities.getIdentity", &admin, json!({"identity": "user_1"})).await.body["data"]["id"].clone();
    let by_id = server.call("identities.listKeys", &admin, json!({"identity": identity_id})).await;
    assert_eq!(ids(&by_id.body), expected, "by id as by externalId");
}

/// Keys of APIs it may not read would show in the cursor, so a key granted some APIs alone is refused, as a
/// key that may read no identity is, whether the identity exists or not.
async fn list_keys_403_without_read_key_on_every_api_or_read_identity(server: TestServer) {
    let admin = server.admin_key().await;
    let (api_id, _, _) = api_and_key(&server, &admin, json!({"externalId": "user_1"})).await;
    api_and_key(&server, &admin, json!({"externalId": "user_1"})).await;
    let one_api = server.root_key(&["identity.*.read_identity", &format!("api.{api_id}.read_key")]).await;
    let key_reader = server.root_key(&["api.*.read_key"]).await;
    for key in [&one_api, &key_reader] {
        for identity in ["user_1", "user_missing"] {
            let response = server.call("identities.listKeys", key, json!({"identity": identity, "limit": 1})).await;
            response.assert_error(403, "unkey/authorization/insufficient_permissions");
            assert!(response.body.get("pagination").is_none());
        }
    }
    let both = server.root_key(&["identity.*.read_identity", "api.*.read_key"]).await;
    let page = server.call("identities.listKeys", &both, json!({"identity": "user_1"})).await;
    assert_eq!((page.status, ids(&page.body).len()), (200, 2), "{}", page.body);
}

async fn list_keys_400_for_a_limit_out_of_range(server: TestServer) {
    let admin = server.admin_key().await;
    for limit in [0, 101] {
        let response = server.call("identities.listKeys", &admin, json!({"identity": "user_1", "limit": limit})).await;
        response.assert_error(400, "unkey/application/invalid_input");
    }
}

async fn list_keys_401_for_an_unknown_key(server: TestServer) {
    let response = server.call("identities.listKeys", "not_a_key", json!({"identity": "user_1"})).await;
    response.assert_error(401, "unkey/authentication/key_not_found");
}

async fn list_keys_404_for_a_missing_or_deleted_identity(server: TestServer) {
    let admin = server.admin_key().await;
    api_and_key(&server, &admin, json!({"externalId": "user_1"})).await;
    server.call("identities.deleteIdentity", &admin, json!({"identity": "user_1"})).await;
    for identity in ["user_1", "user_missing"] {
        let response = server.call("identities.listKeys", &admin, json!({"identity": identity})).await;
        response.assert_error(404, "unkey/data/identity_not_found");
    }
}
