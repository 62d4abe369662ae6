//! Several stateless `sigil serve` processes on one PostgreSQL database behave as one service.

use std::process::Stdio;

use futures::future::join_all;
use serde_json::{Value, json};
use sigil::domain::permission::all_permissions;
use sigil::server::mint_root_key;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::{Backend, TestDatabase};

const CONCURRENT_CREATES: usize = 500;

/// A `sigil serve` process; killed when dropped.
struct Node {
    base_url: String,
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
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { base_url: format!("http://{address}"), _process: process }
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
