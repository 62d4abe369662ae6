use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(delete_api_200_then_404, delete_api_403_without_delete_api, delete_api_replays_with_its_key);

async fn create_api(server: &TestServer, key: &str) -> String {
    let created = server.call("apis.createApi", key, json!({"name": "production"})).await;
    created.body["data"]["apiId"].as_str().expect("apiId").to_owned()
}

async fn delete_api_200_then_404(server: TestServer) {
    let key = server.admin_key().await;
    let api_id = create_api(&server, &key).await;
    let deleted = server.call("apis.deleteApi", &key, json!({"apiId": api_id})).await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.body["data"], json!({}));
    let again = server.call("apis.deleteApi", &key, json!({"apiId": api_id})).await;
    again.assert_error(404, "unkey/data/api_not_found");
}

async fn delete_api_403_without_delete_api(server: TestServer) {
    let admin = server.admin_key().await;
    let api_id = create_api(&server, &admin).await;
    let reader = server.root_key(&[&format!("api.{api_id}.read_api")]).await;
    let response = server.call("apis.deleteApi", &reader, json!({"apiId": api_id})).await;
    response.assert_error(403, "unkey/authorization/insufficient_permissions");
    assert_eq!(server.call("apis.getApi", &admin, json!({"apiId": api_id})).await.status, 200);
}

async fn delete_api_replays_with_its_key(server: TestServer) {
    let key = server.admin_key().await;
    let api_id = create_api(&server, &key).await;
    let body = format!(r#"{{"apiId":"{api_id}"}}"#);
    let first = server.call_idempotent("apis.deleteApi", &key, "delete-api", &body).await;
    assert_eq!(first.status, 200);
    let retry = server.call_idempotent("apis.deleteApi", &key, "delete-api", &body).await;
    assert_eq!((retry.status, retry.text.as_str()), (200, first.text.as_str()));
    assert_eq!(retry.headers["idempotent-replayed"], "true");
}
