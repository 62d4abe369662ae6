//! `GET /v2/readiness`: 200 while the database answers, 503 within its bound when it does not, and 200 again
//! once it does; `/v2/liveness` answers 200 throughout.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::database_outage::behind_a_proxy;
use crate::harness::{Backend, SigilProcess, TestDatabase, TestServer};

crate::backend_tests!(readiness_is_200_while_the_database_answers);

/// `sigil healthcheck --url URL`: whether it exited 0, and what it said on stderr.
async fn healthcheck(url: &str) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["healthcheck", "--url", url])
        .output()
        .await
        .expect("runs");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_1_when_no_server_answers_or_the_url_is_wrong() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    let (checked, stderr) = healthcheck(&format!("http://{unused}")).await;
    assert!(!checked && stderr.contains("could not be asked"), "{stderr}");
    let (checked, stderr) = healthcheck("https://127.0.0.1:1").await;
    assert!(!checked && stderr.contains("only http://"), "{stderr}");
}

async fn readiness_is_200_while_the_database_answers(server: TestServer) {
    let response = reqwest::get(format!("{}/v2/readiness", server.base_url)).await.expect("answers");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["data"]["message"], "OK");
    assert!(body["meta"]["requestId"].as_str().is_some_and(|id| id.starts_with("req_")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_503_within_its_bound_while_postgres_is_silent_and_liveness_stays_200() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else { return };
    let (proxied, proxy) = behind_a_proxy(&database.url()).await;
    let node = SigilProcess::start(&proxied).await;
    let probe = |path: &'static str| {
        let url = format!("{}{path}", node.base_url);
        async move {
            let started = Instant::now();
            let response = reqwest::get(url).await.expect("the node answers");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON"), started.elapsed())
        }
    };
    assert_eq!(probe("/v2/readiness").await.0, 200);
    assert_eq!(healthcheck(&node.base_url).await, (true, String::new()), "sigil healthcheck: ready");
    proxy.go_silent();
    let (checked, stderr) = healthcheck(&node.base_url).await;
    assert!(!checked && stderr.contains("503"), "sigil healthcheck: not ready: {stderr}");
    let (status, body, took) = probe("/v2/readiness").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["error"]["type"],
        "https://unkey.com/docs/api-reference/errors-v2/unkey/application/service_unavailable"
    );
    assert!(took < Duration::from_secs(4), "readiness took {took:?}");
    assert_eq!(probe("/v2/liveness").await.0, 200, "a node whose database is away is still alive");
    proxy.restore();
    let started = Instant::now();
    while probe("/v2/readiness").await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(15), "readiness never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    node.kill().await;
}
