//! PostgreSQL that stops answering without closing its connections (a failover, a NAT that dropped its
//! state, a partition), reproduced by a [`ChaosProxy`] between Sigil and the database: every request
//! answers within the database deadline, with 503 when it needed the database, and the node serves
//! normally again within seconds of the database coming back, without a restart, having lost nothing it
//! acknowledged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sigil::store::DATABASE_DEADLINE;
use sqlx::{Connection, PgConnection};
use tokio::time::Instant;

use crate::chaos_proxy::ChaosProxy;
use crate::harness::{Backend, SigilProcess, TestDatabase, admin_key};
use crate::multi_node::{call, reads_within_bound};

const WORKERS: usize = 8;
/// What a request may take beyond the database deadline: the debug build on two busy cores.
const MARGIN: Duration = Duration::from_millis(1500);
const SILENT_FOR: Duration = Duration::from_secs(8);
/// How soon after the database answers again a node must serve writes and hear changes again.
const RECOVERS_WITHIN: Duration = Duration::from_secs(10);

/// The database of `url` behind a proxy: (the URL through the proxy, the proxy).
pub async fn behind_a_proxy(url: &str) -> (String, ChaosProxy) {
    let authority_starts = url.find('@').expect("postgres://USER@HOST:PORT/DB") + 1;
    let authority_ends = authority_starts + url[authority_starts..].find('/').expect("a database name");
    let proxy = ChaosProxy::start(&url[authority_starts..authority_ends]).await;
    let proxied = format!("{}{}{}", &url[..authority_starts], proxy.address, &url[authority_ends..]);
    (proxied, proxy)
}

/// A node on PostgreSQL behind a [`ChaosProxy`], an admin key, and the database's own URL (`direct`);
/// `None` outside CI when PostgreSQL is unreachable.
struct ProxiedNode {
    /// Kept for the test's length: dropping it drops the database.
    _database: TestDatabase,
    direct: String,
    proxy: ChaosProxy,
    key: String,
    node: SigilProcess,
}

impl ProxiedNode {
    async fn start() -> Option<Self> {
        let database = TestDatabase::create(Backend::Postgres).await?;
        let direct = database.url();
        let (proxied, proxy) = behind_a_proxy(&direct).await;
        let key = admin_key(&direct).await;
        let node = SigilProcess::start(&proxied).await;
        Some(Self { _database: database, direct, proxy, key, node })
    }
}

/// What the workers saw.
#[derive(Default)]
struct Seen {
    /// externalId → (id, highest meta version acknowledged).
    acknowledged: HashMap<String, (String, i64)>,
    /// (operation, status, how long it took), for every answer while the database was silent.
    while_silent: Vec<(&'static str, u16, Duration)>,
}

/// Workers create, update, read and list identities until `stop`, noting what they saw.
fn drive_load(
    node: &SigilProcess,
    key: &str,
    silent: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Arc<Mutex<Seen>>, tokio::task::JoinSet<()>) {
    use std::sync::atomic::Ordering;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let (client, base_url, key, seen, silent, stop) = (
            reqwest::Client::new(),
            node.base_url.clone(),
            key.to_owned(),
            Arc::clone(&seen),
            Arc::clone(&silent),
            Arc::clone(&stop),
        );
        workers.spawn(async move {
            let send = async |operation: &'static str, body: Value| {
                let was_silent = silent.load(Ordering::SeqCst);
                let started = Instant::now();
                let response = client
                    .post(format!("{base_url}/v2/identities.{operation}"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .expect("the node answers");
                let status = response.status().as_u16();
                let body: Value = response.json().await.expect("JSON");
                if was_silent {
                    seen.lock().unwrap().while_silent.push((operation, status, started.elapsed()));
                }
                (status, body)
            };
            for n in 0.. {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let external_id = format!("outage_{worker}_{n}");
                let (status, body) = send("createIdentity", json!({"externalId": external_id, "meta": {"v": 1}})).await;
                if status != 200 {
                    send("listIdentities", json!({"limit": 10})).await;
                    continue;
                }
                let id = body["data"]["identityId"].as_str().expect("id").to_owned();
                seen.lock().unwrap().acknowledged.insert(external_id.clone(), (id.clone(), 1));
                let (status, _) = send("updateIdentity", json!({"identity": id, "meta": {"v": 2}})).await;
                if status == 200 {
                    seen.lock().unwrap().acknowledged.insert(external_id, (id.clone(), 2));
                }
                send("getIdentity", json!({"identity": id})).await;
            }
        });
    }
    (seen, workers)
}

/// Every identity in the database, read directly: externalId → (id, meta version).
async fn stored(url: &str) -> HashMap<String, (String, i64)> {
    let mut connection = PgConnection::connect(url).await.expect("connect");
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT external_id, id, meta FROM identities WHERE deleted_at IS NULL")
            .fetch_all(&mut connection)
            .await
            .expect("read identities");
    rows.into_iter()
        .map(|(external_id, id, meta)| {
            let version = serde_json::from_str::<Value>(&meta).expect("meta")["v"].as_i64().unwrap_or(0);
            (external_id, (id, version))
        })
        .collect()
}

/// Creates an identity on `node` until that succeeds; how long it took.
async fn until_writes_succeed(node: &SigilProcess, key: &str) -> Duration {
    let started = Instant::now();
    for attempt in 0.. {
        let (status, body) =
            call(node, key, "createIdentity", json!({"externalId": format!("recovered_{attempt}")})).await;
        if status == 200 {
            return started.elapsed();
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            started.elapsed() < RECOVERS_WITHIN,
            "writes still fail {:?} after the database came back",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

async fn cache_serving(node: &SigilProcess) -> bool {
    let metrics =
        reqwest::get(format!("{}/metrics", node.base_url)).await.expect("metrics").text().await.expect("text");
    metrics.lines().any(|line| line == "sigil_identity_cache_serving 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_costs_503s_within_the_deadline_and_the_node_recovers_by_itself() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(ProxiedNode { _database, direct, proxy, key, node }) = ProxiedNode::start().await else { return };
    let (silent, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (seen, workers) = drive_load(&node, &key, Arc::clone(&silent), Arc::clone(&stop));

    tokio::time::sleep(Duration::from_secs(1)).await;
    silent.store(true, Ordering::SeqCst);
    proxy.go_silent();
    tokio::time::sleep(SILENT_FOR).await;
    proxy.restore();
    // Requests sent while silent may still be answered now; they count as sent while silent.
    tokio::time::sleep(DATABASE_DEADLINE + MARGIN).await;
    silent.store(false, Ordering::SeqCst);
    let recovered_in = until_writes_succeed(&node, &key).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    workers.join_all().await;

    let seen = Arc::try_unwrap(seen).ok().expect("workers are done").into_inner().unwrap();
    let unavailable = seen.while_silent.iter().filter(|(_, status, _)| *status == 503).count();
    assert!(unavailable >= WORKERS, "the silence was never noticed: {:?}", seen.while_silent);
    for (operation, status, took) in &seen.while_silent {
        assert!(matches!(status, 200 | 503), "{operation} answered {status} while the database was silent");
        assert!(*took <= DATABASE_DEADLINE + MARGIN, "{operation} took {took:?} while the database was silent");
    }
    assert!(recovered_in < RECOVERS_WITHIN, "{recovered_in:?}");
    let metrics = reqwest::get(format!("{}/metrics", node.base_url)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"sigil_database_errors_total{kind="timeout"}"#), "{metrics}");
    // Each failure's log line names the request it failed.
    let failures: Vec<Value> = (node.logs.lock().unwrap().iter())
        .filter(|line| line.contains("request failed"))
        .map(|line| serde_json::from_str(line).expect("a JSON log line"))
        .collect();
    assert!(failures.len() >= WORKERS, "{} lines tell of a failed request", failures.len());
    for line in &failures {
        let request = &line["span"];
        let id = request["request_id"].as_str().unwrap_or_default();
        let path = request["path"].as_str().unwrap_or_default();
        assert!(id.starts_with("req_") && path.starts_with("/v2/") && request["method"] == "POST", "{line}");
    }

    let stored = stored(&direct).await;
    assert!(seen.acknowledged.len() >= WORKERS, "too little was written to prove anything");
    for (external_id, (id, version)) in &seen.acknowledged {
        let (stored_id, stored_version) = stored.get(external_id).unwrap_or_else(|| panic!("{external_id} was lost"));
        assert_eq!(stored_id, id);
        assert!(stored_version >= version, "{external_id}: an acknowledged update was lost");
    }
    let started = Instant::now();
    while !cache_serving(&node).await {
        assert!(started.elapsed() < RECOVERS_WITHIN, "the node never heard changes again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The change listener and announcer go silent with everything else on one node: that node must stop
/// serving from memory what it can no longer keep true, and once the database answers again it must hear
/// other nodes' changes, and they its own, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_serves_nothing_stale_and_hears_again_once_back() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let direct = database.url();
    let (proxied, proxy) = behind_a_proxy(&direct).await;
    let key = admin_key(&direct).await;
    let (cut_off, other) = tokio::join!(SigilProcess::start(&proxied), SigilProcess::start(&direct));
    let (_, created) = call(&other, &key, "createIdentity", json!({"externalId": "user_1", "meta": {"v": 1}})).await;
    let id = created["data"]["identityId"].as_str().expect("id").to_owned();
    reads_within_bound(&cut_off, &key, &id, (200, json!({"v": 1}))).await;
    reads_within_bound(&other, &key, &id, (200, json!({"v": 1}))).await;

    proxy.go_silent();
    let (status, _) = call(&other, &key, "updateIdentity", json!({"identity": id, "meta": {"v": 2}})).await;
    assert_eq!(status, 200);
    let started = Instant::now();
    while cache_serving(&cut_off).await {
        assert!(started.elapsed() < Duration::from_secs(3), "the cut-off node still trusts what it read");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = call(&cut_off, &key, "getIdentity", json!({"identity": id})).await;
    assert_eq!(status, 503, "a node that cannot reach the database serves nothing stale: {body}");
    let (status, _) = call(&cut_off, &key, "updateIdentity", json!({"identity": id, "meta": {"v": 3}})).await;
    assert_eq!(status, 503);

    proxy.restore();
    let started = Instant::now();
    while !cache_serving(&cut_off).await {
        assert!(started.elapsed() < RECOVERS_WITHIN, "the node never listened again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reads_within_bound(&cut_off, &key, &id, (200, json!({"v": 2}))).await;
    // The cut-off node's announcements reach the other node again, which has v2 in memory.
    reads_within_bound(&other, &key, &id, (200, json!({"v": 2}))).await;
    let (status, _) = call(&cut_off, &key, "updateIdentity", json!({"identity": id, "meta": {"v": 4}})).await;
    assert_eq!(status, 200);
    reads_within_bound(&other, &key, &id, (200, json!({"v": 4}))).await;
    // And it hears the other node's changes.
    let (status, _) = call(&other, &key, "updateIdentity", json!({"identity": id, "meta": {"v": 5}})).await;
    assert_eq!(status, 200);
    reads_within_bound(&cut_off, &key, &id, (200, json!({"v": 5}))).await;
}

/// The keys routes, verification included, answer 503 within the deadline while PostgreSQL is silent, and
/// verify again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_answer_503_within_the_deadline_while_the_database_is_silent() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let (proxied, proxy) = behind_a_proxy(&database.url()).await;
    let node = SigilProcess::start(&proxied).await;
    let key = admin_key(&database.url()).await;
    let send = async |operation: &str, body: Value| {
        let started = Instant::now();
        let response = node.call(operation, &key, body).await;
        (response.status, response.body, started.elapsed())
    };
    let identity = json!({"externalId": "user_1",
        "ratelimits": [{"name": "requests", "limit": 100, "duration": 60_000, "autoApply": true}]});
    assert_eq!(send("identities.createIdentity", identity).await.0, 200);
    let (_, api, _) = send("apis.createApi", json!({"name": "production"})).await;
    let created = json!({"apiId": api["data"]["apiId"], "externalId": "user_1", "credits": {"remaining": 10}});
    let (_, created, _) = send("keys.createKey", created).await;
    let (key_id, plaintext) = (created["data"]["keyId"].clone(), created["data"]["key"].clone());
    assert_eq!(send("keys.verifyKey", json!({"key": plaintext})).await.1["data"]["code"], "VALID");

    proxy.go_silent();
    for (operation, body) in [
        ("keys.verifyKey", json!({"key": plaintext})),
        ("keys.createKey", json!({"apiId": api["data"]["apiId"]})),
        ("keys.updateCredits", json!({"keyId": key_id, "operation": "increment", "value": 1})),
        ("keys.getKey", json!({"keyId": key_id})),
    ] {
        let (status, body, took) = send(operation, body).await;
        assert_eq!(status, 503, "{operation}: {body}");
        assert!(took < DATABASE_DEADLINE + MARGIN, "{operation} took {took:?}");
    }
    proxy.restore();
    let started = Instant::now();
    loop {
        let (status, body, _) = send("keys.verifyKey", json!({"key": plaintext})).await;
        if status == 200 {
            assert_eq!(body["data"]["code"], "VALID", "{body}");
            break;
        }
        assert!(started.elapsed() < RECOVERS_WITHIN, "verification never came back: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.kill().await;
}

/// A client that hangs up while its read waits on the database closes that read's connection, and only it:
/// a database that answers says nothing wrong of the others. When every such hang-up closed every kept
/// connection, any client, with a key or none, could make every request open a connection again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hanging_up_mid_read_close_only_their_own_connections() {
    use tokio::io::AsyncWriteExt;
    const HANG_UPS: u64 = 5;
    let Some(ProxiedNode { _database, proxy, key, node, .. }) = ProxiedNode::start().await else { return };
    // Every query is out for 400 ms: long enough to hang up in the middle of, short of the second after
    // which a query given up suggests a silent database.
    proxy.slow_down(Duration::from_millis(400));
    let reads_at_once = || {
        let reads = (0..WORKERS).map(|_| call(&node, &key, "listIdentities", json!({"limit": 10})));
        futures::future::join_all(reads)
    };
    assert!(reads_at_once().await.iter().all(|(status, _)| *status == 200), "the reads that open the connections");
    let opened_before = proxy.connections_opened();
    let address = node.base_url.trim_start_matches("http://").to_owned();
    for _ in 0..HANG_UPS {
        let mut client = tokio::net::TcpStream::connect(&address).await.expect("connect");
        let body = r#"{"limit":10}"#;
        let request = format!(
            "POST /v2/identities.listIdentities HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        client.write_all(request.as_bytes()).await.expect("send");
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(client);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(reads_at_once().await.iter().all(|(status, _)| *status == 200), "the reads after a hang-up");
    }
    let opened = proxy.connections_opened() - opened_before;
    // At least one each: a hang-up that closed no connection came before its read reached the database.
    assert!((HANG_UPS..=2 * HANG_UPS).contains(&opened), "{opened} connections opened for {HANG_UPS} hang-ups");
}

/// A row found damaged once read says nothing of the connection that read it: writing it on every request
/// (an update that replaces its ratelimits reads the stored ones, and answers 500 each time) keeps the
/// connections as they are. When such a write closed its connection and every kept one, each request
/// opened a connection again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_row_written_again_and_again_keeps_the_connections() {
    const WRITES: usize = 10;
    let Some(ProxiedNode { _database, direct, proxy, key, node }) = ProxiedNode::start().await else { return };
    let (status, _) = call(&node, &key, "createIdentity", json!({"externalId": "damaged"})).await;
    assert_eq!(status, 200);
    let mut connection = PgConnection::connect(&direct).await.expect("connect");
    sqlx::query("UPDATE identities SET ratelimits = 'not a JSON array'")
        .execute(&mut connection)
        .await
        .expect("damage");
    let opened_before = proxy.connections_opened();
    for _ in 0..WRITES {
        let update = json!({"identity": "damaged", "ratelimits": [{"name": "api", "limit": 1, "duration": 1000, "autoApply": false}]});
        let (status, body) = call(&node, &key, "updateIdentity", update).await;
        assert_eq!(status, 500, "{body}");
    }
    let opened = proxy.connections_opened() - opened_before;
    assert_eq!(opened, 0, "{opened} connections opened for {WRITES} writes of a damaged row");
}
