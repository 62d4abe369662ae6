//! Several stateless `sigil serve` processes on one PostgreSQL database behave as one service.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use sigil::domain::permission::all_permissions;
use sigil::server::mint_root_key;

use crate::harness::{Backend, SigilProcess, TestDatabase};

const CONCURRENT_CREATES: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_decide_a_contested_create_exactly_once() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let url = database.url();
    // Started together, so their migrations race too.
    let (first, second) = tokio::join!(SigilProcess::start(&url), SigilProcess::start(&url));
    let store = sigil::store::open(&url).await.expect("open");
    let (workspace, _) = store.ensure_workspace("test").await.expect("workspace");
    let key = mint_root_key(&*store, &workspace, vec![all_permissions(&workspace)]).await.expect("key");

    let client = reqwest::Client::new();
    let creates = (0..CONCURRENT_CREATES).map(|n| {
        let node = if n % 2 == 0 { &first } else { &second };
        let request = client
            .post(format!("{}/v2/identities.createIdentity", node.base_url))
            .bearer_auth(&key)
            .json(&json!({"externalId": "contested", "meta": {"n": n}}));
        async move {
            let response = request.send().await.expect("node answers");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON body"))
        }
    });
    let responses = join_all(creates).await;
    let created: Vec<&Value> = responses.iter().filter(|(status, _)| *status == 200).map(|(_, body)| body).collect();
    let conflicts = responses.iter().filter(|(status, _)| *status == 409).count();
    assert_eq!(created.len(), 1, "statuses: {:?}", responses.iter().map(|(s, _)| s).collect::<Vec<_>>());
    assert_eq!(conflicts, CONCURRENT_CREATES - 1);
    let winner = created[0]["data"]["identityId"].as_str().unwrap();
    assert!(responses.iter().all(|(status, body)| *status == 200 || body["error"]["existingIdentityId"] == winner));

    // Either node reads what the other wrote.
    for node in [&first, &second] {
        let list = client
            .post(format!("{}/v2/identities.listIdentities", node.base_url))
            .bearer_auth(&key)
            .json(&json!({}))
            .send()
            .await
            .expect("list");
        let body: Value = list.json().await.expect("JSON");
        assert_eq!(body["data"].as_array().unwrap().len(), 1);
        assert_eq!(body["data"][0]["id"], winner);
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_retry_on_the_other_node_replays() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let url = database.url();
    let (first, second) = tokio::join!(SigilProcess::start(&url), SigilProcess::start(&url));
    let store = sigil::store::open(&url).await.expect("open");
    let (workspace, _) = store.ensure_workspace("test").await.expect("workspace");
    let key = mint_root_key(&*store, &workspace, vec![all_permissions(&workspace)]).await.expect("key");
    let client = reqwest::Client::new();
    let create = |node: &SigilProcess| {
        client
            .post(format!("{}/v2/identities.createIdentity", node.base_url))
            .bearer_auth(&key)
            .header("idempotency-key", "checkout-42")
            .header("content-type", "application/json")
            .body(r#"{"externalId":"buyer"}"#)
            .send()
    };
    let original = create(&first).await.expect("first node");
    assert_eq!(original.status(), 200);
    let original = original.text().await.unwrap();
    let retry = create(&second).await.expect("second node");
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.text().await.unwrap(), original);
    store.close().await;
}

/// JSON logs carry every request's id, and never a root key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_every_request_id_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sigil.db").display());
    let node = SigilProcess::start(&url).await;
    let store = sigil::store::open(&url).await.expect("open");
    let (workspace, _) = store.ensure_workspace("test").await.expect("workspace");
    let key = mint_root_key(&*store, &workspace, vec![all_permissions(&workspace)]).await.expect("key");
    let client = reqwest::Client::new();
    let mut request_ids = Vec::new();
    for body in [json!({"externalId": "logged", "meta": {"secret_meta": "s3cr3t-value"}}), json!({"externalId": ""})] {
        let response = client
            .post(format!("{}/v2/identities.createIdentity", node.base_url))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        request_ids.push(body["meta"]["requestId"].as_str().unwrap().to_owned());
    }
    let wrong =
        client.post(format!("{}/v2/identities.listIdentities", node.base_url)).bearer_auth("sigil_wrong_key_guess");
    let rejected: Value = wrong.json(&json!({})).send().await.unwrap().json().await.unwrap();
    request_ids.push(rejected["meta"]["requestId"].as_str().unwrap().to_owned());
    // The log is read from the node's stderr pipe: wait (boundedly) until every request's line is in.
    let mut logs = String::new();
    for _ in 0..50 {
        logs = node.logs.lock().unwrap().join("\n");
        if request_ids.iter().all(|id| logs.contains(id.as_str())) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for request_id in &request_ids {
        let line = logs.lines().find(|line| line.contains(request_id.as_str())).expect("a log line per request");
        let entry: Value = serde_json::from_str(line).expect("JSON log line");
        assert!(entry["fields"]["status"].is_number(), "{line}");
    }
    for secret in [key.as_str(), &sigil::domain::root_key::hash(&key), "s3cr3t-value", "sigil_wrong_key_guess"] {
        assert!(!logs.contains(secret), "the log contains a secret: {secret}");
    }
    store.close().await;
}
