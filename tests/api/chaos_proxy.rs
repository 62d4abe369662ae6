//! A TCP proxy between Sigil and PostgreSQL that can go silent: it stops forwarding bytes without closing
//! any connection, as a failover, a NAT that dropped its state or a network partition does. crates.io's
//! test suite has one of the same name, the model for this one.
//!
//! [`ChaosProxy::go_silent`] silences every connection open at that moment for good (their peer is gone,
//! as after a failover), and every connection opened while silent. [`ChaosProxy::restore`] lets new
//! connections through again. [`ChaosProxy::slow_down`] makes the database answer late but answer, and
//! [`ChaosProxy::connections_opened`] counts the connections Sigil opened through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

#[derive(Default)]
struct Switch {
    silent: AtomicBool,
    /// Bumped by every [`ChaosProxy::go_silent`]: a connection of an older generation stays silent.
    generation: AtomicU64,
    /// How long the database's bytes wait before they are passed on, in milliseconds.
    delay_ms: AtomicU64,
    opened: AtomicU64,
}

pub struct ChaosProxy {
    pub address: String,
    switch: Arc<Switch>,
    accepting: JoinHandle<()>,
}

impl ChaosProxy {
    /// A proxy on a free loopback port forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let address = listener.local_addr().expect("address").to_string();
        let switch = Arc::new(Switch::default());
        let accepting = tokio::spawn(accept(listener, upstream.to_owned(), Arc::clone(&switch)));
        Self { address, switch, accepting }
    }

    pub fn go_silent(&self) {
        self.switch.silent.store(true, Ordering::SeqCst);
        self.switch.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.switch.silent.store(false, Ordering::SeqCst);
    }

    /// Every answer of the database, on every connection, arrives `by` later from now on.
    pub fn slow_down(&self, by: Duration) {
        self.switch.delay_ms.store(u64::try_from(by.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// How many connections were opened through the proxy so far.
    pub fn connections_opened(&self) -> u64 {
        self.switch.opened.load(Ordering::SeqCst)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        // Aborting the acceptor drops its JoinSet, which aborts every connection's task and closes its sockets.
        self.accepting.abort();
    }
}

async fn accept(listener: TcpListener, upstream: String, switch: Arc<Switch>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else { return };
        switch.opened.fetch_add(1, Ordering::SeqCst);
        let generation = switch.generation.load(Ordering::SeqCst);
        let born_silent = switch.silent.load(Ordering::SeqCst);
        let (upstream, switch, timing) = (upstream.clone(), Arc::clone(&switch), Arc::clone(&switch));
        connections.spawn(async move {
            let alive = move || !born_silent && switch.generation.load(Ordering::SeqCst) == generation;
            if !alive() {
                return hold_open(client).await;
            }
            let Ok(server) = TcpStream::connect(&upstream).await else { return };
            let (client_reads, client_writes) = client.into_split();
            let (server_reads, server_writes) = server.into_split();
            let no_delay = || Duration::ZERO;
            let delay = move || Duration::from_millis(timing.delay_ms.load(Ordering::SeqCst));
            tokio::join!(
                forward(client_reads, server_writes, alive.clone(), no_delay),
                forward(server_reads, client_writes, alive, delay)
            );
        });
        // Finished connections' tasks are reaped as new ones arrive.
        while connections.try_join_next().is_some() {}
    }
}

/// Copies bytes, each read `delay()` late, while `alive`; once it is not, swallows everything and closes
/// nothing, for ever.
async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    alive: impl Fn() -> bool,
    delay: impl Fn() -> Duration,
) {
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await;
        if !alive() {
            return hold_open((from, to)).await;
        }
        match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(read) => {
                let delay = delay();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if to.write_all(&buffer[..read]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Keeps `sockets` open and unanswered until the proxy is dropped.
async fn hold_open<T>(sockets: T) {
    std::future::pending::<()>().await;
    drop(sockets);
}
