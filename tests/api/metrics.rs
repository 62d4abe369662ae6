//! `GET /metrics`: counters move by exactly what was sent.

use futures::future::join_all;
use serde_json::json;

use crate::harness::TestServer;

crate::backend_tests!(
    the_conflict_counter_moves_by_exactly_the_conflicts_sent,
    requests_replays_and_key_reuse_are_counted,
    identity_reads_from_memory_and_from_the_database_are_counted,
    connection_waits_and_queues_are_shown,
);

/// The value of the sample `name{labels}` (labels as rendered), 0 when absent.
pub async fn sample(base_url: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{base_url}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.parse().unwrap())
}

/// The conflict counter of `type` on createIdentity in the workspace of the server's admin key.
async fn conflicts(server: &TestServer, r#type: &str) -> f64 {
    let workspace =
        server.store.find_workspace(crate::harness::WORKSPACE).await.unwrap().expect("the admin key's workspace");
    let workspace = workspace.as_str();
    let series = format!(
        r#"sigil_conflicts_total{{type="{}",operation="/v2/identities.createIdentity",workspace="{workspace}"}}"#,
        r#type
    );
    sample(&server.base_url, &series).await
}

const ALREADY_EXISTS: &str = "unkey/data/identity_already_exists";

async fn the_conflict_counter_moves_by_exactly_the_conflicts_sent(server: TestServer) {
    let key = server.admin_key().await;
    server.create_identity(&key, json!({"externalId": "taken"})).await;
    let before = conflicts(&server, ALREADY_EXISTS).await;
    let duplicates = (0..7).map(|_| server.call("identities.createIdentity", &key, json!({"externalId": "taken"})));
    assert!(join_all(duplicates).await.iter().all(|r| r.status == 409));
    assert_eq!(conflicts(&server, ALREADY_EXISTS).await - before, 7.0);
    server.create_identity(&key, json!({"externalId": "free"})).await;
    assert_eq!(conflicts(&server, ALREADY_EXISTS).await - before, 7.0, "a success is no conflict");
}

async fn requests_replays_and_key_reuse_are_counted(server: TestServer) {
    let key = server.admin_key().await;
    let created = r#"sigil_http_requests_total{operation="/v2/identities.createIdentity",status="200"}"#;
    let reused = "sigil/idempotency/key_reused";
    let body = r#"{"externalId":"u"}"#;
    for _ in 0..3 {
        server.call_idempotent("identities.createIdentity", &key, "k", body).await;
    }
    server.call_idempotent("identities.createIdentity", &key, "k", r#"{"externalId":"v"}"#).await;
    assert_eq!(sample(&server.base_url, created).await, 3.0, "replays are answered requests too");
    assert_eq!(sample(&server.base_url, "sigil_idempotent_replays_total").await, 2.0);
    assert_eq!(conflicts(&server, reused).await, 1.0);
    let latency = r#"sigil_http_request_duration_seconds_count{operation="/v2/identities.createIdentity"}"#;
    assert_eq!(sample(&server.base_url, latency).await, 4.0);
}

async fn identity_reads_from_memory_and_from_the_database_are_counted(server: TestServer) {
    let (hits, misses) = ("sigil_identity_cache_hits_total", "sigil_identity_cache_misses_total");
    assert_eq!(sample(&server.base_url, "sigil_identity_cache_serving").await, 1.0);
    let key = server.admin_key().await;
    let id = server.create_identity(&key, json!({"externalId": "read_twice"})).await;
    let (hits_before, misses_before) = (sample(&server.base_url, hits).await, sample(&server.base_url, misses).await);
    for _ in 0..2 {
        assert_eq!(server.call("identities.getIdentity", &key, json!({"identity": id})).await.status, 200);
    }
    assert_eq!(sample(&server.base_url, misses).await - misses_before, 1.0, "the first read goes to the database");
    assert_eq!(sample(&server.base_url, hits).await - hits_before, 1.0, "the second is answered from memory");
}

async fn connection_waits_and_queues_are_shown(server: TestServer) {
    let waits = "sigil_database_connection_wait_seconds_count";
    let key = server.admin_key().await;
    let before = sample(&server.base_url, waits).await;
    server.create_identity(&key, json!({"externalId": "waited"})).await;
    assert!(sample(&server.base_url, waits).await > before, "a create waits for a connection, however briefly");
    let text = reqwest::get(format!("{}/metrics", server.base_url)).await.unwrap().text().await.unwrap();
    let queues: Vec<&str> = text.lines().filter(|line| line.starts_with("sigil_database_queued{")).collect();
    assert!(!queues.is_empty(), "{text}");
    assert!(queues.iter().all(|line| line.ends_with(" 0")), "nothing waits once the answer came: {queues:?}");
}
