//! `cargo bench --bench sigil -- [--database postgres://…] [--ratelimit-counters redis://…] [--concurrency 32]
//! [--seconds 3] [--only <name>,…]`; `SIGIL_BENCH_LOG=<file>` keeps the server's log, and
//! `SIGIL_BENCH_BINARY=<path>` measures another build of `sigil` (an earlier commit's) instead of this one.
//!
//! Starts the release `sigil` binary on a fresh database, seeds it, drives every operation over real HTTP
//! with N concurrent keep-alive connections, and prints per operation: requests/s, p50/p99/p99.9 latency,
//! unexpected statuses, and the server's peak RSS. In the same run it measures two floors on this machine
//! and reports each result as a ratio to them, because on a shared, noisy machine only ratios compare:
//! - storage floor: the same single-row identity INSERT straight through sqlx, one transaction per row,
//!   with Sigil's durability settings (SQLite: WAL + synchronous=FULL, one writer; PostgreSQL: N
//!   connections at the same concurrency);
//! - HTTP floor: an axum endpoint in this process that parses the same JSON and returns a fixed body.
//!
//! With wrk installed, it then measures the HTTP floor and the headline operations again with
//! `wrk -t1 -c<concurrency>` (`sigil/wrk.rs`), a client that costs the machine less per request.
//!
//! Last, it drives creates just before and during a storm of 500 clients retrying one in-flight
//! Idempotency-Key ([`RetryStorm`]), and reports the ratio of the two rates.
//!
//! Writes the results as JSON too (`--json`, default `target/bench/sigil.json`).

// Beside this file, not in benches/, where cargo would take it for a bench of its own.
#[path = "sigil/floors.rs"]
mod floors;
#[path = "sigil/http1.rs"]
mod http1;
#[path = "sigil/wrk.rs"]
mod wrk;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::post;
use clap::Parser;
use serde::Serialize;
use serde_json::{Value, json};
use sigil::domain::permission::all_permissions;
use sigil::server::mint_root_key;
use sqlx::{Connection, Executor};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Parser)]
struct Args {
    /// sqlite (a fresh temp file) or a postgres:// URL (a fresh schema in it, dropped afterwards).
    #[arg(long, default_value = "sqlite")]
    database: String,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds each operation (and each floor) is driven.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    #[arg(long, default_value = "target/bench/sigil.json")]
    json: PathBuf,
    /// Drives only the operations whose name contains one of these comma-separated parts (the floors and
    /// the storm still run), to profile one operation with `perf record -p <sigil's pid>`.
    #[arg(long)]
    only: Option<String>,
    /// Passed to `sigil serve`: a `redis://` URL to count verifyKey's ratelimits in.
    #[arg(long)]
    ratelimit_counters: Option<String>,
    /// Accepted and ignored: `cargo bench` passes it to every bench target.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Serialize)]
struct OperationResult {
    operation: String,
    requests: u64,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    /// Responses whose status was not the one the operation expects, by status.
    unexpected_statuses: BTreeMap<u16, u64>,
    /// The server process's CPU time (user and system) per request: on a shared, noisy machine this moves
    /// less than the rate does when only the server changed.
    server_cpu_us_per_request: Option<f64>,
    /// The client's own CPU time per request (its one thread): what measuring took from the machine the
    /// server shares, for reqwest here and as `wrk` costs what it costs.
    client_cpu_us_per_request: Option<f64>,
}

#[derive(Serialize)]
struct Report {
    backend: String,
    /// Where verifyKey counted, when not in the database.
    ratelimit_counters: Option<String>,
    concurrency: usize,
    seconds_per_operation: f64,
    storage_floor_inserts_per_second: f64,
    /// What the database's own tools insert per second (`floors.rs`), by floor.
    database_floors: BTreeMap<String, f64>,
    http_floor: OperationResult,
    operations: Vec<OperationResult>,
    /// The headline figures as `wrk` measured them (`wrk.rs`), when it is installed.
    wrk: Vec<wrk::WrkResult>,
    server_peak_rss_mb: f64,
    ratios: BTreeMap<String, f64>,
}

/// One kind of request: path, body for (worker, sequence number), expected status.
struct Operation {
    name: &'static str,
    path: &'static str,
    expected: u16,
    body: Box<dyn Fn(usize, u64) -> Value + Send + Sync>,
}

/// The client runs on one thread, as `wrk -t1` does. On a multi-threaded runtime every request crossed
/// between the thread driving it and the one running its connection, and the client took nearly as much
/// of this 2-core machine as the server it measured.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let duration = Duration::from_secs_f64(args.seconds);
    let database = BenchDatabase::create(&args.database).await?;

    let storage_floor = storage_floor(&database, args.concurrency, duration).await?;
    let database_floors = database_floors(&database, args.concurrency, duration).await?;
    let (floor_server, floor_url) = start_http_floor();
    let http_floor = http_floor(&floor_url, args.concurrency, duration).await;

    let mut server = Server::start(&database.url, args.ratelimit_counters.as_deref()).await;
    println!("sigil serving at {} as pid {}", server.base_url, server.process.id().expect("running"));
    let store = sigil::store::open(&database.url).await?;
    let (workspace, _) = store.ensure_workspace("bench").await?;
    let key = mint_root_key(&*store, &workspace, vec![all_permissions(&workspace)]).await?;
    let client = client(args.concurrency);
    let seeded = seed(&client, &server.base_url, &key, SEEDED).await;
    let seeded = Arc::new(seeded);
    let verified = Arc::new(seed_verified_keys(&client, &server.base_url, &key).await);

    let mut operations = Vec::new();
    let chosen_name =
        |name: &str| args.only.as_ref().is_none_or(|only| only.split(',').any(|part| name.contains(part)));
    let chosen = |operation: &Operation| chosen_name(operation.name);
    for operation in operations_to_run(seeded.clone()).into_iter().chain(verifications(verified.clone())).filter(chosen)
    {
        let cpu_before = server.cpu_seconds();
        let mut result = drive(&server.base_url, Some(&key), &operation, args.concurrency, duration).await;
        result.server_cpu_us_per_request = per_request_us(server.cpu_seconds() - cpu_before, result.requests);
        operations.push(result);
    }
    let wrk_scratch = tempfile::tempdir()?;
    let mut wrk_results = Vec::new();
    let wrk_targets = wrk_targets(&floor_url, &server.base_url, &key, &seeded[0].0, &verified.0);
    for target in wrk_targets.iter().filter(|target| target.name == WRK_FLOOR || chosen_name(target.name)) {
        let cpu_before = server.cpu_seconds();
        if let Some(mut result) = wrk::measure(target, args.concurrency, duration, wrk_scratch.path()).await {
            if target.name != WRK_FLOOR {
                result.server_cpu_us_per_request = per_request_us(server.cpu_seconds() - cpu_before, result.requests);
            }
            wrk_results.push(result);
        }
    }
    floor_server.shutdown_background();
    // Unrelated creates, just before and during a storm of retries of one in-flight Idempotency-Key.
    let creates = new_identities("before_storm");
    operations.push(drive(&server.base_url, Some(&key), &creates, args.concurrency, duration).await);
    let storm = RetryStorm::start(&server.base_url, &key, &database, &seeded[0].0).await?;
    let creates = Operation { name: CREATES_DURING_STORM, ..new_identities("during_storm") };
    operations.push(drive(&server.base_url, Some(&key), &creates, args.concurrency, duration).await);
    let storm_answers = storm.stop().await;
    let server_peak_rss_mb = server.peak_rss_mb();
    server.stop().await;
    store.close().await;
    let backend = database.backend;
    database.drop().await?;

    let rate = |name: &str| operations.iter().find(|o| o.operation == name).map_or(0.0, |o| o.requests_per_second);
    let ratios = BTreeMap::from([
        ("createIdentity / storage floor".to_owned(), rate("createIdentity") / storage_floor),
        ("getIdentity (by id) / HTTP floor".to_owned(), rate("getIdentity by id") / http_floor.requests_per_second),
        (
            "getIdentity (by externalId) / HTTP floor".to_owned(),
            rate("getIdentity by externalId") / http_floor.requests_per_second,
        ),
        ("createIdentity during a retry storm / just before it".to_owned(), rate(CREATES_DURING_STORM) / rate(CREATES)),
        ("listIdentities (100) / HTTP floor".to_owned(), rate(LIST) / http_floor.requests_per_second),
        ("verifyKey / HTTP floor".to_owned(), rate(VERIFY) / http_floor.requests_per_second),
        ("verifyKey with credits / HTTP floor".to_owned(), rate(VERIFY_WITH_CREDITS) / http_floor.requests_per_second),
    ]);
    let mut ratios = ratios;
    let wrk_rate = |name: &str| wrk_results.iter().find(|o| o.operation == name).map(|o| o.requests_per_second);
    // Creates are measured against the database's floors, everything else wrk measures against its HTTP floor.
    if let Some(floor) = wrk_rate(WRK_FLOOR) {
        for result in wrk_results.iter().filter(|result| ![WRK_FLOOR, "createIdentity"].contains(&result.operation)) {
            ratios.insert(format!("wrk: {} / HTTP floor", result.operation), result.requests_per_second / floor);
        }
    }
    for (floor, per_second) in &database_floors {
        ratios.insert(format!("createIdentity / {floor}"), rate("createIdentity") / per_second);
        if let Some(creates) = wrk_rate("createIdentity") {
            ratios.insert(format!("wrk: createIdentity / {floor}"), creates / per_second);
        }
    }
    println!("retry storm answers by status: {storm_answers:?}");
    let report = Report {
        backend: backend.to_owned(),
        ratelimit_counters: args.ratelimit_counters.clone(),
        concurrency: args.concurrency,
        seconds_per_operation: args.seconds,
        storage_floor_inserts_per_second: storage_floor,
        database_floors,
        http_floor,
        operations,
        wrk: wrk_results,
        server_peak_rss_mb,
        ratios,
    };
    print_table(&report);
    if let Some(parent) = args.json.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&report)?)?;
    println!("\nJSON written to {}", args.json.display());
    Ok(())
}

fn operations_to_run(seeded: Arc<Vec<(String, String)>>) -> Vec<Operation> {
    let pick = {
        let seeded = seeded.clone();
        move |worker: usize, n: u64| seeded[(worker * 7919 + n as usize * 104_729) % seeded.len()].clone()
    };
    let (by_id, by_external, updated, upserted) = (pick.clone(), pick.clone(), pick.clone(), pick);
    vec![
        Operation { name: "createIdentity", ..new_identities("new") },
        Operation {
            name: "createIdentity conflict (409)",
            path: "/v2/identities.createIdentity",
            expected: 409,
            body: Box::new(|_, _| json!({"externalId": "seed_0"})),
        },
        Operation {
            name: "getIdentity by id",
            path: "/v2/identities.getIdentity",
            expected: 200,
            body: Box::new(move |w, n| json!({"identity": by_id(w, n).0})),
        },
        Operation {
            name: "getIdentity by externalId",
            path: "/v2/identities.getIdentity",
            expected: 200,
            body: Box::new(move |w, n| json!({"identity": by_external(w, n).1})),
        },
        Operation {
            name: "updateIdentity",
            path: "/v2/identities.updateIdentity",
            expected: 200,
            body: Box::new(move |w, n| json!({"identity": updated(w, n).0, "meta": {"n": n}})),
        },
        Operation {
            name: LIST,
            path: "/v2/identities.listIdentities",
            expected: 200,
            body: Box::new(|_, _| json!({"limit": 100})),
        },
        Operation {
            name: "upsertIdentity",
            path: "/v2/identities.upsertIdentity",
            expected: 200,
            body: Box::new(move |w, n| {
                // Half updates an existing identity, half creates one.
                let external_id = if n % 2 == 0 { upserted(w, n).1 } else { format!("upsert_{w}_{n}") };
                json!({"externalId": external_id, "meta": {"n": n}})
            }),
        },
    ]
}

const LIST: &str = "listIdentities (100)";
const VERIFY: &str = "verifyKey (identity limit)";
const VERIFY_WITH_CREDITS: &str = "verifyKey (identity limit, credits)";

/// Two keys of an identity with an auto-applied limit too high to be reached: one without credits, one with
/// more than can be spent. Every verification then passes every check (and the one with credits writes).
async fn seed_verified_keys(client: &reqwest::Client, base_url: &str, key: &str) -> (String, String) {
    let post = |operation: &str, body: Value| {
        client.post(format!("{base_url}/v2/{operation}")).bearer_auth(key).json(&body).send()
    };
    let limit = json!([{"name": "requests", "limit": 1_000_000, "duration": 60_000, "autoApply": true}]);
    post("identities.createIdentity", json!({"externalId": "verified", "ratelimits": limit})).await.expect("identity");
    let api: Value = post("apis.createApi", json!({"name": "bench"})).await.expect("api").json().await.expect("api");
    let mut keys = Vec::new();
    for credits in [Value::Null, json!({"remaining": 1_000_000_000})] {
        let mut body = json!({"apiId": api["data"]["apiId"], "externalId": "verified", "prefix": "sk"});
        if !credits.is_null() {
            body["credits"] = credits;
        }
        let created: Value = post("keys.createKey", body).await.expect("key").json().await.expect("key");
        keys.push(created["data"]["key"].as_str().expect("key").to_owned());
    }
    (keys[0].clone(), keys[1].clone())
}

fn verifications(keys: Arc<(String, String)>) -> Vec<Operation> {
    let with_credits = keys.clone();
    vec![
        Operation {
            name: VERIFY,
            path: "/v2/keys.verifyKey",
            expected: 200,
            body: Box::new(move |_, _| json!({"key": keys.0})),
        },
        Operation {
            name: VERIFY_WITH_CREDITS,
            path: "/v2/keys.verifyKey",
            expected: 200,
            body: Box::new(move |_, _| json!({"key": with_credits.1})),
        },
    ]
}

const CREATES: &str = "createIdentity before a storm";
const CREATES_DURING_STORM: &str = "createIdentity during a storm";

/// Creates of new identities, their externalIds starting with `prefix`.
fn new_identities(prefix: &'static str) -> Operation {
    Operation {
        name: CREATES,
        path: "/v2/identities.createIdentity",
        expected: 200,
        body: Box::new(move |w, n| json!({"externalId": format!("{prefix}_{w}_{n}"), "meta": {"plan": "pro"}})),
    }
}

/// 500 clients retrying one Idempotency-Key, as clients do after a timeout: each sends the same update and
/// waits a second (the Retry-After of a 409) before it sends again. On PostgreSQL the first request stays in
/// flight for the whole storm, held by a row lock taken here. SQLite has one writer, and such a lock would
/// stop every write, so there the first request ends at once and the retries are replayed.
struct RetryStorm {
    stop: Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<BTreeMap<u16, u64>>>,
    row_lock: Option<sqlx::PgConnection>,
}

const STORM_CLIENTS: usize = 500;

impl RetryStorm {
    async fn start(base_url: &str, key: &str, database: &BenchDatabase, identity_id: &str) -> anyhow::Result<Self> {
        let row_lock = if database.backend == "postgres" {
            let mut connection = sqlx::PgConnection::connect(&database.url).await?;
            connection.execute("BEGIN").await?;
            sqlx::query("SELECT id FROM identities WHERE id = $1 FOR UPDATE")
                .bind(identity_id)
                .fetch_one(&mut connection)
                .await?;
            Some(connection)
        } else {
            None
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = client(STORM_CLIENTS);
        let body = json!({"identity": identity_id, "meta": {"storm": true}}).to_string();
        let clients = (0..STORM_CLIENTS)
            .map(|_| {
                let (stop, client, body) = (stop.clone(), client.clone(), body.clone());
                let (url, key) = (format!("{base_url}/v2/identities.updateIdentity"), key.to_owned());
                tokio::spawn(async move {
                    let mut answers = BTreeMap::new();
                    while !stop.load(Ordering::Relaxed) {
                        let sent = client
                            .post(&url)
                            .bearer_auth(&key)
                            .header("content-type", "application/json")
                            .header("idempotency-key", "storm")
                            .body(body.clone())
                            .send()
                            .await;
                        let status = sent.map_or(0, |response| response.status().as_u16());
                        *answers.entry(status).or_default() += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    answers
                })
            })
            .collect();
        Ok(Self { stop, clients, row_lock })
    }

    /// Ends the storm; how its requests were answered, by status.
    async fn stop(self) -> BTreeMap<u16, u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(mut row_lock) = self.row_lock {
            let _ = row_lock.execute("ROLLBACK").await;
        }
        let mut answers = BTreeMap::new();
        for client in self.clients {
            for (status, count) in client.await.unwrap_or_default() {
                *answers.entry(status).or_default() += count;
            }
        }
        answers
    }
}

fn client(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().expect("client")
}

/// Creates `count` identities with a ratelimit each; returns (id, externalId) pairs.
async fn seed(client: &reqwest::Client, base_url: &str, key: &str, count: usize) -> Vec<(String, String)> {
    let mut seeded = Vec::with_capacity(count);
    for n in 0..count {
        let external_id = format!("seed_{n}");
        let body = json!({"externalId": external_id, "meta": {"seeded": true},
            "ratelimits": [{"name": "requests", "limit": 100, "duration": 60000, "autoApply": true}]});
        let response = client
            .post(format!("{base_url}/v2/identities.createIdentity"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("seed");
        let created: Value = response.json().await.expect("seed body");
        seeded.push((created["data"]["identityId"].as_str().expect("identityId").to_owned(), external_id));
    }
    seeded
}

/// Runs `concurrency` workers, each sending `operation` back to back on a connection of its own until
/// `duration` has passed.
async fn drive(
    base_url: &str,
    key: Option<&str>,
    operation: &Operation,
    concurrency: usize,
    duration: Duration,
) -> OperationResult {
    let operation_ref: &Operation = operation;
    let target = http1::Target::new(base_url, key);
    let target = &target;
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let client_cpu_before = this_thread_cpu_seconds();
    let workers = (0..concurrency).map(|worker| async move {
        let mut connection = http1::Connection::new(target);
        let mut latencies = Vec::new();
        let mut unexpected: BTreeMap<u16, u64> = BTreeMap::new();
        let mut n = 0u64;
        while Instant::now() < deadline {
            let body = serde_json::to_vec(&(operation_ref.body)(worker, n)).expect("JSON");
            let sent = Instant::now();
            let status = connection.post(operation_ref.path, body).await;
            latencies.push(sent.elapsed());
            if status != operation_ref.expected {
                *unexpected.entry(status).or_default() += 1;
            }
            n += 1;
        }
        (latencies, unexpected)
    });
    let results = futures::future::join_all(workers).await;
    let elapsed = started.elapsed().as_secs_f64();
    let client_cpu_seconds = this_thread_cpu_seconds() - client_cpu_before;
    let mut latencies = Vec::new();
    let mut unexpected_statuses = BTreeMap::new();
    for (worker_latencies, worker_unexpected) in results {
        latencies.extend(worker_latencies);
        for (status, count) in worker_unexpected {
            *unexpected_statuses.entry(status).or_default() += count;
        }
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index =
            ((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1).min(latencies.len().saturating_sub(1));
        latencies.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    OperationResult {
        operation: operation.name.to_owned(),
        requests: latencies.len() as u64,
        requests_per_second: latencies.len() as f64 / elapsed,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        p999_ms: percentile(0.999),
        unexpected_statuses,
        server_cpu_us_per_request: None,
        client_cpu_us_per_request: per_request_us(client_cpu_seconds, latencies.len() as u64),
    }
}

/// What HTTP alone costs here: the same JSON parsed and a fixed body returned, by axum in this process, on a
/// runtime of its own with as many workers as `sigil serve` has, not on the client's thread. It serves until
/// the runtime is dropped.
fn start_http_floor() -> (tokio::runtime::Runtime, String) {
    async fn fixed(Json(_): Json<Value>) -> &'static str {
        r#"{"meta":{"requestId":"req_0"},"data":{"id":"id_0","externalId":"seed_0"}}"#
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let base_url = format!("http://{}", listener.local_addr().expect("address"));
    let server_runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    server_runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        axum::serve(listener, axum::Router::new().route(FLOOR_PATH, post(fixed))).await.expect("floor server");
    });
    (server_runtime, base_url)
}

/// Identities seeded before the operations run, `seed_0` to `seed_999`.
const SEEDED: usize = 1000;

const FLOOR_PATH: &str = "/floor";
const FLOOR_BODY: &str = r#"{"identity":"seed_0"}"#;

async fn http_floor(base_url: &str, concurrency: usize, duration: Duration) -> OperationResult {
    let operation = Operation {
        name: "HTTP floor",
        path: FLOOR_PATH,
        expected: 200,
        body: Box::new(|_, _| serde_json::from_str(FLOOR_BODY).expect("JSON")),
    };
    drive(base_url, None, &operation, concurrency, duration).await
}

const WRK_FLOOR: &str = "HTTP floor";

/// The floor and the headline operations, as wrk sends them.
fn wrk_targets<'a>(
    floor_url: &str,
    base_url: &str,
    key: &'a str,
    identity_id: &str,
    verified_key: &str,
) -> Vec<wrk::WrkTarget<'a>> {
    let sigil = |name, operation: &str, body: String, numbered| wrk::WrkTarget {
        name,
        url: format!("{base_url}/v2/{operation}"),
        bearer: Some(key),
        body,
        numbered,
    };
    vec![
        wrk::WrkTarget {
            name: WRK_FLOOR,
            url: format!("{floor_url}{FLOOR_PATH}"),
            bearer: None,
            body: FLOOR_BODY.to_owned(),
            numbered: None,
        },
        sigil("getIdentity by id", "identities.getIdentity", json!({"identity": identity_id}).to_string(), None),
        sigil(
            "createIdentity conflict (409)",
            "identities.createIdentity",
            json!({"externalId": "seed_0"}).to_string(),
            None,
        ),
        sigil(
            "createIdentity",
            "identities.createIdentity",
            json!({"externalId": "wrk_{n}", "meta": {"plan": "pro"}}).to_string(),
            Some(u64::MAX),
        ),
        sigil(VERIFY, "keys.verifyKey", json!({"key": verified_key}).to_string(), None),
        // For their tails: every update is a write, each of another seeded identity; a page reads 100.
        sigil(
            "updateIdentity",
            "identities.updateIdentity",
            json!({"identity": "seed_{n}", "meta": {"plan": "pro"}}).to_string(),
            Some(SEEDED as u64),
        ),
        sigil(LIST, "identities.listIdentities", json!({"limit": 100}).to_string(), None),
    ]
}

/// Single-row identity inserts straight through sqlx, one transaction each, at Sigil's durability.
async fn storage_floor(database: &BenchDatabase, concurrency: usize, duration: Duration) -> anyhow::Result<f64> {
    const CREATE: &str = "CREATE TABLE floor (id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, \
        external_id TEXT NOT NULL, meta TEXT NOT NULL, created_at BIGINT NOT NULL)";
    const INSERT: &str =
        "INSERT INTO floor (id, workspace_id, external_id, meta, created_at) VALUES ($1, $2, $3, $4, $5)";
    let inserted = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    if database.backend == "sqlite" {
        let path = database.dir.as_ref().expect("dir").path().join("floor.db");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
        let mut connection = sqlx::SqliteConnection::connect_with(&options).await?;
        connection.execute(CREATE).await?;
        // SQLite has one writer, so the floor is one connection inserting back to back.
        let mut n = 0u64;
        while Instant::now() < deadline {
            sqlx::query(INSERT)
                .bind(format!("id_{n}"))
                .bind("ws")
                .bind(format!("e_{n}"))
                .bind("{}")
                .bind(0i64)
                .execute(&mut connection)
                .await?;
            n += 1;
        }
        inserted.store(n, Ordering::Relaxed);
    } else {
        let pool =
            sqlx::postgres::PgPoolOptions::new().max_connections(concurrency as u32).connect(&database.url).await?;
        pool.execute(CREATE).await?;
        let workers = (0..concurrency).map(|worker| {
            let (pool, inserted) = (pool.clone(), inserted.clone());
            async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    sqlx::query(INSERT)
                        .bind(format!("id_{worker}_{n}"))
                        .bind("ws")
                        .bind(format!("e_{worker}_{n}"))
                        .bind("{}")
                        .bind(0i64)
                        .execute(&pool)
                        .await
                        .expect("floor insert");
                    n += 1;
                }
                inserted.fetch_add(n, Ordering::Relaxed);
            }
        });
        futures::future::join_all(workers).await;
        pool.execute("DROP TABLE floor").await?;
        pool.close().await;
    }
    Ok(inserted.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// The floors of `floors.rs` for this database: `sqlite3` at synchronous FULL and NORMAL, or `pgbench`.
async fn database_floors(
    database: &BenchDatabase,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let scratch = tempfile::tempdir()?;
    let mut found = BTreeMap::new();
    if database.backend == "sqlite" {
        for synchronous in ["FULL", "NORMAL"] {
            if let Some(rate) = floors::sqlite3_inserts_per_second(scratch.path(), synchronous, duration).await {
                found.insert(format!("sqlite3 INSERTs, synchronous={synchronous}"), rate);
            }
        }
    } else if let Some((url, schema)) = &database.admin_url {
        let pgbench = floors::pgbench_inserts_per_second(url, schema, concurrency, duration, scratch.path()).await;
        if let Some(rate) = pgbench {
            found.insert(format!("pgbench single-row INSERTs, c={concurrency}"), rate);
        }
    }
    Ok(found)
}

/// A fresh SQLite file, or a fresh schema in the given PostgreSQL database.
struct BenchDatabase {
    backend: &'static str,
    url: String,
    dir: Option<tempfile::TempDir>,
    admin_url: Option<(String, String)>,
}

impl BenchDatabase {
    async fn create(database: &str) -> anyhow::Result<Self> {
        if database == "sqlite" {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("sigil.db").display());
            return Ok(Self { backend: "sqlite", url, dir: Some(dir), admin_url: None });
        }
        let schema = format!("sigil_bench_{}", ulid::Ulid::new().to_string().to_lowercase());
        let mut connection = sqlx::PgConnection::connect(database).await?;
        connection.execute(format!("CREATE SCHEMA {schema}").as_str()).await?;
        let separator = if database.contains('?') { '&' } else { '?' };
        let url = format!("{database}{separator}options=-c%20search_path%3D{schema}");
        Ok(Self { backend: "postgres", url, dir: None, admin_url: Some((database.to_owned(), schema)) })
    }

    async fn drop(self) -> anyhow::Result<()> {
        if let Some((url, schema)) = &self.admin_url {
            let mut connection = sqlx::PgConnection::connect(url).await?;
            connection.execute(format!("DROP SCHEMA {schema} CASCADE").as_str()).await?;
        }
        Ok(())
    }
}

/// The release `sigil serve` process under test.
struct Server {
    base_url: String,
    process: Child,
}

impl Server {
    /// The server logs every request, as in production, into a pipe this process empties without keeping.
    async fn start(database_url: &str, ratelimit_counters: Option<&str>) -> Self {
        // SIGIL_BENCH_BINARY=<path> runs another build (an earlier commit's, say) against the same floors.
        let binary = std::env::var_os("SIGIL_BENCH_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_sigil").into());
        let mut process = Command::new(binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--database", database_url])
            .args(ratelimit_counters.map(|url| ["--ratelimit-counters", url]).into_iter().flatten())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sigil");
        let mut log = BufReader::new(process.stderr.take().expect("stderr"));
        let mut line = String::new();
        let address = loop {
            line.clear();
            assert!(log.read_line(&mut line).await.expect("stderr") > 0, "sigil exited before serving");
            if let Some(address) = serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|entry| entry["fields"]["address"].as_str().map(str::to_owned))
            {
                break address;
            }
        };
        // SIGIL_BENCH_LOG=<file> keeps the server's log, to read its warnings after a run.
        match std::env::var_os("SIGIL_BENCH_LOG") {
            Some(path) => {
                let mut file = tokio::fs::File::create(path).await.expect("SIGIL_BENCH_LOG");
                tokio::spawn(async move { tokio::io::copy(&mut log, &mut file).await });
            }
            None => {
                tokio::spawn(async move { tokio::io::copy(&mut log, &mut tokio::io::sink()).await });
            }
        }
        Self { base_url: format!("http://{address}"), process }
    }

    /// The CPU time the server process has used so far, user and system (`/proc/<pid>/stat`).
    fn cpu_seconds(&self) -> f64 {
        let pid = self.process.id().expect("running");
        cpu_seconds_in(&format!("/proc/{pid}/stat"))
    }

    /// VmHWM: the most resident memory the server process ever had.
    fn peak_rss_mb(&self) -> f64 {
        let pid = self.process.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kilobytes: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        kilobytes / 1024.0
    }

    async fn stop(&mut self) {
        let _ = self.process.kill().await;
    }
}

/// Linux's USER_HZ, the unit of `/proc/<pid>/stat`'s times, on every architecture it runs on here.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

fn cpu_per_request(us: Option<f64>) -> String {
    us.map(|us| format!("{us:.1} µs")).unwrap_or_default()
}

/// The CPU time (user and system) of the calling thread: the client's, which runs on one thread.
fn this_thread_cpu_seconds() -> f64 {
    cpu_seconds_in("/proc/thread-self/stat")
}

/// The CPU time (user and system) in a `/proc/…/stat` file.
fn cpu_seconds_in(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields 14 and 15 (utime, stime), counted after the parenthesized command name.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name.split_whitespace().skip(11).take(2).filter_map(|n| n.parse::<u64>().ok()).sum();
    ticks as f64 / CLOCK_TICKS_PER_SECOND
}

fn per_request_us(cpu_seconds: f64, requests: u64) -> Option<f64> {
    (requests > 0).then(|| cpu_seconds * 1e6 / requests as f64)
}

fn print_table(report: &Report) {
    println!(
        "\nSigil benchmark: backend {}{}, concurrency {}, {} s per operation",
        report.backend,
        report.ratelimit_counters.as_ref().map(|url| format!(" (ratelimit counters in {url})")).unwrap_or_default(),
        report.concurrency,
        report.seconds_per_operation
    );
    println!(
        "{:<32} {:>9} {:>9} {:>9} {:>9} {:>11} {:>11}  unexpected",
        "operation", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "server CPU", "client CPU"
    );
    for result in std::iter::once(&report.http_floor).chain(&report.operations) {
        println!(
            "{:<32} {:>9.0} {:>9.2} {:>9.2} {:>9.2} {:>11} {:>11}  {:?}",
            result.operation,
            result.requests_per_second,
            result.p50_ms,
            result.p99_ms,
            result.p999_ms,
            cpu_per_request(result.server_cpu_us_per_request),
            cpu_per_request(result.client_cpu_us_per_request),
            result.unexpected_statuses
        );
    }
    println!("{:<32} {:>9.0}", "storage floor (inserts/s)", report.storage_floor_inserts_per_second);
    for (floor, per_second) in &report.database_floors {
        println!("{floor}: {per_second:.0}/s");
    }
    if !report.wrk.is_empty() {
        println!("\nThe same, measured by wrk -t1 -c{}:", report.concurrency);
        println!(
            "{:<32} {:>9} {:>9} {:>9} {:>11}  non-2xx, socket errors",
            "operation", "req/s", "p50 ms", "p99 ms", "server CPU"
        );
        for result in &report.wrk {
            println!(
                "{:<32} {:>9.0} {:>9.2} {:>9.2} {:>11}  {}, {}",
                result.operation,
                result.requests_per_second,
                result.p50_ms,
                result.p99_ms,
                cpu_per_request(result.server_cpu_us_per_request),
                result.non_2xx,
                result.socket_errors
            );
        }
    }
    println!("server peak RSS: {:.1} MB", report.server_peak_rss_mb);
    for (name, ratio) in &report.ratios {
        println!("{name}: {ratio:.2}x");
    }
}
