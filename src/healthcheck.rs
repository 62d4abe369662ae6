//! `sigil healthcheck`: asks a server's `/v2/readiness` and succeeds only on its 200, for container images
//! without curl. The request is one HTTP/1.1 GET through hyper's connection API.

use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::http::{Request, StatusCode, Uri, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Longer than readiness's own bound on the database (2 s), so that a slow database answers 503 in time.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

pub async fn healthcheck(base_url: &str) -> anyhow::Result<()> {
    let uri: Uri = format!("{}/v2/readiness", base_url.trim_end_matches('/'))
        .parse()
        .with_context(|| format!("{base_url} is no URL"))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http"),
        "{base_url}: only http:// URLs (run the check beside the server)"
    );
    let authority = uri.authority().context("the URL names no host")?.clone();
    let status = tokio::time::timeout(ANSWER_WITHIN, async {
        let port = authority.port_u16().unwrap_or(80);
        // An IPv6 host comes in brackets ([::1]), which the socket address must not have.
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let stream = TcpStream::connect((host, port)).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = Request::get(uri.path()).header(header::HOST, authority.as_str()).body(Empty::<Bytes>::new())?;
        anyhow::Ok(sender.send_request(request).await?.status())
    })
    .await
    .with_context(|| format!("{uri} did not answer within {} s", ANSWER_WITHIN.as_secs()))?
    .with_context(|| format!("{uri} could not be asked"))?;
    anyhow::ensure!(status == StatusCode::OK, "{uri} answered {status}: not ready");
    Ok(())
}
