//! Several stateless `sigil serve` processes on one PostgreSQL database behave as one service.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use sigil::domain::permission::all_permissions;
use sigil::server::mint_root_key;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::{Backend, TestDatabase};

const CONCURRENT_CREATES: usize = 500;

/// A `sigil serve` process; killed when dropped. Its JSON log lines are collected.
struct Node {
    base_url: String,
    logs: Arc<Mutex<Vec<String>>>,
    _process: Child,
}

impl Node {
    /// Starts the real binary on a free port and waits until it says where it listens.
    async fn start(database_url: &str) -> Self {
        let mut process = Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--database", database_url])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sigil");
        let mut lines = BufReader::new(process.stderr.take().expect("stderr")).lines();
        let address = loop {
            let line = lines.next_line().await.expect("read stderr").expect("sigil exited before serving");
            let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
            if let Some(address) = entry["fields"]["address"].as_str() {
                break address.to_owned();
            }
        };
        // Keep draining the log so the node never blocks on a full pipe.
        let logs = Arc::new(Mutex::new(Vec::new()));
        let collected = logs.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                collected.lock().unwrap().push(line);
            }
        });
        Self { base_url: format!("http://{address}"), logs, _process: process }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_decide_a_contested_create_exactly_once() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let url = database.url();
    // Started together, so their migrations race too.
    let (first, second) = tokio::join!(Node::start(&url), Node::start(&url));
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
    let (first, second) = tokio::join!(Node::start(&url), Node::start(&url));
    let store = sigil::store::open(&url).await.expect("open");
    let (workspace, _) = store.ensure_workspace("test").await.expect("workspace");
    let key = mint_root_key(&*store, &workspace, vec![all_permissions(&workspace)]).await.expect("key");
    let client = reqwest::Client::new();
    let create = |node: &Node| {
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
    let node = Node::start(&url).await;
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
    wrong.json(&json!({})).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = node.logs.lock().unwrap().join("\n");
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
