//! verifyKey with its ratelimit counters in Redis (`--ratelimit-counters`): as exact as in the database,
//! across nodes, all or nothing across limits; a node that cannot reach Redis does not start, and one whose
//! Redis goes silent answers 503 and is unready until it answers again.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::chaos_proxy::ChaosProxy;
use crate::harness::{Backend, SigilProcess, TestDatabase, refused_to_start};
use crate::keys::two_nodes::TwoNodes;
use crate::keys::{COUNTED_WINDOW_MS, start_well_inside_a_counted_window};

/// Redis runs beside PostgreSQL on every development and CI machine (`SIGIL_TEST_REDIS_URL` overrides it).
fn redis_url() -> String {
    std::env::var("SIGIL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Whether Redis answers; when it does not, a failure under `CI=true`, else a notice and a skip.
async fn redis_is_up(url: &str) -> bool {
    let address = url.trim_start_matches("redis://").trim_end_matches('/');
    match tokio::net::TcpStream::connect(address).await {
        Ok(_) => true,
        Err(error) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("CI=true and Redis at {url} is unreachable ({error}): the Redis counters' tests must run in CI")
        }
        Err(error) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\nSKIPPING a Redis counters test: Redis at {url} is unreachable ({error})."
            );
            false
        }
    }
}

fn limit(name: &str, limit: i64) -> Value {
    json!({"name": name, "limit": limit, "duration": COUNTED_WINDOW_MS, "autoApply": true})
}

/// Two PostgreSQL nodes counting in the one Redis; `None` when Redis or PostgreSQL is down outside CI.
async fn nodes_counting_in_redis() -> Option<TwoNodes> {
    let redis = redis_url();
    if !redis_is_up(&redis).await {
        return None;
    }
    TwoNodes::start(&["--ratelimit-counters", redis.as_str()]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_counting_in_redis_give_exactly_an_identitys_limit_of_valid_verifications() {
    let Some(nodes) = nodes_counting_in_redis().await else { return };
    nodes.give_exactly_an_identitys_limit_of_valid_verifications().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_counters_take_from_all_limits_or_from_none() {
    let Some(nodes) = nodes_counting_in_redis().await else { return };
    start_well_inside_a_counted_window().await;
    let (_, key) = nodes.keys_of_one_identity(json!([limit("minute", 3), limit("burst", 2)]), 1).await.remove(0);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let data = nodes.call(&nodes.first, "keys.verifyKey", json!({"key": key})).await["data"].clone();
        let remaining = |name: &str| {
            data["ratelimits"].as_array().expect("checked").iter().find(|l| l["name"] == name).expect(name)["remaining"]
                .clone()
        };
        seen.push((data["code"].clone(), remaining("minute"), remaining("burst")));
    }
    assert_eq!(
        seen,
        [
            (json!("VALID"), json!(2), json!(1)),
            (json!("VALID"), json!(1), json!(0)),
            (json!("RATE_LIMITED"), json!(1), json!(0)),
        ],
        "the denied verification took nothing from the minute limit"
    );
    let inline = json!({"key": key, "ratelimits": [{"name": "burst", "cost": 0}]});
    let data = nodes.call(&nodes.second, "keys.verifyKey", inline).await["data"].clone();
    assert_eq!(data["code"], "VALID", "a cost of 0 fits a spent limit, on the other node too: {data}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_reach_its_redis_does_not_start() {
    let Some(database) = TestDatabase::create(Backend::Sqlite).await else { return };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let unreachable = format!("redis://{}", closed.local_addr().expect("address"));
    drop(closed);
    let args = ["--database", &database.url(), "--ratelimit-counters", &unreachable];
    let stderr = refused_to_start(&args, &[]).await;
    assert!(stderr.contains("--ratelimit-counters"), "{stderr}");
}

/// A Redis that goes silent without closing costs verifications a 503 within the deadline and makes the
/// node unready; once it answers again, so does the node, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_costs_503s_and_unreadiness_until_it_answers_again() {
    let redis = redis_url();
    if !redis_is_up(&redis).await {
        return;
    }
    let Some(database) = TestDatabase::create(Backend::Sqlite).await else { return };
    let proxy = ChaosProxy::start(redis.trim_start_matches("redis://").trim_end_matches('/')).await;
    let proxied = format!("redis://{}", proxy.address);
    let node = SigilProcess::start_with(&database.url(), &["--ratelimit-counters", &proxied]).await;
    let root_key = crate::harness::admin_key(&database.url()).await;
    let call = |operation: &'static str, body: Value| {
        let (node, root_key) = (&node, &root_key);
        async move {
            let started = Instant::now();
            let response = node.call(operation, root_key, body).await;
            (response.status, response.body, started.elapsed())
        }
    };
    let ready = || async { reqwest::get(format!("{}/v2/readiness", node.base_url)).await.expect("answers").status() };
    let api = call("apis.createApi", json!({"name": "production"})).await.1;
    let body = json!({"apiId": api["data"]["apiId"], "ratelimits": [limit("requests", 100)]});
    let key = call("keys.createKey", body).await.1["data"]["key"].clone();
    assert_eq!(call("keys.verifyKey", json!({"key": key})).await.1["data"]["code"], "VALID");
    assert_eq!(ready().await, 200);

    proxy.go_silent();
    let (status, body, took) = call("keys.verifyKey", json!({"key": key})).await;
    assert_eq!(status, 503, "{body}");
    assert!(took < Duration::from_secs(8), "answered after {took:?}");
    assert_eq!(ready().await, 503);

    proxy.restore();
    let started = Instant::now();
    while ready().await != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "the node never reached Redis again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(call("keys.verifyKey", json!({"key": key})).await.1["data"]["code"], "VALID");
    node.kill().await;
}
