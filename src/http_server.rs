//! Serving HTTP with the bounds `axum::serve` lacks: a cap on open connections, a deadline for a request's
//! headers and for a client to take in an answer, and a stop that always ends.
//!
//! On the stop signal the server stops accepting and lets every connection finish its request in flight.
//! Connections with none (idle, or still sending a request's head or body) are not waited for: once no
//! request is in flight the process goes, and in any case after the grace period, whatever clients do.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;

use crate::InFlight;

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; past it, new ones wait in the kernel's accept queue.
    pub max_connections: usize,
    /// How long a client may take to send a request's head.
    pub header_read_timeout: Duration,
    /// How long an answer may wait for a client to take in any of it.
    pub write_stall_timeout: Duration,
    /// How long a stop waits for requests in flight.
    pub shutdown_grace: Duration,
}

/// The largest request head read, and the most a connection buffers of what it reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How often a stopping server looks whether requests are still in flight.
const IDLE_CHECK_EVERY: Duration = Duration::from_millis(50);
/// Once no request is in flight, this long for the last answers to be written out.
const LAST_WRITES: Duration = Duration::from_millis(200);

pub async fn serve(
    listener: TcpListener,
    app: Router,
    in_flight: InFlight,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // HTTP/1 only: deciding between HTTP/1 and HTTP/2 reads the first bytes with no deadline, and HTTP/2
    // connections have no header timeout; Unkey's clients speak HTTP/1.1.
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    // A head may be at most 64 KiB (hyper's default, about 400 KB, is a 4,096 connections' 1.6 GB before any
    // body): larger heads, like more than 100 headers or a malformed request line, get hyper's own bare 431
    // or 400, before any route, id or log line exists.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, say: waiting lets connections close.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // hyper has no write timeout: a client that sends requests and never reads their answers would hold
        // its connection, and one of `max_connections`, for as long as the process runs.
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.write_stall_timeout));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(Box::pin(stream)), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("stopping: finishing the requests in flight");
    // Idle twice, LAST_WRITES apart: a request whose body was still arriving at the first look, or an answer
    // still being written, has had its time.
    let no_request_in_flight = async {
        loop {
            while !in_flight.is_idle() {
                tokio::time::sleep(IDLE_CHECK_EVERY).await;
            }
            tokio::time::sleep(LAST_WRITES).await;
            if in_flight.is_idle() {
                return;
            }
        }
    };
    tokio::select! {
        () = graceful.shutdown() => {}
        () = no_request_in_flight => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "stopping without waiting longer for requests in flight");
        }
    }
}
