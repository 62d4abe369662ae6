//! Clients that never finish: a request's head or body sent slowly, or half of it and then nothing. They
//! hold a connection each, never a slot of `--max-in-flight`, are cut off after `--read-timeout-ms`, and
//! cannot keep a stopping server alive.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Backend, SigilProcess, TestDatabase, admin_key};
use crate::multi_node::call;

/// Opens a connection to `node` and sends `head`.
async fn send_head(node: &SigilProcess, head: &str) -> TcpStream {
    let address = node.base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("send");
    stream
}

const HALF_A_HEAD: &str = "POST /v2/identities.getIdentity HTTP/1.1\r\nHost: sigil\r\n";
const HEAD_OF_A_LONG_BODY: &str = "POST /v2/identities.createIdentity HTTP/1.1\r\nHost: sigil\r\n\
    Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"externalId\":\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_promptly_while_clients_hold_half_a_request() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("SQLite");
    let node = SigilProcess::start(&database.url()).await;
    let _half_head = send_head(&node, HALF_A_HEAD).await;
    let _half_body = send_head(&node, HEAD_OF_A_LONG_BODY).await;
    let _idle = send_head(&node, "").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(3), node.terminate()).await;
    assert_eq!(stopped.ok(), Some(true), "SIGTERM must end the process with status 0 within 3 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_take_no_slot_from_other_requests() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("SQLite");
    let url = database.url();
    let key = admin_key(&url).await;
    let node = SigilProcess::start_with(&url, &["--max-in-flight", "4"]).await;
    let mut uploads = Vec::new();
    for _ in 0..16 {
        uploads.push(send_head(&node, HEAD_OF_A_LONG_BODY).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 0..20 {
        let (status, body) = call(&node, &key, "createIdentity", json!({"externalId": format!("user_{n}")})).await;
        assert_eq!(status, 200, "16 slow uploads against 4 slots: {body}");
    }
    drop(uploads);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_read_timeout_is_408_and_a_head_is_cut_off() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("SQLite");
    let node = SigilProcess::start_with(&database.url(), &["--read-timeout-ms", "1000"]).await;

    let mut slow_body = send_head(&node, HEAD_OF_A_LONG_BODY).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0_u8; 4096];
        loop {
            let read = slow_body.read(&mut buffer).await.expect("read");
            answer.extend_from_slice(&buffer[..read]);
            if read == 0 || String::from_utf8_lossy(&answer).contains("}}") {
                return;
            }
        }
    });
    read.await.expect("answered within the read timeout, not hanging");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("user/bad_request/request_timeout"), "{answer}");

    let mut half_head = send_head(&node, HALF_A_HEAD).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buffer = [0_u8; 4096];
        while matches!(half_head.read(&mut buffer).await, Ok(read) if read > 0) {}
    });
    closed.await.expect("a head not finished within the read timeout loses its connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_their_answers_lose_their_connections() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("SQLite");
    let node = SigilProcess::start_with(&database.url(), &["--max-connections", "2", "--read-timeout-ms", "500"]).await;
    let address = node.base_url.trim_start_matches("http://").parse().expect("an address");
    // Two clients take every connection, each asking for 300 copies of the 68 KB OpenAPI document, far more
    // than the socket buffers hold, and never read a byte.
    let mut never_reading = Vec::new();
    for _ in 0..2 {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(4096).expect("a small receive buffer");
        let mut stream = socket.connect(address).await.expect("connect");
        let requests = "GET /openapi.json HTTP/1.1\r\nHost: sigil\r\n\r\n".repeat(300);
        stream.write_all(requests.as_bytes()).await.expect("sent");
        never_reading.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let liveness = reqwest::Client::new()
        .get(format!("{}/v2/liveness", node.base_url))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .expect("a connection freed by the clients that stopped reading");
    assert_eq!(liveness.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_over_64_kib_is_refused_and_the_server_goes_on() {
    let database = TestDatabase::create(Backend::Sqlite).await.expect("SQLite");
    let node = SigilProcess::start(&database.url()).await;
    let huge = format!("GET /v2/liveness HTTP/1.1\r\nHost: sigil\r\nX-Padding: {}\r\n\r\n", "a".repeat(100 * 1024));
    let mut stream = send_head(&node, &huge).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
    let _ = read.await.expect("answered or closed within 5 s, not held");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let liveness = reqwest::get(format!("{}/v2/liveness", node.base_url)).await.expect("answered");
    assert_eq!(liveness.status(), 200);
}
