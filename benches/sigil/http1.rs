//! The benchmark's own client: one keep-alive HTTP/1.1 connection per worker, as each of wrk's is, through
//! hyper alone. reqwest on top of it (its pool, URL parsing, redirect and header handling) took 26-35 µs of
//! CPU per request on this 2-core machine, more than the server's HTTP floor, so the floor it measured was
//! its own and every ratio to it was the client's.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

/// Where requests go, and as whom.
pub struct Target {
    address: String,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
}

impl Target {
    /// `base_url` is `http://host:port`; `key` a root key, sent as a bearer token.
    pub fn new(base_url: &str, key: Option<&str>) -> Self {
        let address = base_url.trim_start_matches("http://").to_owned();
        let host = HeaderValue::from_str(&address).expect("host header");
        let authorization = key.map(|key| HeaderValue::from_str(&format!("Bearer {key}")).expect("bearer header"));
        Self { address, host, authorization }
    }
}

/// One worker's connection, opened again after the server closed it.
pub struct Connection<'t> {
    target: &'t Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl<'t> Connection<'t> {
    pub fn new(target: &'t Target) -> Self {
        Self { target, sender: None }
    }

    /// POSTs `body` as JSON to `path` and reads the whole response; its status, or 0 when the request
    /// failed (the connection is then opened afresh for the next one).
    pub async fn post(&mut self, path: &str, body: Vec<u8>) -> u16 {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.target.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(authorization) = &self.target.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let request = request.body(Full::new(Bytes::from(body))).expect("request");
        let status = match self.ready_sender().await {
            Some(sender) => match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    response.into_body().collect().await.map_or(0, |_| status)
                }
                Err(_) => 0,
            },
            None => 0,
        };
        if status == 0 {
            self.sender = None;
        }
        status
    }

    async fn ready_sender(&mut self) -> Option<&mut SendRequest<Full<Bytes>>> {
        if self.sender.is_none() {
            self.sender = connect(&self.target.address).await;
        }
        let sender = self.sender.as_mut()?;
        sender.ready().await.ok()?;
        Some(sender)
    }
}

async fn connect(address: &str) -> Option<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    // The connection runs beside its worker on this thread, until the sender is dropped.
    tokio::spawn(connection);
    Some(sender)
}
