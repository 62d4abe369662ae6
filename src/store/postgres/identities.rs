//! What PostgreSQL does its own way for identities: creates, upserts without ratelimits and updates of meta
//! alone are group-committed (`write_groups.rs`), a group going in as one statement (a multi-row
//! `INSERT … ON CONFLICT`, an `UPDATE … FROM` a group's rows), so that PostgreSQL parses, plans and flushes
//! its WAL once for many writes; and a list page comes back as rows.
//!
//! Every group inserts or locks identities in one order, the write order: externalId, then workspace, both
//! in bytes (the "C" collation; a database's default collation may order them otherwise). So no two groups
//! wait for each other's rows in opposite orders. Creates are sorted before they are sent; the other
//! groups' statements sort in SQL.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::PgConnection;

use crate::domain::identity::{
    Identity, IdentityChanges, IdentityPageQuery, IdentityUpdate, IdentityUpsert, Meta, NewIdentity, replace_ratelimits,
};
use crate::domain::ids::new_id;
use crate::domain::workspace::WorkspaceId;
use crate::store::backend::{WriteFuture, now_ms, transient_backoff};
use crate::store::changes::{Change, Written};
use crate::store::identities::{
    INLINE_PAYLOAD_BYTES, IdentityBackend, IdentityRow, ListedRow, identity_page, ratelimits_json, stored_ratelimits,
    to_json,
};
use crate::store::postgres::PostgresStore;
use crate::store::postgres::write_groups::{Answers, GroupSlots, WriteGroups};
use crate::store::postgres::{KeptConnections, Lease};
use crate::store::{StoreError, within_deadline, within_deadline_at};

/// Most writes one group takes at once.
const MAX_GROUP: usize = 256;
/// Groups of every kind committing at once, each on a connection of its own; the rest of the pool serves
/// everything else.
const GROUPS_IN_FLIGHT: usize = 4;

/// One create waiting for its group.
pub(super) struct CreateRequest {
    workspace: WorkspaceId,
    new: NewIdentity,
}

/// The new identity's id, or why this one create failed.
type CreateOutcome = Result<String, StoreError>;

type CreateGroups = WriteGroups<CreateRequest, String>;

/// One update of an identity's meta alone, without an Idempotency-Key, waiting for its group.
pub(super) struct MetaUpdate {
    workspace: WorkspaceId,
    identity: String,
    meta: Meta,
}

type MetaUpdateGroups = WriteGroups<MetaUpdate, Written<IdentityUpdate>>;

/// One upsert without ratelimits or Idempotency-Key, waiting for its group.
pub(super) struct Upsert {
    workspace: WorkspaceId,
    external_id: String,
    meta: Option<Meta>,
}

/// The identity as upserted, `true` when the upsert created it.
type Upserted = Written<(Identity, bool)>;

type UpsertGroups = WriteGroups<Upsert, Upserted>;

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
/// group at 27k identities) while a freshly grown table had no statistics yet. On the externalId alone, only
/// the live-externalId index applies. Each is looked up on its own: the index leads with the folded
/// externalId, and `= ANY` on both would probe every pair of the two arrays.
const LIVE_IDENTITY_IDS: &str = "SELECT i.workspace_id, i.external_id, i.id FROM UNNEST($1::text[]) AS r(external_id) \
     CROSS JOIN LATERAL (SELECT workspace_id, external_id, id FROM identities \
       WHERE external_id_folded = lower(r.external_id) AND external_id = r.external_id AND deleted_at IS NULL \
       OFFSET 0) i";

/// A list page as rows. (Built as one JSON value instead, as SQLite does, it was 25% slower here:
/// PostgreSQL's rows need no handoff between threads.)
const LIST_IDENTITIES: &str =
    concat!("SELECT i.id, i.external_id, i.meta, i.ratelimits, i.payload_bytes FROM ", identity_page!());

impl IdentityBackend for PostgresStore {
    async fn create_identity(&self, workspace: &WorkspaceId, new: &NewIdentity) -> Result<String, StoreError> {
        self.groups.creates.write(CreateRequest { workspace: workspace.clone(), new: new.clone() }).await
    }

    async fn update_identity_meta(
        &self,
        workspace: &WorkspaceId,
        identity: &str,
        meta: &Meta,
    ) -> Result<Written<IdentityUpdate>, StoreError> {
        let update = MetaUpdate { workspace: workspace.clone(), identity: identity.to_owned(), meta: meta.clone() };
        self.groups.meta_updates.write(update).await
    }

    async fn upsert_identity_without_ratelimits(
        &self,
        workspace: &WorkspaceId,
        upsert: &IdentityUpsert,
    ) -> Result<Upserted, StoreError> {
        let upsert =
            Upsert { workspace: workspace.clone(), external_id: upsert.external_id.clone(), meta: upsert.meta.clone() };
        self.groups.upserts.write(upsert).await
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
                .await
                .map_err(StoreError::from);
            connection.settle(&rows);
            rows
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

/// The writes of identities that PostgreSQL commits in groups.
pub(super) struct IdentityWriteGroups {
    pub creates: CreateGroups,
    pub upserts: UpsertGroups,
    pub meta_updates: MetaUpdateGroups,
}

/// The write groups of a store whose queries run on `connections`.
pub(super) fn identity_write_groups(connections: &Arc<KeptConnections>) -> IdentityWriteGroups {
    let slots: GroupSlots = Arc::new(tokio::sync::Semaphore::new(GROUPS_IN_FLIGHT));
    let (creating, upserting, updating) = (Arc::clone(connections), Arc::clone(connections), Arc::clone(connections));
    IdentityWriteGroups {
        creates: WriteGroups::start(MAX_GROUP, Arc::clone(&slots), move |group, answers, deadline| {
            create_identity_group(Arc::clone(&creating), group, answers, deadline)
        }),
        upserts: WriteGroups::start(MAX_GROUP, Arc::clone(&slots), move |group, answers, deadline| {
            upsert_group(Arc::clone(&upserting), group, answers, deadline)
        }),
        meta_updates: WriteGroups::start(MAX_GROUP, slots, move |group, answers, deadline| {
            update_meta_group(Arc::clone(&updating), group, answers, deadline)
        }),
    }
}

/// Inserts the group without a transaction: every statement commits alone, so a create is decided for good
/// once the statement that stored it (or named who holds its externalId) returned, and a failure after that
/// fails only the creates still undecided. BEGIN and COMMIT around the group were two more round trips per
/// group, which cost the server a fifth of its CPU per create.
async fn create_identity_group(
    connections: Arc<KeptConnections>,
    group: Vec<CreateRequest>,
    mut answers: Answers<String>,
    deadline: tokio::time::Instant,
) {
    let mut outcomes: Vec<Option<CreateOutcome>> = group.iter().map(|_| None).collect();
    let failure = decide_creates(&connections, &group, &mut outcomes, deadline).await.err();
    let contended = || StoreError::Contended("the externalId was deleted and re-created concurrently");
    for (index, outcome) in outcomes.into_iter().enumerate() {
        let outcome = outcome.unwrap_or_else(|| Err(failure.as_ref().map_or_else(contended, StoreError::same_kind)));
        answers.send(index, outcome);
    }
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
    // Rows go in in the write order (bytes, as Rust compares strings); among creates of one externalId, the
    // first to arrive wins.
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
            Err(error) => {
                connection.failed();
                return Err(error);
            }
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
            Err(error) => {
                connection.failed();
                return Err(error);
            }
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

/// Replaces the meta of a group's identities (`$1` workspaces, `$2` ids or externalIds, `$3` metas, `$4`
/// the time), in one statement, and tells for each, by its position from 1: whether it named a live
/// identity, and that identity as updated. Each identity is found as [`live_identity_id`] finds one, by id
/// first, each lookup alone (`OFFSET 0` keeps the workspace out of it) for the reason given there.
///
/// The rows are locked one by one (each looked up alone, which also keeps PostgreSQL from reading every
/// live identity to join them) in the order in which every group inserts or locks identities: externalId,
/// then workspace, in bytes (the write order, above). So no two groups, of any kind, from one node or several,
/// wait for each other's rows in opposite orders (a deadlock, which PostgreSQL takes a second to find);
/// should one happen anyway (with a rename, say), the group is run again. The lock is `FOR NO KEY UPDATE`,
/// as an UPDATE's own, so that keys referring to these identities can still be created meanwhile. Each
/// row is then written where its lock found it (`ctid`, the newest version, which the lock keeps). When two
/// updates of a group name one identity, the statement writes one of them: the other comes back found but
/// not updated, and runs alone after.
///
/// The statement is planned at every run, never prepared: a plan made while the table holds under about
/// 2,000 identities reads the whole table to write the group's rows (a hash join, cheapest then), and a
/// prepared statement would keep that plan as the table grows, until the next ANALYZE. Planning costs
/// about 0.4 ms per group (0.82 ms a run against 0.45 ms prepared, psql, 3 updates at 60,000 identities).
///
/// [`live_identity_id`]: crate::store::identities
pub(super) const UPDATE_METAS: &str = "WITH requested AS MATERIALIZED (\
       SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS r(workspace_id, identity, meta, position)\
     ), targets AS MATERIALIZED (\
       SELECT r.position, r.workspace_id, COALESCE(by_id.external_id, holder.external_id) AS external_id, \
         CASE WHEN by_id.id IS NULL THEN holder.id WHEN by_id.deleted_at IS NULL THEN by_id.id END AS id \
       FROM requested r \
       LEFT JOIN LATERAL (SELECT id, workspace_id, external_id, deleted_at FROM identities WHERE id = r.identity OFFSET 0) by_id \
         ON by_id.workspace_id = r.workspace_id \
       LEFT JOIN LATERAL (SELECT id, workspace_id, external_id FROM identities \
           WHERE external_id_folded = lower(r.identity) AND external_id = r.identity AND deleted_at IS NULL OFFSET 0) holder \
         ON holder.workspace_id = r.workspace_id\
     ), locked AS MATERIALIZED (\
       SELECT i.id, i.ctid FROM (\
         SELECT DISTINCT id, external_id COLLATE \"C\", workspace_id COLLATE \"C\" FROM targets WHERE id IS NOT NULL \
         ORDER BY 2, 3\
       ) wanted \
       CROSS JOIN LATERAL (SELECT id, ctid FROM identities WHERE id = wanted.id AND deleted_at IS NULL FOR NO KEY UPDATE) i\
     ), updated AS (\
       UPDATE identities i SET meta = r.meta, updated_at = $4 \
       FROM locked l JOIN targets t ON t.id = l.id JOIN requested r ON r.position = t.position \
       WHERE i.ctid = l.ctid \
       RETURNING t.position, i.id, i.external_id, i.meta, i.ratelimits\
     ) SELECT t.position, t.id IS NOT NULL, u.id, u.external_id, u.meta, u.ratelimits \
     FROM targets t LEFT JOIN updated u ON u.position = t.position";

/// Updates a group of metas with one statement, which commits alone; an update the statement did not
/// decide (its identity named twice in the group, or deleted while the group ran) then runs alone. A
/// failure fails only the updates it left undecided.
async fn update_meta_group(
    connections: Arc<KeptConnections>,
    group: Vec<MetaUpdate>,
    mut answers: Answers<Written<IdentityUpdate>>,
    deadline: tokio::time::Instant,
) {
    type Row = (i64, bool, Option<String>, Option<String>, Option<String>, Option<String>);
    let metas = match group.iter().map(|update| to_json(&update.meta)).collect::<Result<Vec<_>, _>>() {
        Ok(metas) => metas,
        Err(error) => return answers.fail_the_rest(&error),
    };
    let mut decided = vec![false; group.len()];
    let mut connection = match before_deadline(deadline, connections.acquire()).await {
        Ok(connection) => connection,
        Err(error) => return answers.fail_the_rest(&error),
    };
    let statement = || {
        sqlx::query_as(UPDATE_METAS)
            .persistent(false)
            .bind(group.iter().map(|update| update.workspace.as_str()).collect::<Vec<_>>())
            .bind(group.iter().map(|update| update.identity.as_str()).collect::<Vec<_>>())
            .bind(&metas)
            .bind(now_ms())
    };
    let mut failure = None;
    let rows: Result<Vec<Row>, StoreError> = fetch_all_until_not_aborted(&mut connection, deadline, statement).await;
    match rows {
        Err(error) => failure = Some(error),
        Ok(rows) => {
            for (position, found, id, external_id, meta, ratelimits) in rows {
                // Positions count from 1.
                let Some(index) = usize::try_from(position).ok().and_then(|position| position.checked_sub(1)) else {
                    continue;
                };
                let Some(update) = group.get(index) else { continue };
                let outcome = match (found, id, external_id, meta, ratelimits) {
                    (false, ..) => Ok(Written::unchanged(IdentityUpdate::NotFound)),
                    (true, Some(id), Some(external_id), Some(meta), Some(ratelimits)) => {
                        IdentityRow { id, external_id, meta, ratelimits }.into_identity().map(|identity| {
                            let changed = Change::identity(&update.workspace, &identity.id, &identity.external_id);
                            Written::new(IdentityUpdate::Updated(identity), vec![changed])
                        })
                    }
                    _ => continue,
                };
                answers.send(index, outcome);
                decided[index] = true;
            }
        }
    }
    the_rest_alone(connection, &group, &decided, failure, deadline, update_meta_alone, answers).await
}

/// One update of meta, as a statement of its own.
fn update_meta_alone<'c>(
    connection: &'c mut PgConnection,
    update: &'c MetaUpdate,
) -> WriteFuture<'c, Written<IdentityUpdate>> {
    let changes = IdentityChanges { meta: Some(update.meta.clone()), ratelimits: None, external_id: None };
    Box::pin(async move {
        PostgresStore::update_identity_in(connection, &update.workspace, &update.identity, &changes).await
    })
}

/// Upserts a group (`$1` new ids, `$2` workspaces, `$3` externalIds, `$4` metas, `$5` the time), which
/// holds each (workspace, externalId) once, in one statement: rows go in in the write order, as every
/// group's do, so that two groups never wait for each other's rows in opposite orders. All of a group send
/// meta, or none does (`$6`): an upsert without meta keeps the stored one.
pub(super) const UPSERT_IDENTITIES: &str = "INSERT INTO identities AS i (id, workspace_id, external_id, meta, created_at, ratelimits) \
     SELECT id, workspace_id, external_id, meta, $5, '[]' \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS r(id, workspace_id, external_id, meta) \
     ORDER BY external_id COLLATE \"C\", workspace_id COLLATE \"C\" \
     ON CONFLICT (external_id_folded, external_id, workspace_id) WHERE deleted_at IS NULL \
     DO UPDATE SET meta = CASE WHEN $6 THEN EXCLUDED.meta ELSE i.meta END, updated_at = $5 \
     RETURNING i.id, i.external_id, i.meta, i.ratelimits, i.workspace_id";

/// Upserts a group with a statement for those that send meta and one for those that do not, each committing
/// alone; an upsert whose (workspace, externalId) came earlier in the group runs alone after them (a
/// statement cannot write one row twice). A failure fails only the upserts it left undecided.
async fn upsert_group(
    connections: Arc<KeptConnections>,
    group: Vec<Upsert>,
    mut answers: Answers<Upserted>,
    deadline: tokio::time::Instant,
) {
    type Row = (String, String, String, String, String);
    let metas = group.iter().map(|upsert| upsert.meta.as_ref().map(to_json).transpose());
    let metas = match metas.collect::<Result<Vec<_>, _>>() {
        Ok(metas) => metas,
        Err(error) => return answers.fail_the_rest(&error),
    };
    let mut connection = match before_deadline(deadline, connections.acquire()).await {
        Ok(connection) => connection,
        Err(error) => return answers.fail_the_rest(&error),
    };
    // Each (workspace, externalId)'s first upsert, by where it is in the group.
    let mut firsts: HashMap<(&str, &str), usize> = HashMap::new();
    for (index, upsert) in group.iter().enumerate() {
        firsts.entry((upsert.workspace.as_str(), upsert.external_id.as_str())).or_insert(index);
    }
    let mut decided = vec![false; group.len()];
    let mut failure = None;
    for sends_meta in [true, false] {
        let members: Vec<(usize, String)> = firsts
            .values()
            .filter(|&&index| metas[index].is_some() == sends_meta)
            .map(|&index| (index, new_id("id")))
            .collect();
        if members.is_empty() {
            continue;
        }
        let statement = || {
            sqlx::query_as(UPSERT_IDENTITIES)
                .bind(members.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>())
                .bind(members.iter().map(|&(index, _)| group[index].workspace.as_str()).collect::<Vec<_>>())
                .bind(members.iter().map(|&(index, _)| group[index].external_id.as_str()).collect::<Vec<_>>())
                .bind(members.iter().map(|&(index, _)| metas[index].as_deref().unwrap_or("{}")).collect::<Vec<_>>())
                .bind(now_ms())
                .bind(sends_meta)
        };
        let rows: Result<Vec<Row>, StoreError> =
            fetch_all_until_not_aborted(&mut connection, deadline, statement).await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                failure = Some(error);
                break;
            }
        };
        let proposed: HashMap<usize, &str> = members.iter().map(|(index, id)| (*index, id.as_str())).collect();
        for (id, external_id, meta, ratelimits, workspace) in rows {
            let Some(&index) = firsts.get(&(workspace.as_str(), external_id.as_str())) else { continue };
            let created = proposed.get(&index) == Some(&id.as_str());
            let changed = Change::identity(&group[index].workspace, &id, &external_id);
            let outcome = IdentityRow { id, external_id, meta, ratelimits }
                .into_identity()
                .map(|identity| Written::new((identity, created), vec![changed]));
            answers.send(index, outcome);
            decided[index] = true;
        }
    }
    the_rest_alone(connection, &group, &decided, failure, deadline, upsert_alone, answers).await
}

/// One upsert, as a statement of its own.
fn upsert_alone<'c>(connection: &'c mut PgConnection, upsert: &'c Upsert) -> WriteFuture<'c, Upserted> {
    let alone = IdentityUpsert { external_id: upsert.external_id.clone(), meta: upsert.meta.clone(), ratelimits: None };
    Box::pin(async move { PostgresStore::upsert_identity_in(connection, &upsert.workspace, &alone).await })
}

/// Answers the writes of a group its statements did not decide (those they did were answered at once):
/// each runs alone, one after another, run again after the database aborted it to resolve a deadlock (a
/// single statement, it stored nothing then). After a failure (`failure`, or one of those), the rest fail
/// alike, and the connection is closed rather than given back.
async fn the_rest_alone<Request, Outcome>(
    mut connection: Lease<'_>,
    group: &[Request],
    decided: &[bool],
    mut failure: Option<StoreError>,
    deadline: tokio::time::Instant,
    alone: impl for<'c> Fn(&'c mut PgConnection, &'c Request) -> WriteFuture<'c, Outcome>,
    mut answers: Answers<Outcome>,
) {
    for (index, request) in group.iter().enumerate().filter(|&(index, _)| !decided[index]) {
        if let Some(failure) = &failure {
            answers.send(index, Err(failure.same_kind()));
            continue;
        }
        let mut attempt = 1;
        let written = loop {
            match before_deadline(deadline, alone(&mut connection, request)).await {
                Err(StoreError::Transient(error)) if attempt < CREATE_ATTEMPTS => {
                    back_off(attempt, error, deadline).await;
                    attempt += 1;
                }
                written => break written,
            }
        };
        // An error that leaves the connection sound (data found damaged, an identity's stored ratelimits,
        // say) is this write's alone: only other failures stop the rest.
        if let Err(error) = &written
            && !error.leaves_the_connection_sound()
        {
            failure = Some(error.same_kind());
        }
        answers.send(index, written);
    }
    if failure.is_none() {
        connection.finished();
    } else {
        connection.failed();
    }
}

/// The rows of a group's `statement`, which runs again when the database aborted it to resolve a deadlock
/// (it stored nothing then), at most [`CREATE_ATTEMPTS`] times.
async fn fetch_all_until_not_aborted<'q, Row>(
    connection: &mut PgConnection,
    deadline: tokio::time::Instant,
    statement: impl Fn() -> sqlx::query::QueryAs<'q, sqlx::Postgres, Row, sqlx::postgres::PgArguments>,
) -> Result<Vec<Row>, StoreError>
where
    Row: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    let mut attempt = 1;
    loop {
        match before_deadline(deadline, statement().fetch_all(&mut *connection)).await {
            Err(StoreError::Transient(error)) if attempt < CREATE_ATTEMPTS => {
                back_off(attempt, error, deadline).await;
                attempt += 1;
            }
            rows => return rows,
        }
    }
}

/// `statement`'s outcome, by `deadline`. Never started once the deadline has passed: a statement sent then
/// commits on its own while its creates are answered 503.
async fn before_deadline<T, E: Into<StoreError>>(
    deadline: tokio::time::Instant,
    statement: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, StoreError> {
    if tokio::time::Instant::now() >= deadline {
        return Err(StoreError::TimedOut);
    }
    within_deadline_at(deadline, async { statement.await.map_err(Into::into) }).await
}

/// After a statement the database aborted to resolve a race (nothing of it was stored): waits a little,
/// never past `deadline`, before the next attempt, and returns the abort to answer with if none succeeds.
async fn back_off(attempt: usize, error: sqlx::Error, deadline: tokio::time::Instant) -> StoreError {
    tracing::warn!(attempt, %error, "retrying a group of writes after a transient database failure");
    let backoff = transient_backoff(attempt as u64);
    tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + backoff)).await;
    StoreError::Transient(error)
}
