use serde_json::json;

use crate::harness::TestServer;
use crate::keys::get_key::api_and_key;
use crate::keys::stored_keys;

crate::backend_tests!(
    delete_key_200_softly_then_404,
    delete_key_200_permanently_removes_its_row,
    delete_key_403_without_delete_key_for_its_api,
    delete_key_keeps_its_identity,
    delete_key_replays_to_a_retry_with_a_grant_for_its_api,
    delete_key_404_for_a_key_of_a_deleted_api_with_or_without_an_idempotency_key,
);

async fn delete_key_replays_to_a_retry_with_a_grant_for_its_api(server: TestServer) {
    let admin = server.admin_key().await;
    let (api_id, key_id, _) = api_and_key(&server, &admin, json!({})).await;
    let granted = server.root_key(&[&format!("api.{api_id}.delete_key")]).await;
    let body = format!(r#"{{"keyId":"{key_id}","permanent":true}}"#);
    let first = server.call_idempotent("keys.deleteKey", &granted, "delete-key", &body).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let retry = server.call_idempotent("keys.deleteKey", &granted, "delete-key", &body).await;
    assert_eq!((retry.status, retry.text.as_str()), (200, first.text.as_str()), "{}", retry.body);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let unrecorded = server.call_idempotent("keys.deleteKey", &granted, "another-key", &body).await;
    unrecorded.assert_error(404, "unkey/data/key_not_found");
}

async fn delete_key_404_for_a_key_of_a_deleted_api_with_or_without_an_idempotency_key(server: TestServer) {
    let admin = server.admin_key().await;
    let (api_id, key_id, _) = api_and_key(&server, &admin, json!({})).await;
    server.call("apis.deleteApi", &admin, json!({"apiId": api_id})).await;
    let plain = server.call("keys.deleteKey", &admin, json!({"keyId": key_id})).await;
    plain.assert_error(404, "unkey/data/key_not_found");
    let keyed = server.call_idempotent("keys.deleteKey", &admin, "k", &json!({"keyId": key_id}).to_string()).await;
    keyed.assert_error(404, "unkey/data/key_not_found");
}

async fn delete_key_200_softly_then_404(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, key_id, _) = api_and_key(&server, &admin, json!({})).await;
    let deleted = server.call("keys.deleteKey", &admin, json!({"keyId": key_id})).await;
    assert_eq!((deleted.status, &deleted.body["data"]), (200, &json!({})));
    let again = server.call("keys.deleteKey", &admin, json!({"keyId": key_id})).await;
    again.assert_error(404, "unkey/data/key_not_found");
}

async fn delete_key_200_permanently_removes_its_row(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, key_id, _) = api_and_key(&server, &admin, json!({})).await;
    let deleted = server.call("keys.deleteKey", &admin, json!({"keyId": key_id, "permanent": true})).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    server.call("keys.getKey", &admin, json!({"keyId": key_id})).await.assert_error(404, "unkey/data/key_not_found");
    let (_, soft, _) = api_and_key(&server, &admin, json!({})).await;
    server.call("keys.deleteKey", &admin, json!({"keyId": soft})).await;
    assert_eq!(
        stored_keys(&server).await.into_iter().map(|(id, _, _)| id).collect::<Vec<_>>(),
        [soft],
        "the permanent delete removed its row; the soft one kept it"
    );
}

async fn delete_key_403_without_delete_key_for_its_api(server: TestServer) {
    let admin = server.admin_key().await;
    let (api_id, key_id, _) = api_and_key(&server, &admin, json!({})).await;
    let reader = server.root_key(&[&format!("api.{api_id}.read_key")]).await;
    let response = server.call("keys.deleteKey", &reader, json!({"keyId": key_id})).await;
    response.assert_error(403, "unkey/authorization/insufficient_permissions");
    assert_eq!(server.call("keys.getKey", &admin, json!({"keyId": key_id})).await.status, 200);
    let granted = server.root_key(&[&format!("api.{api_id}.delete_key")]).await;
    assert_eq!(server.call("keys.deleteKey", &granted, json!({"keyId": key_id})).await.status, 200);
}

async fn delete_key_keeps_its_identity(server: TestServer) {
    let admin = server.admin_key().await;
    let (_, key_id, _) = api_and_key(&server, &admin, json!({"externalId": "user_1"})).await;
    assert_eq!(server.call("keys.deleteKey", &admin, json!({"keyId": key_id})).await.status, 200);
    let identity = server.call("identities.getIdentity", &admin, json!({"identity": "user_1"})).await;
    assert_eq!(identity.status, 200, "{}", identity.body);
}
