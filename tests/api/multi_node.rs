//! Several stateless `sigil serve` processes on one PostgreSQL database behave as one service.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use sigil::domain::permission::all_permissions;
use sigil::server::mint_root_key;
use sigil::store::{CACHED_IDENTITY_TIME_TO_LIVE, identity_changes_listener_name};
use sqlx::{Connection, PgConnection};

use crate::harness::{Backend, SigilProcess, TestDatabase, refused_to_start};

const CONCURRENT_CREATES: usize = 500;

/// Unkey's issue #4024 across nodes: keys for one new externalId, created at once on two nodes, all succeed
/// and end linked to one identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_create_keys_for_one_new_external_id_with_one_identity() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let url = database.url();
    let (first, second) = tokio::join!(SigilProcess::start(&url), SigilProcess::start(&url));
    let store = sigil::store::open(&url).await.expect("open");
    let (workspace, _) = store.ensure_workspace("test").await.expect("workspace");
    let key = mint_root_key(&*store, &workspace, vec![all_permissions(&workspace)]).await.expect("key");
    let client = reqwest::Client::new();
    let api: Value = client
        .post(format!("{}/v2/apis.createApi", first.base_url))
        .bearer_auth(&key)
        .json(&json!({"name": "production"}))
        .send()
        .await
        .expect("node answers")
        .json()
        .await
        .expect("JSON");
    let api_id = api["data"]["apiId"].as_str().expect("apiId");
    let creates = (0..CONCURRENT_CREATES).map(|n| {
        let node = if n % 2 == 0 { &first } else { &second };
        let request = client
            .post(format!("{}/v2/keys.createKey", node.base_url))
            .bearer_auth(&key)
            .json(&json!({"apiId": api_id, "externalId": "new_customer"}));
        async move { request.send().await.expect("node answers").status().as_u16() }
    });
    let statuses = join_all(creates).await;
    assert!(statuses.iter().all(|status| *status == 200), "statuses: {statuses:?}");
    let mut database_connection = sqlx::PgConnection::connect(&url).await.expect("connect");
    let identities: Vec<Option<String>> =
        sqlx::query_scalar("SELECT DISTINCT identity_id FROM keys").fetch_all(&mut database_connection).await.unwrap();
    assert_eq!(identities.len(), 1, "{identities:?}");
    let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM identities WHERE external_id = 'new_customer'")
        .fetch_one(&mut database_connection)
        .await
        .unwrap();
    assert_eq!(live, 1, "exactly one identity was created");
    store.close().await;
}

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

/// How soon a node must hear of another node's change. Well under the time to live, so that a node that
/// heard nothing fails these tests instead of passing them once its entries expire.
pub(crate) const HEARD_WITHIN: Duration = Duration::from_secs(1);
const _: () = assert!(HEARD_WITHIN.as_millis() * 3 <= CACHED_IDENTITY_TIME_TO_LIVE.as_millis());

/// Two nodes on one database, reached through these URLs, and a key for both.
async fn two_nodes(first_url: &str, second_url: &str) -> (SigilProcess, SigilProcess, String) {
    let (first, second) = tokio::join!(SigilProcess::start(first_url), SigilProcess::start(second_url));
    let store = sigil::store::open(first_url).await.expect("open");
    let (workspace, _) = store.ensure_workspace("test").await.expect("workspace");
    let key = mint_root_key(&*store, &workspace, vec![all_permissions(&workspace)]).await.expect("key");
    store.close().await;
    (first, second, key)
}

pub(crate) async fn call(node: &SigilProcess, key: &str, operation: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v2/identities.{operation}", node.base_url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("node answers");
    (response.status().as_u16(), response.json().await.expect("JSON body"))
}

/// Reads `identity` on `node` until it answers `expected` (status, meta), for at most [`HEARD_WITHIN`].
pub(crate) async fn reads_within_bound(node: &SigilProcess, key: &str, identity: &str, expected: (u16, Value)) {
    let started = tokio::time::Instant::now();
    loop {
        let (status, body) = call(node, key, "getIdentity", json!({"identity": identity})).await;
        let answered = (status, body["data"]["meta"].clone());
        if answered == expected {
            return;
        }
        assert!(started.elapsed() < HEARD_WITHIN, "{identity} still reads {answered:?}, not {expected:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_node_reaches_what_the_other_node_read() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let url = database.url();
    let (first, second, key) = two_nodes(&url, &url).await;
    let (_, created) = call(&first, &key, "createIdentity", json!({"externalId": "user_1", "meta": {"v": 1}})).await;
    let id = created["data"]["identityId"].as_str().expect("id").to_owned();
    for name in [id.as_str(), "user_1"] {
        reads_within_bound(&second, &key, name, (200, json!({"v": 1}))).await;
    }

    let (status, _) = call(&first, &key, "updateIdentity", json!({"identity": id, "meta": {"v": 2}})).await;
    assert_eq!(status, 200);
    for name in [id.as_str(), "user_1"] {
        reads_within_bound(&second, &key, name, (200, json!({"v": 2}))).await;
    }

    let (status, _) = call(&first, &key, "upsertIdentity", json!({"externalId": "user_1", "meta": {"v": 3}})).await;
    assert_eq!(status, 200);
    for name in [id.as_str(), "user_1"] {
        reads_within_bound(&second, &key, name, (200, json!({"v": 3}))).await;
    }

    let (status, _) = call(&first, &key, "deleteIdentity", json!({"identity": "user_1"})).await;
    assert_eq!(status, 200);
    for name in [id.as_str(), "user_1"] {
        reads_within_bound(&second, &key, name, (404, Value::Null)).await;
    }
}

/// Two nodes, and an identity (meta `{"v": 1}`) created on the first and held in the second's memory.
struct Cached {
    first: SigilProcess,
    second: SigilProcess,
    key: String,
    id: String,
    /// The `application_name` of the second node's listening connection, which no other node shares.
    listener: String,
}

async fn cached_on_the_second_node(url: &str) -> Cached {
    let name = format!("sigil_test_{}", ulid::Ulid::new().to_string().to_lowercase());
    let (first, second, key) = two_nodes(url, &format!("{url}&application_name={name}")).await;
    let (_, created) = call(&first, &key, "createIdentity", json!({"externalId": "user_1", "meta": {"v": 1}})).await;
    let id = created["data"]["identityId"].as_str().expect("id").to_owned();
    reads_within_bound(&second, &key, &id, (200, json!({"v": 1}))).await;
    Cached { first, second, key, id, listener: identity_changes_listener_name(Some(&name)) }
}

/// A node whose listening connection drops listens again; what it read meanwhile is not trusted, and it hears
/// changes again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_change_listener_is_cut_off_still_hears_changes() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let url = database.url();
    let Cached { first, second, key, id, listener } = cached_on_the_second_node(&url).await;

    let mut admin = PgConnection::connect(&url).await.expect("connect");
    let cut: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&listener)
            .fetch_all(&mut admin)
            .await
            .expect("cut the listener off");
    assert_eq!(cut, [true], "the second node listens on one connection");
    // Changed while the second node may not hear it.
    let (status, _) = call(&first, &key, "updateIdentity", json!({"identity": id, "meta": {"v": 2}})).await;
    assert_eq!(status, 200);
    reads_within_bound(&second, &key, &id, (200, json!({"v": 2}))).await;

    // It listens again at once; once it has, it serves from memory again and must hear the next change.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    reads_within_bound(&second, &key, &id, (200, json!({"v": 2}))).await;
    let (status, _) = call(&first, &key, "updateIdentity", json!({"identity": id, "meta": {"v": 3}})).await;
    assert_eq!(status, 200);
    reads_within_bound(&second, &key, &id, (200, json!({"v": 3}))).await;
}

/// Sends `signal` to a process of this machine (a PostgreSQL backend here).
fn signal(pid: i32, signal: &str) {
    let sent = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill");
    assert!(sent.success(), "kill {signal} {pid}: this test needs the PostgreSQL server on this machine");
}

/// Resumes a stopped process however the test ends.
struct ResumeOnDrop(i32);

impl Drop for ResumeOnDrop {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

/// A listening connection that stops answering without closing (a NAT or failover dropping it silently)
/// gives no error. The node must find it out by itself and stop serving what it can no longer keep true.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_change_listener_hangs_stops_serving_from_memory() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let url = database.url();
    let Cached { first, second, key, id, listener } = cached_on_the_second_node(&url).await;

    let mut admin = PgConnection::connect(&url).await.expect("connect");
    let backend: i32 = sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
        .bind(&listener)
        .fetch_one(&mut admin)
        .await
        .expect("the second node's listener");
    signal(backend, "-STOP");
    let _resume = ResumeOnDrop(backend);

    let (status, _) = call(&first, &key, "updateIdentity", json!({"identity": id, "meta": {"v": 2}})).await;
    assert_eq!(status, 200);
    // A heartbeat finds the hang within about 1.5 s; without one, the stale read would last the
    // cache's whole time to live.
    let found_out_within = Duration::from_secs(3);
    assert!(found_out_within < CACHED_IDENTITY_TIME_TO_LIVE);
    let started = tokio::time::Instant::now();
    loop {
        let (_, body) = call(&second, &key, "getIdentity", json!({"identity": id})).await;
        if body["data"]["meta"] == json!({"v": 2}) {
            break;
        }
        assert!(started.elapsed() < found_out_within, "still reads {}", body["data"]["meta"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Nodes given different record keys would answer each other's createKey retries 503: the second refuses to
/// start, and one given the same key starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_record_key_refuses_to_start() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let url = database.url();
    let first_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let first = SigilProcess::start_with_env(&url, &[], &[("SIGIL_RECORD_KEY", first_key)]).await;
    let other_key = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    let stderr = refused_to_start(&["--database", &url], &[("SIGIL_RECORD_KEY", other_key)]).await;
    assert!(stderr.contains("another record key") && !stderr.contains(other_key), "{stderr}");
    let same = SigilProcess::start_with_env(&url, &[], &[("SIGIL_RECORD_KEY", first_key)]).await;
    same.kill().await;
    first.kill().await;
}
