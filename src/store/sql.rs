//! The SQL both backends run, and the one implementation of [`Store`](super::Store) over it.
//!
//! SQLite and PostgreSQL accept nearly all the same statements (`$n` placeholders, partial unique indexes,
//! `ON CONFLICT … DO NOTHING RETURNING`, TEXT ids, BIGINT unix-ms times, meta and ratelimits as JSON text),
//! so the implementation is written once as a macro and instantiated per backend: each backend supplies its
//! pools, its own connection setup, and the few operations it does its own way.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::domain::idempotency::{IdempotencyRecord, StoredResponse};
use crate::domain::identity::{Identity, Meta, Ratelimit, StoredJson, opens_with, stored_json};
use crate::store::StoreError;

/// The live identity whose id is `$2`, else whose externalId is `$2`, in workspace `$1`. Two indexed lookups
/// (primary key, live-externalId index) joined by UNION ALL: an `id = $2 OR external_id = $2` filter makes
/// SQLite scan every live identity of the workspace.
macro_rules! live_identity_id {
    () => {
        "(SELECT id FROM (\
           SELECT id, 0 AS rank FROM identities WHERE id = $2 AND workspace_id = $1 AND deleted_at IS NULL \
           UNION ALL \
           SELECT id, 1 AS rank FROM identities WHERE external_id = $2 AND workspace_id = $1 AND deleted_at IS NULL\
         ) AS candidates ORDER BY rank LIMIT 1)"
    };
}

pub(super) const COUNT_WORKSPACES: &str = "SELECT COUNT(*) FROM workspaces";
pub(super) const INSERT_WORKSPACE: &str =
    "INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING id";
pub(super) const WORKSPACE_ID_BY_NAME: &str = "SELECT id FROM workspaces WHERE name = $1";

pub(super) const INSERT_ROOT_KEY: &str =
    "INSERT INTO root_keys (id, workspace_id, key_hash, permissions, created_at) VALUES ($1, $2, $3, $4, $5)";
pub(super) const ROOT_KEY_BY_HASH: &str = "SELECT workspace_id, permissions FROM root_keys WHERE key_hash = $1";

pub(super) const FIND_IDENTITY: &str =
    concat!("SELECT id, external_id, meta, ratelimits FROM identities WHERE id = ", live_identity_id!());

/// A list page's identities, as the subquery `i`: live identities of workspace `$1` in id order. `$2`, the
/// cursor (an inclusive lower bound on the id), and `$3`, the search pattern, are optional; `$4` is the limit.
/// Without a cursor the bound is '', below every id, so that the cursor is always a range on
/// `identities_live_by_workspace` and a page deep into a workspace costs what the first one does. Spelled
/// `$2 IS NULL OR id >= $2`, it was a filter: both databases read the workspace from its first identity.
macro_rules! identity_page {
    () => {
        "(SELECT id, external_id, meta, ratelimits FROM identities WHERE workspace_id = $1 AND deleted_at IS NULL \
           AND id >= COALESCE($2, '') \
           AND ($3 IS NULL OR LOWER(id) LIKE $3 ESCAPE '\\' OR LOWER(external_id) LIKE $3 ESCAPE '\\') \
           ORDER BY id LIMIT $4) i"
    };
}
pub(super) use identity_page;

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
     VALUES ($1, $2, $3, COALESCE($4, '{}'), $5, $6) ON CONFLICT (workspace_id, external_id) WHERE deleted_at IS NULL \
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

/// Claims a key that is free or whose record expired; returns no row when a live record holds it.
pub(super) const CLAIM_IDEMPOTENCY_KEY: &str = "INSERT INTO idempotency_keys \
     (workspace_id, idempotency_key, fingerprint, status, response_body, created_at, expires_at) \
     VALUES ($1, $2, $3, NULL, NULL, $4, $5) ON CONFLICT (workspace_id, idempotency_key) DO UPDATE SET \
     fingerprint = excluded.fingerprint, status = NULL, response_body = NULL, created_at = excluded.created_at, \
     expires_at = excluded.expires_at WHERE idempotency_keys.expires_at < excluded.created_at RETURNING workspace_id";
pub(super) const FIND_IDEMPOTENCY_KEY: &str = "SELECT fingerprint, status, response_body FROM idempotency_keys \
     WHERE workspace_id = $1 AND idempotency_key = $2 AND expires_at >= $3";
pub(super) const COMPLETE_IDEMPOTENCY_KEY: &str = "UPDATE idempotency_keys SET status = $3, response_body = $4, \
     expires_at = $5 WHERE workspace_id = $1 AND idempotency_key = $2 AND status IS NULL";
pub(super) const RELEASE_IDEMPOTENCY_KEY: &str =
    "DELETE FROM idempotency_keys WHERE workspace_id = $1 AND idempotency_key = $2 AND status IS NULL";
pub(super) const PURGE_IDEMPOTENCY_KEYS: &str = "DELETE FROM idempotency_keys WHERE expires_at < $1";

pub(super) fn idempotency_record(
    (fingerprint, status, body): (String, Option<i32>, Option<String>),
) -> IdempotencyRecord {
    let response = match (status, body) {
        (Some(status), Some(body)) => Some(StoredResponse { status: u16::try_from(status).unwrap_or(500), body }),
        _ => None,
    };
    IdempotencyRecord { fingerprint, response }
}

/// An identity as stored: meta and ratelimits as JSON text.
pub(super) struct IdentityRow {
    id: String,
    external_id: String,
    meta: String,
    ratelimits: String,
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

/// Ratelimits read as JSON already (inside a larger document), checked as [`stored_ratelimits`] are.
pub(super) fn checked_ratelimits(identity_id: &str, ratelimits: StoredJson) -> Result<StoredJson, StoreError> {
    if opens_with(&ratelimits, '[') { Ok(ratelimits) } else { Err(ratelimits_no_array(identity_id)) }
}

fn ratelimits_no_array(identity_id: &str) -> StoreError {
    StoreError::InvalidData(format!("ratelimits of identity {identity_id} are no JSON array"))
}

/// An identity's ratelimits, parsed, for a write that replaces them.
pub(super) fn parse_ratelimits(identity: &Identity) -> Result<Vec<Ratelimit>, StoreError> {
    serde_json::from_str(identity.ratelimits.get())
        .map_err(|error| StoreError::InvalidData(format!("ratelimits of identity {}: {error}", identity.id)))
}

pub(super) fn parse_permissions(stored: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(stored).map_err(|error| StoreError::InvalidData(format!("root key permissions: {error}")))
}

pub(super) fn to_json(meta: &Meta) -> Result<String, StoreError> {
    serde_json::to_string(meta).map_err(|error| StoreError::InvalidData(format!("meta: {error}")))
}

/// Ratelimits as stored: the JSON array of their wire shapes, in name order.
pub(super) fn ratelimits_json(ratelimits: &[Ratelimit]) -> Result<String, StoreError> {
    serde_json::to_string(ratelimits).map_err(|error| StoreError::InvalidData(format!("ratelimits: {error}")))
}

pub(super) fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Attempts at an operation whose transaction the database aborted to resolve a race.
const TRANSIENT_ATTEMPTS: u32 = 3;

/// Runs `operation` again while it fails with [`StoreError::Transient`] (its transaction was rolled back),
/// up to [`TRANSIENT_ATTEMPTS`] times with a short backoff. Nothing else is retried: not a conflict, and
/// not a broken connection, after which a write may or may not have committed.
pub(super) async fn retry_transient<T, F, Fut>(mut operation: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match operation().await {
            Err(StoreError::Transient(error)) if attempt < TRANSIENT_ATTEMPTS => {
                tracing::warn!(attempt, error = %error, "retrying after a transient database failure");
                tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(attempt))).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// How often an insert is tried again when the row it collided with was deleted before it could be read.
pub(super) const CREATE_ATTEMPTS: usize = 3;

/// What a write runs inside its transaction: a closure the backend may call more than once (a transient
/// abort is retried) and, on SQLite, from the task that commits a whole group of writes.
pub(super) type WriteFuture<'c, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'c>>;

/// Gives a write closure, bound to a name before it is handed to `write` or `write_one_statement`, the
/// signature those expect (a closure is inferred for every connection lifetime only where it is passed).
pub(super) fn write_op<Connection, T, Write>(write: Write) -> Write
where
    Write: for<'c> Fn(&'c mut Connection) -> WriteFuture<'c, T>,
{
    write
}

/// Implements [`Store`](super::Store) for a type with these inherent methods:
/// - `on_reader(work)` and `on_writer(work)`, which run `work` on a connection for reads, or one that sees
///   every committed write, within [`DATABASE_DEADLINE`](super::DATABASE_DEADLINE); and `close_pools()`;
/// - `identity_cache()`, this node's identities in memory, if it keeps them;
/// - `identity_changed(workspace, id, external_id)`, which voids what any node read of an identity that was
///   just updated or deleted: called after the commit, before the answer;
/// - `write_failed(error)`, told of every identity write that failed, which on a database whose failed
///   writes may have committed voids what any node read;
/// - `queued()`, the depth of each of its queues, and a `connection_waits` histogram field;
/// - `list_page(workspace, query)`, the identities of a list page, each backend fetching them its fastest way;
/// - `create(workspace, new)`;
/// - `write(op)`, which runs `op` on a connection inside a transaction and returns once that transaction
///   has committed, and `write_one_statement(op)`, the same for an `op` that changes the database with one
///   statement, which needs no transaction of its own.
macro_rules! impl_store_with_shared_sql {
    ($store:ty, $database:ty) => {
        impl $store {
            /// Makes the ratelimits of `identity`, whose row this transaction has written, exactly `sent`.
            async fn replace_ratelimits(
                connection: &mut <$database as sqlx::Database>::Connection,
                identity: &mut Identity,
                sent: &[RatelimitInput],
            ) -> Result<(), StoreError> {
                let replaced = sql::ratelimits_json(&replace_ratelimits(&sql::parse_ratelimits(identity)?, sent))?;
                sqlx::query(sql::SET_RATELIMITS).bind(&identity.id).bind(&replaced).execute(&mut *connection).await?;
                identity.ratelimits = sql::stored_ratelimits(&identity.id, replaced)?;
                Ok(())
            }

            /// Creates the identity, or updates the sent parts of the live one with this externalId; `true`
            /// when it was created. One statement decides which, so concurrent upserts never conflict.
            async fn upsert_in(
                connection: &mut <$database as sqlx::Database>::Connection,
                workspace: &WorkspaceId,
                upsert: &IdentityUpsert,
            ) -> Result<(Identity, bool), StoreError> {
                let meta = upsert.meta.as_ref().map(sql::to_json).transpose()?;
                let sent = upsert.ratelimits.as_deref();
                let new_ratelimits = replace_ratelimits(&[], sent.unwrap_or_default());
                let new_identity_id = new_id("id");
                let row: sql::IdentityRow = sqlx::query_as(sql::UPSERT_IDENTITY)
                    .bind(&new_identity_id)
                    .bind(workspace.as_str())
                    .bind(&upsert.external_id)
                    .bind(meta)
                    .bind(sql::now_ms())
                    .bind(sql::ratelimits_json(&new_ratelimits)?)
                    .fetch_one(&mut *connection)
                    .await?;
                let mut identity = row.into_identity()?;
                let created = identity.id == new_identity_id;
                if let (false, Some(sent)) = (created, sent) {
                    Self::replace_ratelimits(connection, &mut identity, sent).await?;
                }
                Ok((identity, created))
            }

            /// Replaces the sent parts of the live identity; `None` when none matches.
            async fn update_in(
                connection: &mut <$database as sqlx::Database>::Connection,
                workspace: &WorkspaceId,
                identity: &str,
                changes: &IdentityChanges,
            ) -> Result<Option<Identity>, StoreError> {
                let meta = changes.meta.as_ref().map(sql::to_json).transpose()?;
                let row: Option<sql::IdentityRow> = sqlx::query_as(sql::UPDATE_IDENTITY)
                    .bind(workspace.as_str())
                    .bind(identity)
                    .bind(meta)
                    .bind(sql::now_ms())
                    .fetch_optional(&mut *connection)
                    .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let mut identity = row.into_identity()?;
                if let Some(sent) = &changes.ratelimits {
                    Self::replace_ratelimits(connection, &mut identity, sent).await?;
                }
                Ok(Some(identity))
            }

            /// Soft-deletes the live identity with one statement; its id and externalId, `None` when none
            /// matches.
            async fn delete_in(
                connection: &mut <$database as sqlx::Database>::Connection,
                workspace: &WorkspaceId,
                identity: &str,
            ) -> Result<Option<(String, String)>, StoreError> {
                Ok(sqlx::query_as(sql::DELETE_IDENTITY)
                    .bind(workspace.as_str())
                    .bind(identity)
                    .bind(sql::now_ms())
                    .fetch_optional(&mut *connection)
                    .await?)
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn has_workspaces(&self) -> Result<bool, StoreError> {
                let count: i64 = self
                    .on_reader(|connection| {
                        Box::pin(
                            async move { Ok(sqlx::query_scalar(sql::COUNT_WORKSPACES).fetch_one(connection).await?) },
                        )
                    })
                    .await?;
                Ok(count > 0)
            }

            async fn ensure_workspace(&self, name: &str) -> Result<(WorkspaceId, bool), StoreError> {
                let name = name.to_owned();
                self.on_writer(|connection| {
                    Box::pin(async move {
                        let created: Option<String> = sqlx::query_scalar(sql::INSERT_WORKSPACE)
                            .bind(new_id("ws"))
                            .bind(&name)
                            .bind(sql::now_ms())
                            .fetch_optional(&mut *connection)
                            .await?;
                        if let Some(id) = created {
                            return Ok((WorkspaceId::from_stored(id), true));
                        }
                        let id: String =
                            sqlx::query_scalar(sql::WORKSPACE_ID_BY_NAME).bind(&name).fetch_one(connection).await?;
                        Ok((WorkspaceId::from_stored(id), false))
                    })
                })
                .await
            }

            async fn create_root_key(
                &self,
                workspace: &WorkspaceId,
                key_hash: &str,
                permissions: &[String],
            ) -> Result<(), StoreError> {
                let permissions = serde_json::to_string(permissions)
                    .map_err(|error| StoreError::InvalidData(format!("permissions: {error}")))?;
                let (workspace, key_hash) = (workspace.clone(), key_hash.to_owned());
                self.on_writer(|connection| {
                    Box::pin(async move {
                        sqlx::query(sql::INSERT_ROOT_KEY)
                            .bind(new_id("key"))
                            .bind(workspace.as_str())
                            .bind(key_hash)
                            .bind(permissions)
                            .bind(sql::now_ms())
                            .execute(connection)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn find_root_key(&self, key_hash: &str) -> Result<Option<RootKey>, StoreError> {
                let key_hash = key_hash.to_owned();
                let row: Option<(String, String)> = self
                    .on_reader(|connection| {
                        Box::pin(async move {
                            Ok(sqlx::query_as(sql::ROOT_KEY_BY_HASH).bind(key_hash).fetch_optional(connection).await?)
                        })
                    })
                    .await?;
                row.map(|(workspace, permissions)| {
                    Ok(RootKey {
                        workspace: WorkspaceId::from_stored(workspace),
                        permissions: sql::parse_permissions(&permissions)?,
                    })
                })
                .transpose()
            }

            async fn create_identity(&self, workspace: &WorkspaceId, new: &NewIdentity) -> Result<String, StoreError> {
                let id = self.create(workspace, new).await.inspect_err(|error| self.write_failed(error))?;
                // A lookup by a string that was someone's externalId now finds this id first. Other nodes
                // need no word of it: the id is fresh, and the externalId was no live identity's.
                if let Some(cache) = self.identity_cache() {
                    cache.changed(workspace, &id, &new.external_id);
                }
                Ok(id)
            }

            async fn upsert_identity(
                &self,
                workspace: &WorkspaceId,
                upsert: &IdentityUpsert,
            ) -> Result<(Identity, bool), StoreError> {
                let one_statement = upsert.ratelimits.is_none();
                let owned = (workspace.clone(), upsert.clone());
                let upsert_in = sql::write_op(move |connection: &mut <$database as sqlx::Database>::Connection| {
                    let (workspace, upsert) = owned.clone();
                    Box::pin(async move { Self::upsert_in(connection, &workspace, &upsert).await })
                });
                let (identity, created) = if one_statement {
                    self.write_one_statement(upsert_in).await.inspect_err(|error| self.write_failed(error))?
                } else {
                    self.write(upsert_in).await.inspect_err(|error| self.write_failed(error))?
                };
                self.identity_changed(workspace, &identity.id, &identity.external_id);
                Ok((identity, created))
            }

            async fn find_identity(
                &self,
                workspace: &WorkspaceId,
                identity: &str,
            ) -> Result<Option<Identity>, StoreError> {
                if !sql::may_be_stored(identity) {
                    return Ok(None);
                }
                if let Some(cached) = self.identity_cache().and_then(|cache| cache.get(workspace, identity)) {
                    return Ok(Some(cached));
                }
                let read = self.identity_cache().map(|cache| cache.read_version(workspace, identity));
                let (workspace_id, identity_key) = (workspace.clone(), identity.to_owned());
                let row: Option<sql::IdentityRow> = self
                    .on_reader(|connection| {
                        Box::pin(async move {
                            Ok(sqlx::query_as(sql::FIND_IDENTITY)
                                .bind(workspace_id.as_str())
                                .bind(identity_key)
                                .fetch_optional(connection)
                                .await?)
                        })
                    })
                    .await?;
                let found = row.map(sql::IdentityRow::into_identity).transpose()?;
                if let (Some(cache), Some(read), Some(found)) = (self.identity_cache(), read, &found) {
                    cache.insert(workspace, identity, found, read);
                }
                Ok(found)
            }

            async fn list_identities(
                &self,
                workspace: &WorkspaceId,
                query: &IdentityPageQuery,
            ) -> Result<Vec<Identity>, StoreError> {
                self.list_page(workspace, query).await
            }

            async fn update_identity(
                &self,
                workspace: &WorkspaceId,
                identity: &str,
                changes: &IdentityChanges,
            ) -> Result<Option<Identity>, StoreError> {
                if !sql::may_be_stored(identity) {
                    return Ok(None);
                }
                let one_statement = changes.ratelimits.is_none();
                let owned = (workspace.clone(), identity.to_owned(), changes.clone());
                let update_in = sql::write_op(move |connection: &mut <$database as sqlx::Database>::Connection| {
                    let (workspace, identity, changes) = owned.clone();
                    Box::pin(async move { Self::update_in(connection, &workspace, &identity, &changes).await })
                });
                let updated = if one_statement {
                    self.write_one_statement(update_in).await.inspect_err(|error| self.write_failed(error))?
                } else {
                    self.write(update_in).await.inspect_err(|error| self.write_failed(error))?
                };
                if let Some(updated) = &updated {
                    self.identity_changed(workspace, &updated.id, &updated.external_id);
                }
                Ok(updated)
            }

            async fn delete_identity(&self, workspace: &WorkspaceId, identity: &str) -> Result<bool, StoreError> {
                if !sql::may_be_stored(identity) {
                    return Ok(false);
                }
                let owned = (workspace.clone(), identity.to_owned());
                let deleted = self
                    .write_one_statement(move |connection| {
                        let (workspace, identity) = owned.clone();
                        Box::pin(async move { Self::delete_in(connection, &workspace, &identity).await })
                    })
                    .await
                    .inspect_err(|error| self.write_failed(error))?;
                if let Some((identity_id, external_id)) = &deleted {
                    self.identity_changed(workspace, identity_id, external_id);
                }
                Ok(deleted.is_some())
            }

            async fn claim_idempotency_key(
                &self,
                workspace: &WorkspaceId,
                key: &str,
                fingerprint: &str,
                lease_until: i64,
            ) -> Result<Option<IdempotencyRecord>, StoreError> {
                // A record can expire or be released between the claim and the read; then claim again.
                for _ in 0..sql::CREATE_ATTEMPTS {
                    let owned = (workspace.clone(), key.to_owned(), fingerprint.to_owned());
                    let claimed: Option<String> = self
                        .write_one_statement(move |connection| {
                            let (workspace, key, fingerprint) = owned.clone();
                            Box::pin(async move {
                                Ok(sqlx::query_scalar(sql::CLAIM_IDEMPOTENCY_KEY)
                                    .bind(workspace.as_str())
                                    .bind(key)
                                    .bind(fingerprint)
                                    .bind(sql::now_ms())
                                    .bind(lease_until)
                                    .fetch_optional(&mut *connection)
                                    .await?)
                            })
                        })
                        .await?;
                    if claimed.is_some() {
                        return Ok(None);
                    }
                    if let Some(record) = self.find_idempotency_key(workspace, key).await? {
                        return Ok(Some(record));
                    }
                }
                Err(StoreError::Contended("the idempotency key was claimed and released concurrently"))
            }

            async fn find_idempotency_key(
                &self,
                workspace: &WorkspaceId,
                key: &str,
            ) -> Result<Option<IdempotencyRecord>, StoreError> {
                let (workspace, key) = (workspace.clone(), key.to_owned());
                let row: Option<(String, Option<i32>, Option<String>)> = self
                    .on_writer(|connection| {
                        Box::pin(async move {
                            Ok(sqlx::query_as(sql::FIND_IDEMPOTENCY_KEY)
                                .bind(workspace.as_str())
                                .bind(key)
                                .bind(sql::now_ms())
                                .fetch_optional(connection)
                                .await?)
                        })
                    })
                    .await?;
                Ok(row.map(sql::idempotency_record))
            }

            async fn complete_idempotency_key(
                &self,
                workspace: &WorkspaceId,
                key: &str,
                response: &StoredResponse,
                keep_until: i64,
            ) -> Result<(), StoreError> {
                let owned = (workspace.clone(), key.to_owned(), response.clone());
                self.write_one_statement(move |connection| {
                    let (workspace, key, response) = owned.clone();
                    Box::pin(async move {
                        sqlx::query(sql::COMPLETE_IDEMPOTENCY_KEY)
                            .bind(workspace.as_str())
                            .bind(key)
                            .bind(i32::from(response.status))
                            .bind(response.body)
                            .bind(keep_until)
                            .execute(&mut *connection)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn release_idempotency_key(&self, workspace: &WorkspaceId, key: &str) -> Result<(), StoreError> {
                let owned = (workspace.clone(), key.to_owned());
                self.write_one_statement(move |connection| {
                    let (workspace, key) = owned.clone();
                    Box::pin(async move {
                        sqlx::query(sql::RELEASE_IDEMPOTENCY_KEY)
                            .bind(workspace.as_str())
                            .bind(key)
                            .execute(&mut *connection)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn purge_expired_idempotency_keys(&self) -> Result<u64, StoreError> {
                self.on_writer(|connection| {
                    Box::pin(async move {
                        let purged =
                            sqlx::query(sql::PURGE_IDEMPOTENCY_KEYS).bind(sql::now_ms()).execute(connection).await?;
                        Ok(purged.rows_affected())
                    })
                })
                .await
            }

            fn stats(&self) -> $crate::store::StoreStats {
                $crate::store::StoreStats {
                    identity_cache: self.identity_cache().map(|cache| cache.stats()),
                    queued: self.queued(),
                    connection_waits: self.connection_waits.clone(),
                }
            }

            async fn close(&self) {
                self.close_pools().await;
            }
        }
    };
}
pub(super) use impl_store_with_shared_sql;

/// PostgreSQL text cannot hold NUL, and no stored id or externalId contains one: such a lookup matches
/// nothing on either backend, without asking the database.
pub(super) fn may_be_stored(identity: &str) -> bool {
    !identity.contains('\0')
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[tokio::test]
    async fn transient_failures_are_retried_a_bounded_number_of_times() {
        let calls = Cell::new(0);
        let recovers = retry_transient(|| async {
            calls.set(calls.get() + 1);
            if calls.get() < 3 { Err(StoreError::Transient(sqlx::Error::PoolTimedOut)) } else { Ok(calls.get()) }
        })
        .await;
        assert_eq!(recovers.unwrap(), 3);

        calls.set(0);
        let gives_up = retry_transient(|| async {
            calls.set(calls.get() + 1);
            Err::<(), _>(StoreError::Transient(sqlx::Error::PoolTimedOut))
        })
        .await;
        assert!(matches!(gives_up, Err(StoreError::Transient(_))));
        assert_eq!(calls.get(), TRANSIENT_ATTEMPTS);
    }

    #[tokio::test]
    async fn a_conflict_is_never_retried() {
        let calls = Cell::new(0);
        let outcome = retry_transient(|| async {
            calls.set(calls.get() + 1);
            Err::<(), _>(StoreError::Conflict { existing_id: "id_1".into() })
        })
        .await;
        assert!(matches!(outcome, Err(StoreError::Conflict { .. })));
        assert_eq!(calls.get(), 1);
    }
}
