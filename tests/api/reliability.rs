//! What a crash keeps and what a shutdown finishes, proven against the real binary under load.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Backend, SigilProcess, TestDatabase, admin_key};

const WORKERS: usize = 16;
const LOAD_BEFORE_SIGNAL: Duration = Duration::from_millis(500);

/// An identity the server acknowledged, and the highest meta version it acknowledged for it.
#[derive(Clone)]
struct Acknowledged {
    id: String,
    version: i64,
}

type Ledger = Arc<Mutex<HashMap<String, Acknowledged>>>;

/// Workers create identities and then update each, recording only what was answered 200, until their
/// requests start failing. Returns every status seen.
fn drive_load(base_url: &str, key: &str, ledger: &Ledger) -> tokio::task::JoinSet<Vec<u16>> {
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let (client, base_url, key, ledger) =
            (reqwest::Client::new(), base_url.to_owned(), key.to_owned(), ledger.clone());
        workers.spawn(async move {
            let mut statuses = Vec::new();
            for n in 0.. {
                let external_id = format!("load_{worker}_{n}");
                let send = |operation: &str, body: Value| {
                    client.post(format!("{base_url}/v2/identities.{operation}")).bearer_auth(&key).json(&body).send()
                };
                let Ok(created) = send("createIdentity", json!({"externalId": external_id, "meta": {"v": 1}})).await
                else {
                    break;
                };
                statuses.push(created.status().as_u16());
                let Ok(body) = created.json::<Value>().await else { break };
                let Some(id) = body["data"]["identityId"].as_str() else { continue };
                ledger.lock().unwrap().insert(external_id.clone(), Acknowledged { id: id.to_owned(), version: 1 });
                let Ok(updated) = send("updateIdentity", json!({"identity": id, "meta": {"v": 2}})).await else {
                    break;
                };
                statuses.push(updated.status().as_u16());
                if updated.status() == 200 && updated.bytes().await.is_ok() {
                    ledger.lock().unwrap().get_mut(&external_id).expect("recorded").version = 2;
                }
            }
            statuses
        });
    }
    workers
}

/// Restarts on the same database and checks every acknowledged write is there, once, with its data.
async fn assert_everything_acknowledged_survived(database_url: &str, key: &str, ledger: &Ledger) {
    let node = SigilProcess::start(database_url).await;
    let client = reqwest::Client::new();
    let mut stored: HashMap<String, (String, Value)> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut body = json!({"limit": 100});
        if let Some(cursor) = &cursor {
            body["cursor"] = json!(cursor);
        }
        let page: Value = client
            .post(format!("{}/v2/identities.listIdentities", node.base_url))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("restarted node answers")
            .json()
            .await
            .expect("JSON");
        for identity in page["data"].as_array().expect("data") {
            let external_id = identity["externalId"].as_str().unwrap().to_owned();
            let previous = stored
                .insert(external_id.clone(), (identity["id"].as_str().unwrap().to_owned(), identity["meta"].clone()));
            assert!(previous.is_none(), "{external_id} is stored twice");
        }
        match page["pagination"]["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let ledger = ledger.lock().unwrap().clone();
    assert!(ledger.len() >= WORKERS, "the load acknowledged too little to prove anything: {}", ledger.len());
    for (external_id, acknowledged) in &ledger {
        let (id, meta) = stored.get(external_id).unwrap_or_else(|| panic!("acknowledged {external_id} was lost"));
        assert_eq!(id, &acknowledged.id);
        assert!(meta["v"].as_i64().unwrap() >= acknowledged.version, "{external_id}: acknowledged update lost");
    }
    let after = client
        .post(format!("{}/v2/identities.createIdentity", node.base_url))
        .bearer_auth(key)
        .json(&json!({"externalId": "after_restart"}))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200, "the restarted service answers normally");
}

async fn acknowledged_writes_survive_sigkill(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let url = database.url();
    let key = admin_key(&url).await;
    let node = SigilProcess::start(&url).await;
    let ledger = Ledger::default();
    let workers = drive_load(&node.base_url, &key, &ledger);
    tokio::time::sleep(LOAD_BEFORE_SIGNAL).await;
    node.kill().await;
    for statuses in workers.join_all().await {
        assert!(statuses.iter().all(|&status| status < 500), "{statuses:?}");
    }
    assert_everything_acknowledged_survived(&url, &key, &ledger).await;
}

async fn sigterm_finishes_in_flight_requests_and_exits_cleanly(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let url = database.url();
    let key = admin_key(&url).await;
    let node = SigilProcess::start(&url).await;
    let ledger = Ledger::default();
    let workers = drive_load(&node.base_url, &key, &ledger);
    tokio::time::sleep(LOAD_BEFORE_SIGNAL).await;
    let exited_cleanly = tokio::time::timeout(Duration::from_secs(20), node.terminate()).await;
    assert_eq!(exited_cleanly.ok(), Some(true), "SIGTERM must end the process with status 0, promptly");
    for statuses in workers.join_all().await {
        assert!(statuses.iter().all(|&status| status < 500), "a request was cut off with a 5xx: {statuses:?}");
    }
    assert_everything_acknowledged_survived(&url, &key, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_write_through_sigkill() {
    acknowledged_writes_survive_sigkill(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_acknowledged_write_through_sigkill() {
    acknowledged_writes_survive_sigkill(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shuts_down_gracefully_on_sigterm() {
    sigterm_finishes_in_flight_requests_and_exits_cleanly(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_shuts_down_gracefully_on_sigterm() {
    sigterm_finishes_in_flight_requests_and_exits_cleanly(Backend::Postgres).await;
}

/// Identities read are kept in memory (`store/identity_cache.rs`), which is sound only while every write
/// passes through one process: a second `sigil serve` on the same SQLite file must refuse to start, while
/// `sigil root-key create`, which writes no identity, still works beside the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_sqlite_file_refuses_to_start() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("SQLite");
    let url = database.url();
    let node = SigilProcess::start(&url).await;
    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &url])
        .output();
    let second = tokio::time::timeout(Duration::from_secs(20), second).await.expect("exits").expect("runs");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another sigil serve is using"), "{stderr}");

    let root_key = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["root-key", "create", "--workspace", "beside", "--database", &url])
        .output()
        .await
        .expect("runs");
    assert!(root_key.status.success(), "{}", String::from_utf8_lossy(&root_key.stderr));
    let key = String::from_utf8_lossy(&root_key.stdout).lines().last().expect("a key").to_owned();
    let client = reqwest::Client::new();
    let listed = client.post(format!("{}/v2/identities.listIdentities", node.base_url)).bearer_auth(&key);
    assert_eq!(listed.json(&json!({})).send().await.expect("answers").status(), 200, "the new key works at once");
    node.kill().await;
}

/// Every request writes a log line. A stalled reader of the log (a paused pager, a stuck log shipper) must
/// not stop the API: these requests write about ten times what a pipe holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_nobody_reads_does_not_stop_the_api() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("SQLite");
    let node = SigilProcess::start_with_unread_log(&database.url()).await;
    let client = reqwest::Client::new();
    let requests = async {
        for _ in 0..2_000 {
            let response = client.get(format!("{}/v2/liveness", node.base_url)).send().await.expect("answers");
            assert_eq!(response.status(), 200);
        }
    };
    tokio::time::timeout(Duration::from_secs(60), requests).await.expect("the API answers while its log is unread");
    node.kill().await;
}
