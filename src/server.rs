//! Running the service and minting root keys: what the CLI's subcommands do.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::{CreateRootKeyArgs, RevokeRootKeyArgs, ServeArgs};
use crate::domain::permission::{Grant, all_permissions};
use crate::domain::root_key;
use crate::domain::workspace::WorkspaceId;
use crate::store::{self, Store};
use crate::{AppState, app, http_server};

const FIRST_WORKSPACE: &str = "default";

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    crate::error::set_error_docs_base(&args.error_docs_base);
    // Counted in whole KiB: the budget's, rounded down, must hold one largest body's, rounded up.
    anyhow::ensure!(
        args.max_body_memory_bytes / 1024 >= args.max_body_bytes.div_ceil(1024),
        "--max-body-memory-bytes ({}) must hold at least one body of --max-body-bytes ({})",
        args.max_body_memory_bytes,
        args.max_body_bytes
    );
    let idempotency = args.idempotency()?;
    let store = store::open_for_serving(&args.database.url).await?;
    create_first_workspace(&*store).await?;
    if let Some(record_key) = &idempotency.record_key {
        check_record_key(&*store, record_key).await?;
    }
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "sigil is serving");
    let ratelimits: Option<Arc<dyn store::Ratelimits>> = match &args.ratelimit_counters {
        Some(url) => Some(Arc::new(store::RedisCounters::connect(url).await.context("--ratelimit-counters")?)),
        None => None,
    };
    let state = AppState::new(store.clone(), args.limits(), idempotency, ratelimits);
    let in_flight = state.in_flight.clone();
    let purge = tokio::spawn(purge_what_has_ended(store.clone()));
    http_server::serve(listener, app(state), in_flight, args.connection_limits(), shutdown_signal()).await;
    purge.abort();
    if tokio::time::timeout(store::DATABASE_DEADLINE, store.close()).await.is_err() {
        tracing::warn!("the database did not answer while closing; stopping anyway");
    }
    tracing::info!("sigil stopped");
    Ok(())
}

/// The first node started with a record key stores its check value; a node given another key refuses to
/// start, since createKey retries recorded under one key answer 503 on a node with the other.
async fn check_record_key(store: &dyn Store, record_key: &crate::sealed_secrets::RecordKey) -> anyhow::Result<()> {
    let stored = store.setting_or(RECORD_KEY_CHECK, record_key.check_value()).await?;
    anyhow::ensure!(
        stored == record_key.check_value(),
        "this database's createKey records are sealed under another record key: give every node the same \
         SIGIL_RECORD_KEY. To change the key, stop every node, delete the setting ({RECORD_KEY_CHECK:?} in table \
         settings), and start them with the new one; retries of createKeys recorded under the old key then answer \
         503 until their records expire (24 h)."
    );
    Ok(())
}

const RECORD_KEY_CHECK: &str = "record_key_check";

/// An empty database gets workspace "default" and one all-permissions root key, printed once. When several
/// nodes start on one empty database, only the one whose insert created the workspace prints a key.
async fn create_first_workspace(store: &dyn Store) -> anyhow::Result<()> {
    if store.has_workspaces().await? {
        return Ok(());
    }
    let (workspace, created) = store.ensure_workspace(FIRST_WORKSPACE).await?;
    if created {
        let key = mint_root_key(store, &workspace, vec![all_permissions(&workspace)]).await?;
        println!("Created workspace '{FIRST_WORKSPACE}' with an all-permissions root key. It is shown only now:");
        println!("{key}");
    }
    Ok(())
}

pub async fn create_root_key(args: CreateRootKeyArgs) -> anyhow::Result<()> {
    let store = store::open(&args.database.url).await?;
    // Checked before anything is written: a refused key creates no workspace either. A workspace that does
    // not exist yet has no id a URN could name, so only tuples can be granted in it.
    let existing = store.find_workspace(&args.workspace).await?;
    for permission in &args.permissions {
        let refusal = match &existing {
            Some(workspace) => {
                Grant::parse_for(permission, workspace, &args.workspace).err().map(|invalid| invalid.to_string())
            }
            None if permission.starts_with("unkey:") => Some(format!(
                "{permission:?}: workspace {:?} does not exist yet, so no URN can name its id. Mint its first key \
                 without --permission or with tuples such as identity.*.read_identity, then use the id.",
                args.workspace
            )),
            None => {
                let placeholder = WorkspaceId::from_stored(String::new());
                Grant::parse_for(permission, &placeholder, &args.workspace).err().map(|invalid| invalid.to_string())
            }
        };
        if let Some(refusal) = refusal {
            store.close().await;
            anyhow::bail!("cannot grant {refusal}");
        }
    }
    let (workspace, _) = store.ensure_workspace(&args.workspace).await?;
    let permissions = if args.permissions.is_empty() { vec![all_permissions(&workspace)] } else { args.permissions };
    let key = mint_root_key(&*store, &workspace, permissions).await?;
    store.close().await;
    println!("{key}");
    Ok(())
}

/// Reads the key from standard input rather than the command line, where `ps` and shell history would show
/// it.
pub async fn revoke_root_key(args: RevokeRootKeyArgs) -> anyhow::Result<()> {
    let mut key = String::new();
    std::io::stdin().read_line(&mut key).context("reading the root key from standard input")?;
    let key = key.trim();
    anyhow::ensure!(!key.is_empty(), "give the root key to revoke on standard input");
    let store = store::open(&args.database.url).await?;
    let revoked = store.revoke_root_key(&root_key::hash(key)).await;
    store.close().await;
    anyhow::ensure!(revoked?, "no root key has this value (was it revoked already?)");
    println!("revoked");
    Ok(())
}

/// Stores only the key's hash and hands the plaintext back to be shown once.
pub async fn mint_root_key(
    store: &dyn Store,
    workspace: &WorkspaceId,
    permissions: Vec<String>,
) -> anyhow::Result<String> {
    let key = root_key::generate();
    store.create_root_key(workspace, &root_key::hash(&key), &permissions).await?;
    Ok(key)
}

const PURGE_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Expired idempotency records are never replayed, and ended ratelimit windows never counted again; this
/// only keeps their tables small. Each batch is one bounded statement, so a purge of millions of rows lets
/// writes pass between its batches instead of holding the writer.
async fn purge_what_has_ended(store: Arc<dyn Store>) {
    let mut every = tokio::time::interval(PURGE_INTERVAL);
    loop {
        every.tick().await;
        purge_in_batches("expired idempotency keys", || store.purge_expired_idempotency_keys()).await;
        purge_in_batches("ended ratelimit counters", || store.purge_ended_ratelimit_counters(store::now_ms())).await;
    }
}

/// Runs `purge_batch` until a batch comes back short of [`store::PURGE_BATCH`].
async fn purge_in_batches<Purge, Batch>(what: &str, purge_batch: Purge)
where
    Purge: Fn() -> Batch,
    Batch: std::future::Future<Output = Result<u64, store::StoreError>>,
{
    let mut purged = 0;
    loop {
        match purge_batch().await {
            Ok(batch) => {
                purged += batch;
                if batch < store::PURGE_BATCH {
                    break;
                }
                tokio::task::yield_now().await;
            }
            Err(error) => {
                tracing::warn!(error = %error, "could not purge {what}");
                break;
            }
        }
    }
    tracing::debug!(purged, "purged {what}");
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
