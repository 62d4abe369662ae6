use serde_json::json;
use sqlx::Connection;

use crate::harness::{Backend, TestServer};

crate::backend_tests!(
    list_keys_200_pages_through_an_apis_live_keys_in_id_order,
    list_keys_200_filters_by_external_id,
    list_keys_200_ends_a_page_of_large_keys_by_bytes,
    list_keys_404_for_a_missing_api_and_without_read_key_and_read_api,
);

async fn create_api(server: &TestServer, key: &str) -> String {
    let created = server.call("apis.createApi", key, json!({"name": "production"})).await;
    created.body["data"]["apiId"].as_str().expect("apiId").to_owned()
}

async fn create_key(server: &TestServer, root_key: &str, body: serde_json::Value) -> String {
    let created = server.call("keys.createKey", root_key, body).await;
    assert_eq!(created.status, 200, "{}", created.body);
    created.body["data"]["keyId"].as_str().expect("keyId").to_owned()
}

async fn list_keys_200_pages_through_an_apis_live_keys_in_id_order(server: TestServer) {
    let admin = server.admin_key().await;
    let api_id = create_api(&server, &admin).await;
    let other_api = create_api(&server, &admin).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(create_key(&server, &admin, json!({"apiId": api_id})).await);
    }
    create_key(&server, &admin, json!({"apiId": other_api})).await;
    let deleted = ids.pop().expect("a key");
    server.call("keys.deleteKey", &admin, json!({"keyId": deleted})).await;
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let mut body = json!({"apiId": api_id, "limit": 2});
        if let Some(cursor) = &cursor {
            body["cursor"] = json!(cursor);
        }
        let page = server.call("apis.listKeys", &admin, body).await;
        assert_eq!(page.status, 200, "{}", page.body);
        seen.extend(page.body["data"].as_array().unwrap().iter().map(|key| key["keyId"].as_str().unwrap().to_owned()));
        match page.body["pagination"]["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert_eq!(page.body["pagination"]["hasMore"], false);
                break;
            }
        }
    }
    assert_eq!(seen, ids, "each live key of the API once, in id order");
}

/// Each key brings its identity's meta: a key and its identity of a megabyte each would make a page of 100
/// 200 MB. A page ends, as an identity page does, with the first key starting past 4 MiB.
async fn list_keys_200_ends_a_page_of_large_keys_by_bytes(server: TestServer) {
    let admin = server.admin_key().await;
    let api_id = create_api(&server, &admin).await;
    let identity = json!({"externalId": "heavy", "meta": {"blob": "i".repeat(900_000)}});
    server.create_identity(&admin, identity).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let key = json!({"apiId": api_id, "externalId": "heavy", "meta": {"blob": "k".repeat(100_000)}});
        ids.push(create_key(&server, &admin, key).await);
    }
    let page_ids = |page: &serde_json::Value| -> Vec<String> {
        page["data"].as_array().unwrap().iter().map(|key| key["keyId"].as_str().unwrap().to_owned()).collect()
    };
    let first = server.call("apis.listKeys", &admin, json!({"apiId": api_id, "limit": 100})).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(page_ids(&first.body), ids[..5], "4 MB of keys, then the fifth, which started before 4 MiB");
    assert_eq!(first.body["pagination"], json!({"hasMore": true, "cursor": ids[5]}));
    let cursor = json!({"apiId": api_id, "limit": 100, "cursor": ids[5]});
    let rest = server.call("apis.listKeys", &admin, cursor).await;
    assert_eq!((page_ids(&rest.body), &rest.body["pagination"]), (ids[5..].to_vec(), &json!({"hasMore": false})));
}

async fn list_keys_200_filters_by_external_id(server: TestServer) {
    let admin = server.admin_key().await;
    let api_id = create_api(&server, &admin).await;
    // An externalId that spells another identity's id filters by the identity holding it, before and after
    // the other's delete.
    let other = server.create_identity(&admin, json!({"externalId": "other"})).await;
    let namesakes = create_key(&server, &admin, json!({"apiId": api_id, "externalId": other})).await;
    for moment in ["while the identity with that id is live", "after its delete"] {
        let page = server.call("apis.listKeys", &admin, json!({"apiId": api_id, "externalId": other})).await;
        assert_eq!(page.body["data"][0]["keyId"], namesakes, "{moment}: {}", page.body);
        server.call("identities.deleteIdentity", &admin, json!({"identity": other})).await;
    }
    server.call("keys.deleteKey", &admin, json!({"keyId": namesakes})).await;
    let theirs = create_key(&server, &admin, json!({"apiId": api_id, "externalId": "user_1"})).await;
    create_key(&server, &admin, json!({"apiId": api_id, "externalId": "user_2"})).await;
    let page = server.call("apis.listKeys", &admin, json!({"apiId": api_id, "externalId": "user_1"})).await;
    assert_eq!(page.body["data"].as_array().unwrap().len(), 1, "{}", page.body);
    assert_eq!(page.body["data"][0]["keyId"], theirs.as_str());
    assert_eq!(page.body["data"][0]["identity"]["externalId"], "user_1");
    let nobody = server.call("apis.listKeys", &admin, json!({"apiId": api_id, "externalId": "nobody"})).await;
    assert_eq!(nobody.status, 200);
    assert_eq!(nobody.body["data"], json!([]));
    assert_eq!(nobody.body["pagination"]["hasMore"], false);
}

async fn list_keys_404_for_a_missing_api_and_without_read_key_and_read_api(server: TestServer) {
    let admin = server.admin_key().await;
    let api_id = create_api(&server, &admin).await;
    let missing = server.call("apis.listKeys", &admin, json!({"apiId": "api_missing_one"})).await;
    missing.assert_error(404, "unkey/data/api_not_found");
    for grants in [vec![format!("api.{api_id}.read_key")], vec![format!("api.{api_id}.read_api")]] {
        let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
        let half = server.root_key(&grants).await;
        let response = server.call("apis.listKeys", &half, json!({"apiId": api_id})).await;
        response.assert_error(404, "unkey/data/api_not_found");
    }
    let both = server.root_key(&[&format!("api.{api_id}.read_key"), &format!("api.{api_id}.read_api")]).await;
    assert_eq!(server.call("apis.listKeys", &both, json!({"apiId": api_id})).await.status, 200);
}

/// PostgreSQL sends every row a statement selects: the rows past a page's end are read and dropped, not
/// left on the connection, where its backend would sit blocked sending them until the next user drained them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_key_page_leaves_no_rows_on_its_connection() {
    let Some(server) = TestServer::start(Backend::Postgres).await else { return };
    let admin = server.admin_key().await;
    let api_id = create_api(&server, &admin).await;
    server.create_identity(&admin, json!({"externalId": "heavy", "meta": {"blob": "i".repeat(900_000)}})).await;
    for _ in 0..20 {
        let key = json!({"apiId": api_id, "externalId": "heavy", "meta": {"blob": "k".repeat(100_000)}});
        create_key(&server, &admin, key).await;
    }
    let page = server.call("apis.listKeys", &admin, json!({"apiId": api_id, "limit": 100})).await;
    assert_eq!(page.body["data"].as_array().map(Vec::len), Some(5), "cut at 4 MiB, 15 MB of rows after it");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut connection = sqlx::PgConnection::connect(&server.database_url()).await.expect("connect");
    let sending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'ClientWrite'",
    )
    .fetch_one(&mut connection)
    .await
    .expect("pg_stat_activity");
    assert_eq!(sending, 0, "a backend still sends rows nobody reads");
}
