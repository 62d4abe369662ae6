//! A flood of maximum-size unauthenticated bodies leaves the server's memory bounded and its answers
//! prompt: memory per request is a small multiple of its bytes, whatever their shape.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Backend, SigilProcess, TestDatabase, admin_key};

const PEAK_RSS_BOUND: u64 = 300 * 1024 * 1024;
const PROMPT: Duration = Duration::from_secs(2);

/// `{"externalId":"a","meta":{"k":[0,0,…]}}` of about `bytes` bytes: the shape that costs most per byte.
fn wide_body(bytes: usize) -> axum::body::Bytes {
    let mut body = String::with_capacity(bytes + 64);
    body.push_str(r#"{"externalId":"a","meta":{"k":["#);
    while body.len() < bytes {
        body.push_str("0,");
    }
    body.push_str("0]}}");
    axum::body::Bytes::from(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_huge_unauthenticated_bodies_keeps_memory_bounded_and_reads_prompt() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("SQLite");
    let url = database.url();
    let key = admin_key(&url).await;
    let node = SigilProcess::start(&url).await;
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/v2/identities.createIdentity", node.base_url))
        .bearer_auth(&key)
        .json(&json!({"externalId": "legit"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(created.status(), 200);

    let (huge, large) = (wide_body(10 * 1024 * 1024), wide_body(1024 * 1024));
    let mut flood = tokio::task::JoinSet::new();
    for body in std::iter::repeat_n(huge, 32).chain(std::iter::repeat_n(large, 32)) {
        let (client, url) = (client.clone(), format!("{}/v2/identities.createIdentity", node.base_url));
        flood.spawn(async move {
            let sent = client.post(url).header("content-type", "application/json").body(body).send().await;
            sent.map(|response| response.status().as_u16()).unwrap_or(0)
        });
    }
    let started = tokio::time::Instant::now();
    let read = client
        .post(format!("{}/v2/identities.getIdentity", node.base_url))
        .bearer_auth(&key)
        .json(&json!({"identity": "legit"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(read.status(), 200);
    assert!(started.elapsed() < PROMPT, "a read during the flood took {:?}", started.elapsed());
    for status in flood.join_all().await {
        assert!(matches!(status, 0 | 400 | 413), "a hostile body got {status}");
    }
    let peak = node.peak_rss_bytes();
    assert!(peak < PEAK_RSS_BOUND, "peak RSS {} MB", peak / 1024 / 1024);
    eprintln!("peak RSS under the flood: {} MB", peak / 1024 / 1024);
    node.kill().await;
}

/// A list page of identities with meta near the 1 MiB cap reads only what the page carries (4 MiB of meta,
/// `PAGE_BYTES`) in full: eight such pages at once, over and over, keep the process's peak RSS bounded.
/// Read whole, each page of 100 cost some 200 MB.
async fn list_pages_of_large_metas_keep_memory_bounded(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let url = database.url();
    let key = admin_key(&url).await;
    let node = SigilProcess::start(&url).await;
    let client = reqwest::Client::new();
    let meta = json!({"blob": "x".repeat(1_000_000)});
    for n in 0..100 {
        let created = client
            .post(format!("{}/v2/identities.createIdentity", node.base_url))
            .bearer_auth(&key)
            .json(&json!({"externalId": format!("large_{n:03}"), "meta": meta}))
            .send()
            .await
            .expect("answers");
        assert_eq!(created.status(), 200);
    }
    for _ in 0..3 {
        let mut pages = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let request = client
                .post(format!("{}/v2/identities.listIdentities", node.base_url))
                .bearer_auth(&key)
                .json(&json!({"limit": 100}));
            pages.spawn(async move { request.send().await.expect("answers").json::<serde_json::Value>().await });
        }
        for page in pages.join_all().await {
            let page = page.expect("a JSON page");
            assert_eq!(page["data"].as_array().map(Vec::len), Some(5), "4 MiB of meta, then the cursor");
            assert_eq!(page["pagination"]["hasMore"], true);
        }
    }
    let peak = node.peak_rss_bytes();
    assert!(peak < LIST_PEAK_RSS_BOUND, "peak RSS {} MB", peak / 1024 / 1024);
    eprintln!("peak RSS with eight pages of large metas at once: {} MB", peak / 1024 / 1024);
    node.kill().await;
}

const LIST_PEAK_RSS_BOUND: u64 = 250 * 1024 * 1024;

crate::each_backend!(list_pages_of_large_metas_keep_memory_bounded);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_held_at_once_are_bounded_by_max_body_memory_bytes() {
    use tokio::io::AsyncWriteExt;
    let database = TestDatabase::create(Backend::Sqlite).await.expect("SQLite");
    let node = SigilProcess::start_with(&database.url(), &["--max-body-memory-bytes", "6291456"]).await;
    // One client sends 3.5 MiB of a 4 MiB body and stops: its buffer (4 MiB of the 6) stays held while it
    // might go on.
    let address = node.base_url.trim_start_matches("http://");
    let mut stalled = tokio::net::TcpStream::connect(address).await.expect("connect");
    let head = "POST /v2/identities.createIdentity HTTP/1.1\r\nHost: sigil\r\nContent-Type: application/json\r\n\
        Content-Length: 4194304\r\n\r\n";
    stalled.write_all(head.as_bytes()).await.expect("sent");
    stalled.write_all(&vec![b' '; 3_670_016]).await.expect("sent");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let client = reqwest::Client::new();
    let send = || {
        client
            .post(format!("{}/v2/identities.createIdentity", node.base_url))
            .json(&json!({"externalId": "x".repeat(3_000_000)}))
            .send()
    };
    let refused = send().await.expect("answered");
    assert_eq!(refused.status(), 503, "no memory is left for another 3 MB");
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.expect("JSON");
    assert!(body["error"]["type"].as_str().unwrap().ends_with("sigil/capacity/overloaded"), "{body}");
    let small = client
        .post(format!("{}/v2/identities.getIdentity", node.base_url))
        .json(&json!({"identity": "user_123"}))
        .send();
    assert_eq!(
        small.await.expect("answered").status(),
        400,
        "a small body still fits, read and refused for its missing key"
    );

    drop(stalled);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = send().await.expect("answered").status();
    assert_ne!(after, 503, "the stalled body's memory came back");
    assert_eq!(after, 400, "read, and refused for what it is");
}
