//! What PostgreSQL does its own way for identities: creates are group-committed (`create_groups.rs`), a
//! group's identities going in as one multi-row `INSERT … ON CONFLICT DO NOTHING`, so that PostgreSQL
//! parses, plans and flushes its WAL once for many creates; and a list page comes back as rows.

use std::collections::HashSet;
use std::sync::Arc;

use crate::domain::identity::{IdentityPageQuery, NewIdentity, replace_ratelimits};
use crate::domain::ids::new_id;
use crate::domain::workspace::WorkspaceId;
use crate::store::backend::{now_ms, transient_backoff};
use crate::store::identities::{
    INLINE_PAYLOAD_BYTES, IdentityBackend, ListedRow, identity_page, ratelimits_json, stored_ratelimits, to_json,
};
use crate::store::postgres::PostgresStore;
use crate::store::postgres::create_groups::{CreateGroups, CreateOutcome, CreateRequest};
use crate::store::postgres::kept_connections::KeptConnections;
use crate::store::{StoreError, within_deadline, within_deadline_at};

/// Most creates one group takes at once.
const MAX_GROUP: usize = 256;
/// Groups committing at once, each on a connection of its own; the rest of the pool serves everything else.
const GROUPS_IN_FLIGHT: usize = 4;

/// How often a create is tried when the identity it collided with was gone before it could be named. Each
/// such attempt means that another create and a delete of the same externalId committed in between, so only
/// a storm of both gets this far; with 3, 60 creates racing 60 deletes of one externalId failed one run in six.
const CREATE_ATTEMPTS: usize = 10;

/// Inserts a group of identities in one statement. Rows that collide with a live identity (or with an
/// earlier row of the same group) are skipped, and only the inserted ids come back.
const CREATE_IDENTITIES: &str = "INSERT INTO identities (id, workspace_id, external_id, meta, ratelimits, created_at) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
     ON CONFLICT DO NOTHING RETURNING id";
/// The live identities holding these externalIds, in any workspace: the caller keeps the (workspace,
/// externalId) pairs it asked for. Naming the workspace here would let PostgreSQL pick
/// `identities_live_by_workspace` and filter every identity of the workspace, which it did (150–300 ms per
/// group at 27k identities) while a freshly grown table had no statistics yet. On external_id alone, only
/// the live-externalId index applies.
const LIVE_IDENTITY_IDS: &str =
    "SELECT workspace_id, external_id, id FROM identities WHERE external_id = ANY($1) AND deleted_at IS NULL";

/// A list page as rows. (Built as one JSON value instead, as SQLite does, it was 25% slower here:
/// PostgreSQL's rows need no handoff between threads.)
const LIST_IDENTITIES: &str =
    concat!("SELECT i.id, i.external_id, i.meta, i.ratelimits, i.payload_bytes FROM ", identity_page!());

impl IdentityBackend for PostgresStore {
    async fn create_identity(&self, workspace: &WorkspaceId, new: &NewIdentity) -> Result<String, StoreError> {
        self.creates.create_identity(workspace, new).await
    }

    async fn list_identities(
        &self,
        workspace: &WorkspaceId,
        query: &IdentityPageQuery,
        before: Option<&str>,
    ) -> Result<Vec<ListedRow>, StoreError> {
        type Row = (String, String, Option<String>, Option<String>, i64);
        let rows: Vec<Row> = within_deadline(async {
            let mut connection = self.connections.acquire().await?;
            let rows = sqlx::query_as(LIST_IDENTITIES)
                .bind(workspace.as_str())
                .bind(query.cursor.as_deref())
                .bind(query.search_pattern.as_deref())
                .bind(query.limit.saturating_add(1))
                .bind(before)
                .bind(INLINE_PAYLOAD_BYTES)
                .fetch_all(&mut *connection)
                .await?;
            connection.finished();
            Ok(rows)
        })
        .await?;
        rows.into_iter()
            .map(|(id, external_id, meta, ratelimits, payload_bytes)| {
                let payload = match (meta, ratelimits) {
                    (Some(meta), Some(ratelimits)) => Some((meta, stored_ratelimits(&id, ratelimits)?)),
                    _ => None,
                };
                Ok(ListedRow { id, external_id, payload, payload_bytes })
            })
            .collect()
    }
}

/// The create groups of a store whose queries run on `connections`.
pub(super) fn create_groups(connections: Arc<KeptConnections>) -> CreateGroups {
    CreateGroups::start(MAX_GROUP, GROUPS_IN_FLIGHT, move |group, deadline| {
        create_identity_group(Arc::clone(&connections), group, deadline)
    })
}

/// Inserts the group without a transaction: every statement commits alone, so a create is decided for good
/// once the statement that stored it (or named who holds its externalId) returned, and a failure after that
/// fails only the creates still undecided. BEGIN and COMMIT around the group were two more round trips per
/// group, which cost the server a fifth of its CPU per create.
async fn create_identity_group(
    connections: Arc<KeptConnections>,
    group: Vec<CreateRequest>,
    deadline: tokio::time::Instant,
) -> Vec<CreateOutcome> {
    let mut outcomes: Vec<Option<CreateOutcome>> = group.iter().map(|_| None).collect();
    let failure = decide_creates(&connections, &group, &mut outcomes, deadline).await.err();
    let contended = || StoreError::Contended("the externalId was deleted and re-created concurrently");
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or_else(|| Err(failure.as_ref().map_or_else(contended, StoreError::same_kind))))
        .collect()
}

/// Decides what it can of `group` into `outcomes`: each create stored under a new id, or in conflict with the
/// live identity holding its externalId. When that identity was deleted before it could be named, the create
/// is tried again; so is one whose statement the database aborted to resolve a race.
async fn decide_creates(
    connections: &KeptConnections,
    group: &[CreateRequest],
    outcomes: &mut [Option<CreateOutcome>],
    deadline: tokio::time::Instant,
) -> Result<(), StoreError> {
    let metas = group.iter().map(|request| to_json(&request.new.meta)).collect::<Result<Vec<_>, _>>()?;
    let ratelimits = group
        .iter()
        .map(|request| ratelimits_json(&replace_ratelimits(&[], &request.new.ratelimits)))
        .collect::<Result<Vec<_>, _>>()?;
    // Rows go in in the unique index's order, so two groups never wait for each other's rows in opposite
    // orders (a deadlock); among creates of one externalId, the first to arrive wins.
    let mut order: Vec<usize> = (0..group.len()).collect();
    order.sort_by_key(|&index| (&group[index].new.external_id, group[index].workspace.as_str()));
    let mut connection = before_deadline(deadline, connections.acquire()).await?;
    let mut aborted = None;
    for attempt in 1..=CREATE_ATTEMPTS {
        let waiting: Vec<usize> = order.iter().copied().filter(|&index| outcomes[index].is_none()).collect();
        if waiting.is_empty() {
            break;
        }
        let ids: Vec<String> =
            waiting.iter().map(|&index| group[index].new.id.clone().unwrap_or_else(|| new_id("id"))).collect();
        let workspaces: Vec<&str> = waiting.iter().map(|&index| group[index].workspace.as_str()).collect();
        let external_ids: Vec<&str> = waiting.iter().map(|&index| group[index].new.external_id.as_str()).collect();
        let now = now_ms();
        let insert = sqlx::query_scalar(CREATE_IDENTITIES)
            .bind(&ids)
            .bind(&workspaces)
            .bind(&external_ids)
            .bind(waiting.iter().map(|&index| metas[index].as_str()).collect::<Vec<_>>())
            .bind(waiting.iter().map(|&index| ratelimits[index].as_str()).collect::<Vec<_>>())
            .bind(vec![now; waiting.len()])
            .fetch_all(&mut *connection);
        let inserted: HashSet<String> = match before_deadline(deadline, insert).await {
            Ok(inserted) => inserted.into_iter().collect(),
            Err(StoreError::Transient(error)) => {
                aborted = Some(back_off(attempt, error, deadline).await);
                continue;
            }
            Err(error) => return Err(error),
        };
        aborted = None;
        for (&index, id) in waiting.iter().zip(&ids) {
            if inserted.contains(id) {
                outcomes[index] = Some(Ok(id.clone()));
            }
        }
        if inserted.len() == waiting.len() {
            break;
        }
        let colliding: HashSet<&str> = waiting
            .iter()
            .filter(|&&index| outcomes[index].is_none())
            .map(|&index| group[index].new.external_id.as_str())
            .collect();
        let holders = sqlx::query_as(LIVE_IDENTITY_IDS)
            .bind(colliding.into_iter().collect::<Vec<_>>())
            .fetch_all(&mut *connection);
        let holders: Vec<(String, String, String)> = match before_deadline(deadline, holders).await {
            Ok(holders) => holders,
            Err(StoreError::Transient(error)) => {
                aborted = Some(back_off(attempt, error, deadline).await);
                continue;
            }
            Err(error) => return Err(error),
        };
        for (workspace, external_id, existing_id) in holders {
            for &index in &waiting {
                let request = &group[index];
                if outcomes[index].is_none()
                    && request.workspace.as_str() == workspace
                    && request.new.external_id == external_id
                {
                    outcomes[index] = Some(Err(StoreError::Conflict { existing_id: existing_id.clone() }));
                }
            }
        }
    }
    connection.finished();
    // Creates still undecided after every attempt: aborted each time, or their holder deleted each time.
    match aborted {
        Some(error) if outcomes.iter().any(Option::is_none) => Err(error),
        _ => Ok(()),
    }
}

/// `statement`'s outcome, by `deadline`. Never started once the deadline has passed: a statement sent then
/// commits on its own while its creates are answered 503.
async fn before_deadline<T>(
    deadline: tokio::time::Instant,
    statement: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    if tokio::time::Instant::now() >= deadline {
        return Err(StoreError::TimedOut);
    }
    within_deadline_at(deadline, async { Ok(statement.await?) }).await
}

/// After a statement the database aborted to resolve a race (nothing of it was stored): waits a little,
/// never past `deadline`, before the next attempt, and returns the abort to answer with if none succeeds.
async fn back_off(attempt: usize, error: sqlx::Error, deadline: tokio::time::Instant) -> StoreError {
    tracing::warn!(attempt, %error, "retrying creates after a transient database failure");
    let backoff = transient_backoff(attempt as u64);
    tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + backoff)).await;
    StoreError::Transient(error)
}
