//! Identities: what the store offers for them, the SQL both databases run, and the one implementation of
//! that SQL ([`impl_identities!`]), instantiated by each backend. What the backends do their own way (a
//! create, which each group-commits its own way, and a list page) is [`IdentityBackend`], in
//! `sqlite/identities.rs` and `postgres/identities.rs`.

use async_trait::async_trait;

use crate::domain::identity::{
    Creation, Identity, IdentityChanges, IdentityPage, IdentityPageQuery, IdentityUpdate, IdentityUpsert, Meta,
    NewIdentity, PAGE_BYTES, Ratelimit, StoredJson, stored_json,
};
use crate::domain::workspace::WorkspaceId;
use crate::store::StoreError;
use crate::store::changes::Written;
use crate::store::idempotency_keys::{Recorded, Recording};

/// Identities, by workspace.
#[async_trait]
pub trait Identities: Send + Sync {
    /// Inserts an identity and its ratelimits atomically. The database's unique index decides a collision:
    /// [`Creation::AlreadyExists`] names the live identity that holds the externalId.
    async fn create_identity(
        &self,
        workspace: &WorkspaceId,
        new: &NewIdentity,
        recording: Option<Recording<Creation>>,
    ) -> Result<Recorded<Creation>, StoreError>;

    /// Creates the identity, or updates the sent parts of the live one with this externalId; one statement
    /// decides, so concurrent upserts never conflict. `true` when this call created it.
    async fn upsert_identity(
        &self,
        workspace: &WorkspaceId,
        upsert: &IdentityUpsert,
        recording: Option<Recording<(Identity, bool)>>,
    ) -> Result<Recorded<(Identity, bool)>, StoreError>;

    /// The live identity whose id, or else whose externalId, is `identity`.
    async fn get_identity(&self, workspace: &WorkspaceId, identity: &str) -> Result<Option<Identity>, StoreError>;

    /// Live identities in id (creation) order: at most `query.limit` of them, fewer when their meta and
    /// ratelimits would pass [`PAGE_BYTES`](crate::domain::identity::PAGE_BYTES), and where the next page
    /// starts.
    async fn list_identities(
        &self,
        workspace: &WorkspaceId,
        query: &IdentityPageQuery,
    ) -> Result<IdentityPage, StoreError>;

    /// The live identity holding `external_id`, found by that name alone: [`get_identity`](Self::get_identity)
    /// prefers an identity whose id the text is, live or deleted, which would hide this one.
    async fn get_identity_by_external_id(
        &self,
        workspace: &WorkspaceId,
        external_id: &str,
    ) -> Result<Option<Identity>, StoreError>;

    /// A live identity whose externalId differs from `external_id` only in case (`lower()`: SQLite's folds
    /// ASCII letters only, PostgreSQL's folds as the database's default collation does),
    /// for a 404's hint.
    async fn find_external_id_in_other_case(
        &self,
        workspace: &WorkspaceId,
        external_id: &str,
    ) -> Result<Option<(String, String)>, StoreError>;

    /// How many live identities the workspace holds (v1's list tells it).
    async fn count_identities(&self, workspace: &WorkspaceId) -> Result<i64, StoreError>;

    /// Replaces meta and/or ratelimits in one transaction. Ratelimits are matched by name and keep their ids.
    /// `None` when no live identity matches.
    async fn update_identity(
        &self,
        workspace: &WorkspaceId,
        identity: &str,
        changes: &IdentityChanges,
        recording: Option<Recording<IdentityUpdate>>,
    ) -> Result<Recorded<IdentityUpdate>, StoreError>;

    /// Soft-deletes the live identity; its externalId is free again at once. `false` when none matched.
    async fn delete_identity(
        &self,
        workspace: &WorkspaceId,
        identity: &str,
        recording: Option<Recording<bool>>,
    ) -> Result<Recorded<bool>, StoreError>;
}

/// The identity operations each backend does its own way.
pub(super) trait IdentityBackend {
    /// Inserts the identity, its ratelimits with it, and returns once it committed; a live identity holding
    /// the externalId is a conflict. (The shared code then applies what the create changed.) A create with
    /// an Idempotency-Key does not come here: it is one transaction of the shared code's.
    fn create_identity(
        &self,
        workspace: &WorkspaceId,
        new: &NewIdentity,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Replaces the meta of the live identity whose id, or else externalId, is `identity` (an update that
    /// sends meta alone, without an Idempotency-Key), and returns once it committed. (The shared code then
    /// applies what it changed.)
    fn update_identity_meta(
        &self,
        workspace: &WorkspaceId,
        identity: &str,
        meta: &Meta,
    ) -> impl Future<Output = Result<Written<IdentityUpdate>, StoreError>> + Send;

    /// Creates the identity, or replaces the meta (when sent) of the live one with this externalId (an upsert
    /// without ratelimits or Idempotency-Key), and returns once it committed, `true` when it created it.
    /// (The shared code then applies what it changed.)
    fn upsert_identity_without_ratelimits(
        &self,
        workspace: &WorkspaceId,
        upsert: &IdentityUpsert,
    ) -> impl Future<Output = Result<Written<(Identity, bool)>, StoreError>> + Send;

    /// The rows of [`identity_page!`] (the page's limit and one more), each backend fetching them its
    /// fastest way, in any order.
    fn list_identities(
        &self,
        workspace: &WorkspaceId,
        query: &IdentityPageQuery,
        before: Option<&str>,
    ) -> impl Future<Output = Result<Vec<ListedRow>, StoreError>> + Send;
}

/// The live identity whose id is `$2`, else whose externalId is `$2`, in workspace `$1`. An id names its
/// identity for good: once that identity is deleted, `$2` matches no other identity's externalId, so that a
/// retried delete by id, or a v1 write by `identityId` racing a delete, never reaches a second identity
/// whose externalId happens to be that id (Unkey's lookup would find it). Two indexed lookups
/// (primary key, live-externalId index) joined by UNION ALL: an `id = $2 OR external_id = $2` filter makes
/// SQLite scan every live identity of the workspace.
///
/// Each is looked up alone, behind a materialized CTE, and its workspace checked after: with the workspace
/// in the same condition, PostgreSQL, guessing on a table that had grown since its last ANALYZE, took
/// the index of folded externalIds it then had (workspace first) and filtered every identity of the workspace:
/// 42 ms per lookup by externalId at 24,600 identities (auto_explain), and 10 ms by id at 44,000 (EXPLAIN
/// ANALYZE of the generic plan), which made gets, updates and list pages run at 100 to 300 a second in the
/// benchmark for the seconds until autovacuum's next ANALYZE. Alone, the id has only the primary key to use
/// and the externalId only the live-externalId index. The price: the live identities holding the
/// externalId in every workspace are read, a handful, since workspaces are the operator's to create.
macro_rules! live_identity_id {
    () => {
        "(WITH by_id AS MATERIALIZED (\
           SELECT id, workspace_id, deleted_at FROM identities WHERE id = $2\
         ), holders AS MATERIALIZED (\
           SELECT id, workspace_id FROM identities \
           WHERE external_id_folded = lower($2) AND external_id = $2 AND deleted_at IS NULL\
         ) SELECT id FROM (\
           SELECT id, 0 AS rank FROM by_id WHERE workspace_id = $1 AND deleted_at IS NULL \
           UNION ALL \
           SELECT id, 1 AS rank FROM holders WHERE workspace_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM by_id WHERE workspace_id = $1)\
         ) AS candidates ORDER BY rank LIMIT 1)"
    };
}

/// Inserts one identity, unless a live one holds its externalId (the partial unique index
/// `identities_live_external_id`) or, for an id kept by an import, another identity has that id: any unique
/// conflict inserts nothing, and the caller reads who holds the externalId.
pub(super) const CREATE_IDENTITY: &str = "INSERT INTO identities (id, workspace_id, external_id, meta, ratelimits, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id";
/// By externalId alone first, for the reason [`live_identity_id`] gives.
pub(super) const LIVE_IDENTITY_ID_BY_EXTERNAL_ID: &str = "WITH holders AS MATERIALIZED (\
       SELECT id, workspace_id FROM identities \
           WHERE external_id_folded = lower($2) AND external_id = $2 AND deleted_at IS NULL\
     ) SELECT id FROM holders WHERE workspace_id = $1";

/// Follows an update in its transaction, which already holds the row. The unique index on live externalIds
/// decides a race with a create or another rename.
pub(super) const RENAME_IDENTITY: &str = "UPDATE identities SET external_id = $2 WHERE id = $1";

/// By the folded externalId alone first, which `identities_live_external_id` leads with: with the workspace
/// in the same condition, SQLite took `identities_live_by_workspace` and read every identity of the
/// workspace. The live identities of every workspace whose externalId folds alike are read, a handful.
pub(super) const EXTERNAL_ID_IN_OTHER_CASE: &str = "WITH folded_alike AS MATERIALIZED (\
       SELECT id, workspace_id, external_id FROM identities \
       WHERE external_id_folded = lower($2) AND deleted_at IS NULL\
     ) SELECT id, external_id FROM folded_alike WHERE workspace_id = $1 AND external_id <> $2 LIMIT 1";

pub(super) const COUNT_IDENTITIES: &str =
    "SELECT COUNT(*) FROM identities WHERE workspace_id = $1 AND deleted_at IS NULL";

pub(super) const LIVE_IDENTITY_NAMES: &str =
    concat!("SELECT id, external_id FROM identities WHERE id = ", live_identity_id!());

pub(super) const GET_IDENTITY: &str =
    concat!("SELECT id, external_id, meta, ratelimits FROM identities WHERE id = ", live_identity_id!());

/// A list page's identities, as the subquery `i`: live identities of workspace `$1` in id order. `$2`, the
/// cursor (an inclusive lower bound on the id), `$3`, the search pattern, and `$5`, an exclusive upper bound
/// on the id (where a search stops looking: [`SCAN_END`]), are optional; `$4` is the limit.
/// Without a cursor the bound is '', below every id, so that the cursor is always a range on
/// `identities_live_by_workspace` and a page deep into a workspace costs what the first one does. Spelled
/// `$2 IS NULL OR id >= $2`, it was a filter: both databases read the workspace from its first identity.
///
/// Where a page ends by bytes ([`PAGE_BYTES`](crate::domain::identity::PAGE_BYTES)) is worked out after the
/// rows are read ([`page_of`]): summed in SQL with window functions, even over ids and lengths alone, it
/// halved SQLite's list pages (5,175 to 2,609 and 3,017 a second in one run) and cost PostgreSQL a quarter.
/// So that reading the rows costs bounded memory, a row brings its meta and ratelimits only when together
/// they are at most `$6` bytes ([`INLINE_PAYLOAD_BYTES`]), and always their size (`payload_bytes`, which
/// neither database reads the values to tell); a larger payload is read by id once its row is on the page.
macro_rules! identity_page {
    () => {
        "(SELECT id, external_id, \
           CASE WHEN octet_length(meta) + octet_length(ratelimits) <= $6 THEN meta END AS meta, \
           CASE WHEN octet_length(meta) + octet_length(ratelimits) <= $6 THEN ratelimits END AS ratelimits, \
           CAST(octet_length(meta) + octet_length(ratelimits) AS BIGINT) AS payload_bytes \
           FROM identities WHERE workspace_id = $1 AND deleted_at IS NULL \
           AND id >= COALESCE($2, '') AND ($5 IS NULL OR id < $5) \
           AND ($3 IS NULL OR LOWER(id) LIKE $3 ESCAPE '\\' OR LOWER(external_id) LIKE $3 ESCAPE '\\') \
           ORDER BY id LIMIT $4) i"
    };
}
pub(super) use identity_page;

/// A list row carries its meta and ratelimits when together they are at most this many bytes: a page of 101
/// rows then holds at most 6.5 MB before it is cut at [`PAGE_BYTES`](crate::domain::identity::PAGE_BYTES).
pub(super) const INLINE_PAYLOAD_BYTES: i64 = 64 * 1024;

/// The meta and ratelimits of a live identity on a list page, too large to come with its row. By id alone
/// first, for the reason [`live_identity_id`] gives.
pub(super) const PAYLOAD_BY_ID: &str = "WITH by_id AS MATERIALIZED (\
       SELECT workspace_id, deleted_at, meta, ratelimits FROM identities WHERE id = $2\
     ) SELECT meta, ratelimits FROM by_id WHERE workspace_id = $1 AND deleted_at IS NULL";

/// A row of a list page, as [`identity_page!`] reads it.
pub(super) struct ListedRow {
    pub id: String,
    pub external_id: String,
    /// Meta and ratelimits, as stored, when they came with the row.
    pub payload: Option<(String, StoredJson)>,
    pub payload_bytes: i64,
}

/// Where a search from cursor `$2` in workspace `$1` stops looking: the id `$3` live identities on, read
/// from the workspace index alone. No row: the search may look at everything after the cursor.
pub(super) const SCAN_END: &str = "SELECT id FROM identities WHERE workspace_id = $1 AND deleted_at IS NULL \
     AND id >= COALESCE($2, '') ORDER BY id LIMIT 1 OFFSET $3";

/// The written identity, whole, as [`IdentityRow`] reads it.
macro_rules! returning_whole_identity {
    () => {
        " RETURNING id, external_id, meta, ratelimits"
    };
}

/// Inserts, or updates the live identity with this externalId, in one statement: the database decides
/// which, so concurrent upserts never conflict. `$4` (meta) is optional: kept as it is when absent. `$6`,
/// the ratelimits, go in only with a new identity: an existing one's ratelimits keep their ids by name,
/// which only the caller can work out from the ratelimits this returns.
pub(super) const UPSERT_IDENTITY: &str = concat!(
    "INSERT INTO identities (id, workspace_id, external_id, meta, created_at, ratelimits) \
     VALUES ($1, $2, $3, COALESCE($4, '{}'), $5, $6) ON CONFLICT (external_id_folded, external_id, workspace_id) WHERE deleted_at IS NULL \
     DO UPDATE SET meta = COALESCE($4, identities.meta), updated_at = $5",
    returning_whole_identity!()
);

/// Taking the row lock first serializes concurrent updates of one identity (PostgreSQL) and fixes which
/// identity the transaction works on.
pub(super) const UPDATE_IDENTITY: &str = concat!(
    "UPDATE identities SET meta = COALESCE($3, meta), updated_at = $4 WHERE id = ",
    live_identity_id!(),
    " AND deleted_at IS NULL",
    returning_whole_identity!()
);

/// Follows an upsert or update in its transaction, which already holds the row.
pub(super) const SET_RATELIMITS: &str = "UPDATE identities SET ratelimits = $2 WHERE id = $1";

/// Re-checking `deleted_at` on the row itself makes the second of two concurrent deletes match nothing.
pub(super) const DELETE_IDENTITY: &str = concat!(
    "UPDATE identities SET deleted_at = $3 WHERE id = ",
    live_identity_id!(),
    " AND deleted_at IS NULL RETURNING id, external_id"
);

/// An identity as stored: meta and ratelimits as JSON text.
pub(super) struct IdentityRow {
    pub id: String,
    pub external_id: String,
    pub meta: String,
    pub ratelimits: String,
}

/// Read by position, as every statement reading an identity selects `id, external_id, meta, ratelimits`:
/// by name, sqlx looked each column up in a hash map, for every row of a list page.
impl<'r, R> sqlx::FromRow<'r, R> for IdentityRow
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get(0)?,
            external_id: row.try_get(1)?,
            meta: row.try_get(2)?,
            ratelimits: row.try_get(3)?,
        })
    }
}

impl IdentityRow {
    pub fn into_identity(self) -> Result<Identity, StoreError> {
        let meta = stored_meta(&self.id, self.meta)?;
        let ratelimits = stored_ratelimits(&self.id, self.ratelimits)?;
        Ok(Identity { id: self.id, external_id: self.external_id, meta, ratelimits })
    }
}

/// Stored meta, checked; text that is no JSON object is a damaged database, not a bad request.
pub(super) fn stored_meta(identity_id: &str, meta: String) -> Result<StoredJson, StoreError> {
    stored_json(meta, '{')
        .ok_or_else(|| StoreError::InvalidData(format!("meta of identity {identity_id} is no JSON object")))
}

/// Stored ratelimits, checked as [`stored_meta`] is.
pub(super) fn stored_ratelimits(identity_id: &str, ratelimits: String) -> Result<StoredJson, StoreError> {
    stored_json(ratelimits, '[').ok_or_else(|| ratelimits_no_array(identity_id))
}

fn ratelimits_no_array(identity_id: &str) -> StoreError {
    StoreError::InvalidData(format!("ratelimits of identity {identity_id} are no JSON array"))
}

/// An identity's ratelimits, parsed, for a write that replaces them.
pub(super) fn parse_ratelimits(identity: &Identity) -> Result<Vec<Ratelimit>, StoreError> {
    serde_json::from_str(identity.ratelimits.get())
        .map_err(|error| StoreError::InvalidData(format!("ratelimits of identity {}: {error}", identity.id)))
}

pub(super) fn to_json(meta: &Meta) -> Result<String, StoreError> {
    serde_json::to_string(meta).map_err(|error| StoreError::InvalidData(format!("meta: {error}")))
}

/// Ratelimits as stored: the JSON array of their wire shapes, in name order.
pub(super) fn ratelimits_json(ratelimits: &[Ratelimit]) -> Result<String, StoreError> {
    serde_json::to_string(ratelimits).map_err(|error| StoreError::InvalidData(format!("ratelimits: {error}")))
}

/// The rows on the page `rows` make, in id order: at most `limit`, none of them starting past [`PAGE_BYTES`]
/// of meta and ratelimits; and the id of the first row after them.
pub(super) fn page_of(mut rows: Vec<ListedRow>, limit: i64) -> (Vec<ListedRow>, Option<String>) {
    rows.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut starts_at = 0_i64;
    let on_page = rows
        .iter()
        .take(limit)
        .take_while(|row| {
            let starts_before_the_bound = starts_at < PAGE_BYTES;
            starts_at = starts_at.saturating_add(row.payload_bytes);
            starts_before_the_bound
        })
        .count();
    let next_cursor = rows.get(on_page).map(|first_of_next_page| first_of_next_page.id.clone());
    rows.truncate(on_page);
    (rows, next_cursor)
}

/// PostgreSQL text cannot hold NUL, and no stored id or externalId contains one: such a lookup matches
/// nothing on either backend, without asking the database.
pub(super) fn may_be_stored(identity: &str) -> bool {
    !identity.contains('\0')
}

/// Implements [`Identities`] for a [`Backend`](super::backend::Backend) that also implements
/// [`IdentityBackend`].
macro_rules! impl_identities {
    ($store:ty) => {
        // A block of its own, so that the implementation names what it uses as this file does.
        const _: () = {
            use $crate::domain::identity::{
                Creation, Identity, IdentityChanges, IdentityPage, IdentityPageQuery, IdentityUpdate, IdentityUpsert,
                NewIdentity, RatelimitInput, StoredJson, replace_ratelimits,
            };
            use $crate::domain::ids::new_id;
            use $crate::domain::workspace::WorkspaceId;
            use $crate::store::StoreError;
            use $crate::store::backend::{Backend, now_ms};
            use $crate::store::changes::{Change, Written};
            use $crate::store::idempotency_keys::{Recorded, Recording};
            use $crate::store::identities::*;

            impl $store {
                /// The meta and ratelimits of a list page's identity that were too large to come with its row.
                async fn payload_by_id(
                    &self,
                    workspace: &WorkspaceId,
                    id: &str,
                ) -> Result<Option<(String, StoredJson)>, StoreError> {
                    let (workspace, identity_id) = (workspace.clone(), id.to_owned());
                    let row: Option<(String, String)> = self
                        .on_reader(|connection| {
                            Box::pin(async move {
                                Ok(sqlx::query_as(PAYLOAD_BY_ID)
                                    .bind(workspace.as_str())
                                    .bind(identity_id)
                                    .fetch_optional(connection)
                                    .await?)
                            })
                        })
                        .await?;
                    row.map(|(meta, ratelimits)| Ok((meta, stored_ratelimits(id, ratelimits)?))).transpose()
                }

                /// Inserts the identity, ratelimits and all, with one statement, or names the live identity
                /// holding its externalId. Nothing fallible follows a successful insert.
                async fn create_identity_in(
                    connection: &mut <Self as Backend>::Connection,
                    workspace: &WorkspaceId,
                    new: &NewIdentity,
                ) -> Result<Written<Creation>, StoreError> {
                    let id = new.id.clone().unwrap_or_else(|| new_id("id"));
                    let inserted: Option<String> = sqlx::query_scalar(CREATE_IDENTITY)
                        .bind(&id)
                        .bind(workspace.as_str())
                        .bind(&new.external_id)
                        .bind(to_json(&new.meta)?)
                        .bind(ratelimits_json(&replace_ratelimits(&[], &new.ratelimits))?)
                        .bind(now_ms())
                        .fetch_optional(&mut *connection)
                        .await?;
                    if inserted.is_some() {
                        let created = Change::identity_created(workspace, &id, &new.external_id);
                        return Ok(Written::new(Creation::Created { id }, vec![created]));
                    }
                    let existing_id = Self::holder_in(connection, workspace, &new.external_id).await?;
                    Ok(Written::unchanged(Creation::AlreadyExists { existing_id }))
                }

                /// The live identity holding `external_id`, for a create that inserted nothing. On SQLite, the
                /// one writer, the holder cannot vanish before this read. On PostgreSQL, a holder deleted in
                /// between makes the create contended, and the caller may retry.
                async fn holder_in(
                    connection: &mut <Self as Backend>::Connection,
                    workspace: &WorkspaceId,
                    external_id: &str,
                ) -> Result<String, StoreError> {
                    Self::live_holder_in(connection, workspace, external_id)
                        .await?
                        .ok_or(StoreError::Contended("the externalId was freed during the insert"))
                }

                /// The id of the live identity holding `external_id`, if any.
                async fn live_holder_in(
                    connection: &mut <Self as Backend>::Connection,
                    workspace: &WorkspaceId,
                    external_id: &str,
                ) -> Result<Option<String>, StoreError> {
                    Ok(sqlx::query_scalar(LIVE_IDENTITY_ID_BY_EXTERNAL_ID)
                        .bind(workspace.as_str())
                        .bind(external_id)
                        .fetch_optional(&mut *connection)
                        .await?)
                }

                /// Makes the ratelimits of `identity`, whose row this transaction has written, exactly `sent`.
                async fn set_ratelimits_in(
                    connection: &mut <Self as Backend>::Connection,
                    identity: &mut Identity,
                    sent: &[RatelimitInput],
                ) -> Result<(), StoreError> {
                    let replaced = ratelimits_json(&replace_ratelimits(&parse_ratelimits(identity)?, sent))?;
                    sqlx::query(SET_RATELIMITS).bind(&identity.id).bind(&replaced).execute(&mut *connection).await?;
                    identity.ratelimits = stored_ratelimits(&identity.id, replaced)?;
                    Ok(())
                }

                /// Creates the identity, or updates the sent parts of the live one with this externalId; `true`
                /// when it was created. One statement decides which, so concurrent upserts never conflict.
                async fn upsert_identity_in(
                    connection: &mut <Self as Backend>::Connection,
                    workspace: &WorkspaceId,
                    upsert: &IdentityUpsert,
                ) -> Result<Written<(Identity, bool)>, StoreError> {
                    let meta = upsert.meta.as_ref().map(to_json).transpose()?;
                    let sent = upsert.ratelimits.as_deref();
                    let new_ratelimits = replace_ratelimits(&[], sent.unwrap_or_default());
                    let new_identity_id = new_id("id");
                    let row: IdentityRow = sqlx::query_as(UPSERT_IDENTITY)
                        .bind(&new_identity_id)
                        .bind(workspace.as_str())
                        .bind(&upsert.external_id)
                        .bind(meta)
                        .bind(now_ms())
                        .bind(ratelimits_json(&new_ratelimits)?)
                        .fetch_one(&mut *connection)
                        .await?;
                    let mut identity = row.into_identity()?;
                    let created = identity.id == new_identity_id;
                    if let (false, Some(sent)) = (created, sent) {
                        Self::set_ratelimits_in(connection, &mut identity, sent).await?;
                    }
                    let changed = Change::identity(workspace, &identity.id, &identity.external_id);
                    Ok(Written::new((identity, created), vec![changed]))
                }

                /// Replaces the sent parts of the live identity; `None` when none matches.
                async fn update_identity_in(
                    connection: &mut <Self as Backend>::Connection,
                    workspace: &WorkspaceId,
                    identity: &str,
                    changes: &IdentityChanges,
                ) -> Result<Written<IdentityUpdate>, StoreError> {
                    let mut identity = identity.to_owned();
                    if let Some(renamed) = &changes.external_id {
                        // Looked for before anything is written, so that a 409 leaves the identity as it was.
                        let found: Option<(String, String)> = sqlx::query_as(LIVE_IDENTITY_NAMES)
                            .bind(workspace.as_str())
                            .bind(&identity)
                            .fetch_optional(&mut *connection)
                            .await?;
                        let Some((id, _)) = found else { return Ok(Written::unchanged(IdentityUpdate::NotFound)) };
                        let holder = Self::live_holder_in(connection, workspace, renamed).await?;
                        if let Some(existing_id) = holder.filter(|holder| *holder != id) {
                            return Ok(Written::unchanged(IdentityUpdate::ExternalIdTaken { existing_id }));
                        }
                        // By id from here on: its externalId is about to change.
                        identity = id;
                    }
                    let meta = changes.meta.as_ref().map(to_json).transpose()?;
                    let row: Option<IdentityRow> = sqlx::query_as(UPDATE_IDENTITY)
                        .bind(workspace.as_str())
                        .bind(&identity)
                        .bind(meta)
                        .bind(now_ms())
                        .fetch_optional(&mut *connection)
                        .await?;
                    let Some(row) = row else {
                        return Ok(Written::unchanged(IdentityUpdate::NotFound));
                    };
                    let mut identity = row.into_identity()?;
                    let mut written = vec![Change::identity(workspace, &identity.id, &identity.external_id)];
                    if let Some(renamed) =
                        changes.external_id.as_ref().filter(|renamed| **renamed != identity.external_id)
                    {
                        sqlx::query(RENAME_IDENTITY)
                            .bind(&identity.id)
                            .bind(renamed)
                            .execute(&mut *connection)
                            .await
                            .map_err(|error| match &error {
                            // Taken since it was looked for (PostgreSQL): run again, the holder is seen then.
                            sqlx::Error::Database(database) if database.is_unique_violation() => {
                                StoreError::Contended("the externalId was taken during the rename")
                            }
                            _ => StoreError::from(error),
                        })?;
                        identity.external_id = renamed.clone();
                        written.push(Change::identity(workspace, &identity.id, renamed));
                    }
                    if let Some(sent) = &changes.ratelimits {
                        Self::set_ratelimits_in(connection, &mut identity, sent).await?;
                    }
                    Ok(Written::new(IdentityUpdate::Updated(identity), written))
                }

                /// What a write the backend ran its own way answers, once what it changed is applied.
                async fn applied<T>(&self, written: Result<Written<T>, StoreError>) -> Result<Recorded<T>, StoreError> {
                    match written {
                        Ok(written) => {
                            self.apply(written.changes).await;
                            Ok(Recorded::Ran(written.outcome))
                        }
                        Err(error) => {
                            self.write_failed(&error);
                            Err(error)
                        }
                    }
                }

                /// Soft-deletes the live identity with one statement; `false` when none matches.
                async fn delete_identity_in(
                    connection: &mut <Self as Backend>::Connection,
                    workspace: &WorkspaceId,
                    identity: &str,
                ) -> Result<Written<bool>, StoreError> {
                    let deleted: Option<(String, String)> = sqlx::query_as(DELETE_IDENTITY)
                        .bind(workspace.as_str())
                        .bind(identity)
                        .bind(now_ms())
                        .fetch_optional(&mut *connection)
                        .await?;
                    Ok(match deleted {
                        Some((id, external_id)) => {
                            Written::new(true, vec![Change::identity(workspace, &id, &external_id)])
                        }
                        None => Written::unchanged(false),
                    })
                }
            }

            #[async_trait::async_trait]
            impl Identities for $store {
                async fn create_identity(
                    &self,
                    workspace: &WorkspaceId,
                    new: &NewIdentity,
                    recording: Option<Recording<Creation>>,
                ) -> Result<Recorded<Creation>, StoreError> {
                    if recording.is_some() {
                        // The live identity it collided with may be deleted before it is read (PostgreSQL).
                        let owned = (workspace.clone(), new.clone());
                        return self
                            .write_recorded(workspace, recording, false, move |connection| {
                                let (workspace, new) = owned.clone();
                                Box::pin(async move { Self::create_identity_in(connection, &workspace, &new).await })
                            })
                            .await;
                    }
                    let identities = self.caches().map(|caches| &caches.identities);
                    // A retry storm of duplicates is answered from memory, not queued for the one writer.
                    if let Some(existing_id) = identities.and_then(|cache| cache.holder_of(workspace, &new.external_id))
                    {
                        return Ok(Recorded::Ran(Creation::AlreadyExists { existing_id }));
                    }
                    let read = identities.map(|cache| cache.read_version(workspace, &new.external_id));
                    match <Self as IdentityBackend>::create_identity(self, workspace, new).await {
                        Ok(id) => {
                            self.apply(vec![Change::identity_created(workspace, &id, &new.external_id)]).await;
                            Ok(Recorded::Ran(Creation::Created { id }))
                        }
                        Err(StoreError::Conflict { existing_id }) => {
                            if let (Some(cache), Some(read)) = (identities, read) {
                                cache.insert_holder(workspace, &new.external_id, &existing_id, read);
                            }
                            Ok(Recorded::Ran(Creation::AlreadyExists { existing_id }))
                        }
                        Err(error) => {
                            self.write_failed(&error);
                            Err(error)
                        }
                    }
                }

                async fn upsert_identity(
                    &self,
                    workspace: &WorkspaceId,
                    upsert: &IdentityUpsert,
                    recording: Option<Recording<(Identity, bool)>>,
                ) -> Result<Recorded<(Identity, bool)>, StoreError> {
                    if let (None, None) = (&recording, &upsert.ratelimits) {
                        let upserted =
                            <Self as IdentityBackend>::upsert_identity_without_ratelimits(self, workspace, upsert)
                                .await;
                        return self.applied(upserted).await;
                    }
                    let owned = (workspace.clone(), upsert.clone());
                    self.write_recorded(workspace, recording, false, move |connection| {
                        let (workspace, upsert) = owned.clone();
                        Box::pin(async move { Self::upsert_identity_in(connection, &workspace, &upsert).await })
                    })
                    .await
                }

                async fn get_identity(
                    &self,
                    workspace: &WorkspaceId,
                    identity: &str,
                ) -> Result<Option<Identity>, StoreError> {
                    if !may_be_stored(identity) {
                        return Ok(None);
                    }
                    let cache = self.caches().map(|caches| &caches.identities);
                    if let Some(cached) = cache.and_then(|cache| cache.get(workspace, identity)) {
                        return Ok(Some(cached));
                    }
                    let read = cache.map(|cache| cache.read_version(workspace, identity));
                    let (workspace_id, identity_key) = (workspace.clone(), identity.to_owned());
                    let row: Option<IdentityRow> = self
                        .on_reader(|connection| {
                            Box::pin(async move {
                                Ok(sqlx::query_as(GET_IDENTITY)
                                    .bind(workspace_id.as_str())
                                    .bind(identity_key)
                                    .fetch_optional(connection)
                                    .await?)
                            })
                        })
                        .await?;
                    let found = row.map(IdentityRow::into_identity).transpose()?;
                    if let (Some(cache), Some(read), Some(found)) = (cache, read, &found) {
                        cache.insert(workspace, identity, found, read);
                    }
                    Ok(found)
                }

                async fn list_identities(
                    &self,
                    workspace: &WorkspaceId,
                    query: &IdentityPageQuery,
                ) -> Result<IdentityPage, StoreError> {
                    let scan_end: Option<String> = match &query.search_pattern {
                        None => None,
                        Some(_) => {
                            let (workspace, cursor, scan) =
                                (workspace.clone(), query.cursor.clone(), query.search_scan_rows);
                            self.on_reader(|connection| {
                                Box::pin(async move {
                                    Ok(sqlx::query_scalar(SCAN_END)
                                        .bind(workspace.as_str())
                                        .bind(cursor)
                                        .bind(scan)
                                        .fetch_optional(connection)
                                        .await?)
                                })
                            })
                            .await?
                        }
                    };
                    let rows =
                        <Self as IdentityBackend>::list_identities(self, workspace, query, scan_end.as_deref()).await?;
                    let (rows, next_cursor) = page_of(rows, query.limit);
                    let mut identities = Vec::with_capacity(rows.len());
                    for row in rows {
                        let (meta, ratelimits) = match row.payload {
                            Some(payload) => payload,
                            // Deleted since the page was read: the page goes on without it.
                            None => match self.payload_by_id(workspace, &row.id).await? {
                                Some(payload) => payload,
                                None => continue,
                            },
                        };
                        let meta = stored_meta(&row.id, meta)?;
                        identities.push(Identity { id: row.id, external_id: row.external_id, meta, ratelimits });
                    }
                    // Nothing more matched before where the search stopped looking: the next page looks on.
                    Ok(IdentityPage { identities, next_cursor: next_cursor.or(scan_end) })
                }

                async fn get_identity_by_external_id(
                    &self,
                    workspace: &WorkspaceId,
                    external_id: &str,
                ) -> Result<Option<Identity>, StoreError> {
                    if !may_be_stored(external_id) {
                        return Ok(None);
                    }
                    let (workspace_id, name) = (workspace.clone(), external_id.to_owned());
                    let holder = self
                        .on_reader(|connection| {
                            Box::pin(async move { Self::live_holder_in(connection, &workspace_id, &name).await })
                        })
                        .await?;
                    let Some(holder) = holder else { return Ok(None) };
                    // By its id, which names it alone; renamed or deleted in between, it holds the name no more.
                    let found = self.get_identity(workspace, &holder).await?;
                    Ok(found.filter(|identity| identity.external_id == external_id))
                }

                async fn find_external_id_in_other_case(
                    &self,
                    workspace: &WorkspaceId,
                    external_id: &str,
                ) -> Result<Option<(String, String)>, StoreError> {
                    if !may_be_stored(external_id) {
                        return Ok(None);
                    }
                    let (workspace, external_id) = (workspace.clone(), external_id.to_owned());
                    self.on_reader(|connection| {
                        Box::pin(async move {
                            Ok(sqlx::query_as(EXTERNAL_ID_IN_OTHER_CASE)
                                .bind(workspace.as_str())
                                .bind(external_id)
                                .fetch_optional(connection)
                                .await?)
                        })
                    })
                    .await
                }

                async fn count_identities(&self, workspace: &WorkspaceId) -> Result<i64, StoreError> {
                    let workspace = workspace.clone();
                    self.on_reader(|connection| {
                        Box::pin(async move {
                            Ok(sqlx::query_scalar(COUNT_IDENTITIES)
                                .bind(workspace.as_str())
                                .fetch_one(connection)
                                .await?)
                        })
                    })
                    .await
                }

                async fn update_identity(
                    &self,
                    workspace: &WorkspaceId,
                    identity: &str,
                    changes: &IdentityChanges,
                    recording: Option<Recording<IdentityUpdate>>,
                ) -> Result<Recorded<IdentityUpdate>, StoreError> {
                    if !may_be_stored(identity) {
                        return Ok(Recorded::Ran(IdentityUpdate::NotFound));
                    }
                    let one_statement = changes.ratelimits.is_none() && changes.external_id.is_none();
                    if let (true, None, Some(meta)) = (one_statement, &recording, &changes.meta) {
                        let updated =
                            <Self as IdentityBackend>::update_identity_meta(self, workspace, identity, meta).await;
                        return self.applied(updated).await;
                    }
                    let owned = (workspace.clone(), identity.to_owned(), changes.clone());
                    self.write_recorded(workspace, recording, one_statement, move |connection| {
                        let (workspace, identity, changes) = owned.clone();
                        Box::pin(
                            async move { Self::update_identity_in(connection, &workspace, &identity, &changes).await },
                        )
                    })
                    .await
                }

                async fn delete_identity(
                    &self,
                    workspace: &WorkspaceId,
                    identity: &str,
                    recording: Option<Recording<bool>>,
                ) -> Result<Recorded<bool>, StoreError> {
                    if !may_be_stored(identity) {
                        return Ok(Recorded::Ran(false));
                    }
                    let owned = (workspace.clone(), identity.to_owned());
                    self.write_recorded(workspace, recording, true, move |connection| {
                        let (workspace, identity) = owned.clone();
                        Box::pin(async move { Self::delete_identity_in(connection, &workspace, &identity).await })
                    })
                    .await
                }
            }
        };
    };
}
pub(super) use impl_identities;
