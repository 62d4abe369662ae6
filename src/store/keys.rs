//! Keys: what the store offers for them, the SQL both databases run, and its one implementation
//! ([`impl_keys!`]).

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::identity::Identity;
use crate::domain::key::{Credits, CreditsRefusal, KeyChanges, KeyFields};
use crate::domain::workspace::WorkspaceId;
use crate::store::backend::now_ms;
use crate::store::combiner::Combiner;
use crate::store::idempotency_keys::{Recorded, Recording};
use crate::store::{Store, StoreError};

/// A key to store: everything but the key itself, of which only the hash is kept.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub api_id: String,
    pub hash: String,
    pub start: String,
    pub name: Option<String>,
    /// JSON text of an object.
    pub meta: Option<String>,
    /// The identity to link the key to, got or created with it.
    pub external_id: Option<String>,
    pub expires: Option<i64>,
    pub enabled: bool,
    /// JSON text of `{remaining, refill?}`.
    pub credits: Option<String>,
    /// JSON text of the key's ratelimits, as identities store theirs.
    pub ratelimits: String,
}

/// A live key of a live API, as getKey shows it (everything but the key itself, which is not kept).
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub id: String,
    pub api_id: String,
    pub start: String,
    pub name: Option<String>,
    pub meta: Option<String>,
    pub expires: Option<i64>,
    pub enabled: bool,
    pub credits: Option<String>,
    pub ratelimits: String,
    pub created_at: i64,
    pub updated_at: Option<i64>,
    /// The key's identity while it is live: a deleted identity's keys show none.
    pub identity: Option<Identity>,
}

impl StoredKey {
    /// About what the key weighs in memory and in an answer: its text, and its identity's.
    pub fn bytes(&self) -> usize {
        let identity = self.identity.as_ref().map_or(0, |identity| {
            identity.id.len() + identity.external_id.len() + identity.meta.get().len() + identity.ratelimits.get().len()
        });
        self.id.len()
            + self.api_id.len()
            + self.start.len()
            + self.name.as_ref().map_or(0, String::len)
            + self.meta.as_ref().map_or(0, String::len)
            + self.credits.as_ref().map_or(0, String::len)
            + self.ratelimits.len()
            + identity
    }
}

/// A page of keys, and the id of the key the next page starts with.
#[derive(Debug)]
pub struct KeyPage {
    pub keys: Vec<StoredKey>,
    pub next: Option<String>,
}

/// Whose keys a page lists.
#[derive(Debug, Clone)]
pub enum KeysOf {
    /// An API's, of the identity `identity_id` alone when it is given.
    Api { api_id: String, identity_id: Option<String> },
    /// An identity's, in every API.
    Identity { identity_id: String },
}

/// What an update of a key did.
#[derive(Debug, Clone)]
pub enum KeyUpdate {
    /// The key as it stands after the update.
    Updated(Box<StoredKey>),
    /// No live key of a live API has the id.
    NotFound,
    /// Its credits cannot change as asked: nothing was written.
    Refused(CreditsRefusal),
}

/// What spending a key's credits did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditsSpent {
    /// Taken; what is left.
    Spent {
        remaining: i64,
    },
    /// Fewer left than the cost: nothing was taken.
    Exceeded {
        remaining: i64,
    },
    /// The key has no credit limit.
    Unlimited,
    NotFound,
    /// Disabled since it was read (on another node, say): nothing was taken.
    Disabled,
    /// Expired since it was read, as it is now: nothing was taken.
    Expired {
        expires: i64,
    },
}

/// Keys, by workspace.
#[async_trait]
pub trait Keys: Send + Sync {
    /// The live key with this id, in a live API.
    async fn get_key(&self, workspace: &WorkspaceId, key_id: &str) -> Result<Option<StoredKey>, StoreError>;

    /// Live keys of live APIs in id order from `cursor` on (inclusive): at most `limit`, and none starting
    /// past [`PAGE_BYTES`](crate::domain::identity::PAGE_BYTES), as an identity page ends. A key and its
    /// identity may each hold a megabyte of meta: read whole, a page of 100 was 200 MB before it was an
    /// answer.
    async fn list_keys(
        &self,
        workspace: &WorkspaceId,
        of: &KeysOf,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<KeyPage, StoreError>;

    /// The live key, in a live API, whose hash is `hash` ([`crate::domain::key::hash`]): shared with what
    /// this node keeps in memory, not copied for every verification.
    async fn get_key_by_hash(&self, workspace: &WorkspaceId, hash: &str) -> Result<Option<Arc<StoredKey>>, StoreError>;

    /// Deletes the live key: softly (it no longer verifies, and its hash stays taken), or, when
    /// `permanent`, its row. `false` when none matched. Its identity is not touched.
    async fn delete_key(
        &self,
        workspace: &WorkspaceId,
        key_id: &str,
        permanent: bool,
        recording: Option<Recording<bool>>,
    ) -> Result<Recorded<bool>, StoreError>;

    /// Stores the key and returns its id. With an externalId, the key is linked to the live identity
    /// holding it, which is created (empty meta, no ratelimits) in the same transaction when there is none:
    /// any number of concurrent creates of keys for one new externalId end linked to one identity, and none
    /// fails for it.
    async fn create_key(
        &self,
        workspace: &WorkspaceId,
        key: &NewKey,
        recording: Option<Recording<String>>,
    ) -> Result<Recorded<String>, StoreError>;

    /// Takes each of `costs` in turn from the live key's remaining credits when it has that many, in one
    /// transaction that holds the key's row: concurrent verifications never spend more than there is, on
    /// one node or many, and a spend is durable before it is answered. One outcome per cost, in order.
    async fn spend_credits(
        &self,
        workspace: &WorkspaceId,
        key_id: &str,
        costs: &[i64],
    ) -> Result<Vec<CreditsSpent>, StoreError>;

    /// Applies `changes` to the live key in one transaction, which holds the key's row from its read to its
    /// write, so that concurrent updates (of credits, say) never lose one another. An externalId links the
    /// key as [`create_key`](Self::create_key) does.
    async fn update_key(
        &self,
        workspace: &WorkspaceId,
        key_id: &str,
        changes: &KeyChanges,
        recording: Option<Recording<KeyUpdate>>,
    ) -> Result<Recorded<KeyUpdate>, StoreError>;
}

pub(super) const INSERT_KEY: &str = "INSERT INTO keys (id, workspace_id, api_id, hash, start, name, meta, \
     identity_id, expires, enabled, credits, ratelimits, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// The live key of a live API that `$condition` picks (workspace `$1`), with its live identity, if any.
macro_rules! live_key {
    ($condition:literal) => {
        concat!(
            "SELECT k.id, k.api_id, k.start, k.name, k.meta, k.expires, k.enabled, k.credits, k.ratelimits, \
             k.created_at, k.updated_at, i.id, i.external_id, i.meta, i.ratelimits, \
             COALESCE(k.last_refill_at, k.created_at) FROM keys k \
             JOIN apis a ON a.id = k.api_id AND a.deleted_at IS NULL \
             LEFT JOIN identities i ON i.id = k.identity_id AND i.deleted_at IS NULL \
             WHERE k.workspace_id = $1 AND k.deleted_at IS NULL AND ",
            $condition
        )
    };
}
pub(super) const LIVE_KEY: &str = live_key!("k.id = $2");
/// Served by the unique index on the hash.
pub(super) const LIVE_KEY_BY_HASH: &str = live_key!("k.hash = $2");
/// A page of API `$2`'s live keys in id order, from id `$3` on (inclusive), of identity `$4` alone when it is
/// given, at most `$5` of them; served by `keys_by_api`.
pub(super) const LIVE_KEYS_OF_API: &str = live_key!(
    "k.api_id = $2 AND k.id >= COALESCE($3, '') AND ($4 IS NULL OR k.identity_id = $4) ORDER BY k.id LIMIT $5"
);
/// A page of identity `$2`'s live keys in id order, from id `$3` on (inclusive), at most `$4` of them; served
/// by `keys_by_identity`.
pub(super) const LIVE_KEYS_OF_IDENTITY: &str =
    live_key!("k.identity_id = $2 AND k.id >= COALESCE($3, '') ORDER BY k.id LIMIT $4");

/// Re-checking `deleted_at` on the row makes the second of two concurrent deletes match nothing; a key of a
/// deleted API is no live key, as [`LIVE_KEY`] has it.
pub(super) const SOFT_DELETE_KEY: &str = "UPDATE keys SET deleted_at = $3 WHERE workspace_id = $1 AND id = $2 \
     AND deleted_at IS NULL AND EXISTS (SELECT 1 FROM apis a WHERE a.id = keys.api_id AND a.deleted_at IS NULL) \
     RETURNING hash";
pub(super) const DELETE_KEY_ROW: &str = "DELETE FROM keys WHERE workspace_id = $1 AND id = $2 \
     AND deleted_at IS NULL AND EXISTS (SELECT 1 FROM apis a WHERE a.id = keys.api_id AND a.deleted_at IS NULL) \
     RETURNING hash";

/// Takes the live key's row for this transaction (on PostgreSQL, an UPDATE locks the row even when it
/// changes nothing) and reads the fields an update changes.
pub(super) const HOLD_LIVE_KEY: &str = "UPDATE keys SET updated_at = updated_at WHERE workspace_id = $1 \
     AND id = $2 AND deleted_at IS NULL \
     AND EXISTS (SELECT 1 FROM apis a WHERE a.id = keys.api_id AND a.deleted_at IS NULL) \
     RETURNING name, meta, expires, enabled, credits, ratelimits, COALESCE(last_refill_at, created_at)";
/// Credits that an update sets (`$10` true) count as refilled then: a refill is due again only from its next
/// day on.
pub(super) const WRITE_KEY_FIELDS: &str = "UPDATE keys SET name = $3, meta = $4, expires = $5, enabled = $6, \
     credits = $7, ratelimits = $8, updated_at = $9, last_refill_at = CASE WHEN $10 THEN $9 ELSE last_refill_at END \
     WHERE workspace_id = $1 AND id = $2 RETURNING hash";
/// [`HOLD_LIVE_KEY`] for a spend: the credits, when they were last refilled or set, and whether the key may
/// still be used. The spend, not the read before it, is when a verification with credits counts: a key
/// disabled or expired in between (on another node, whose notice this one has not heard yet) spends nothing.
pub(super) const HOLD_KEY_CREDITS: &str = "UPDATE keys SET updated_at = updated_at WHERE workspace_id = $1 \
     AND id = $2 AND deleted_at IS NULL \
     AND EXISTS (SELECT 1 FROM apis a WHERE a.id = keys.api_id AND a.deleted_at IS NULL) \
     RETURNING credits, COALESCE(last_refill_at, created_at), enabled, expires";
pub(super) const SET_KEY_CREDITS: &str =
    "UPDATE keys SET credits = $3, last_refill_at = $4 WHERE workspace_id = $1 AND id = $2";
pub(super) const LINK_KEY_TO_IDENTITY: &str = "UPDATE keys SET identity_id = $3 WHERE workspace_id = $1 AND id = $2";

/// A [`HOLD_LIVE_KEY`] row.
pub(super) type KeyFieldsRow = (Option<String>, Option<String>, Option<i64>, bool, Option<String>, String, i64);

/// The key's fields as an update finds them. With `refilled_at` (an update of credits, at that moment),
/// credits whose refill fell due since they were last refilled or set are refilled first, so that the change
/// applies to what the key holds then.
pub(super) fn key_fields(key_id: &str, row: KeyFieldsRow, refilled_at: Option<i64>) -> Result<KeyFields, StoreError> {
    let (name, meta, expires, enabled, credits, ratelimits, last_refilled) = row;
    let invalid =
        |what: &str, error: serde_json::Error| StoreError::InvalidData(format!("{what} of key {key_id}: {error}"));
    Ok(KeyFields {
        name,
        meta,
        expires,
        enabled,
        credits: credits
            .map(|text| {
                serde_json::from_str::<Credits>(&text).map(|credits| match refilled_at {
                    Some(now_ms) => credits.refilled(last_refilled, now_ms).0,
                    None => credits,
                })
            })
            .transpose()
            .map_err(|error| invalid("credits", error))?,
        ratelimits: serde_json::from_str(&ratelimits).map_err(|error| invalid("ratelimits", error))?,
    })
}

/// verifyKey's spends of a key's (workspace, key id) credits, combined (`combiner.rs`): 32 concurrent
/// verifications of one key with credits, each spend a write of its own, ran at 6,745 a second on SQLite
/// and 1,519 on PostgreSQL (`cargo bench --bench sigil`); combined, 13,183 and 7,395.
pub type CreditSpends = Combiner<(WorkspaceId, String), i64, CreditsSpent>;

pub fn credit_spends(store: Arc<dyn Store>) -> Arc<CreditSpends> {
    Combiner::new(Box::new(move |(workspace, key_id), costs| {
        let store = Arc::clone(&store);
        Box::pin(async move { store.spend_credits(&workspace, &key_id, &costs).await })
    }))
}

/// Each cost taken in turn from `remaining` (`None`: unlimited) when that many are left; what each did, and
/// what is left after all of them.
pub(super) fn spend_in_turn(remaining: Option<i64>, costs: &[i64]) -> (Vec<CreditsSpent>, Option<i64>) {
    let Some(mut left) = remaining else {
        return (vec![CreditsSpent::Unlimited; costs.len()], None);
    };
    let spent = costs
        .iter()
        .map(|&cost| {
            if left < cost {
                CreditsSpent::Exceeded { remaining: left }
            } else {
                left -= cost;
                CreditsSpent::Spent { remaining: left }
            }
        })
        .collect();
    (spent, Some(left))
}

/// JSON text of what the store keeps as JSON.
pub(super) fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::InvalidData(error.to_string()))
}

/// The credits a key's stored JSON holds.
pub fn parse_credits(text: &str) -> Result<Credits, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::InvalidData(format!("credits: {error}")))
}

/// A [`LIVE_KEY`] row.
pub(super) type LiveKeyRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    bool,
    Option<String>,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

pub(super) fn stored_key(row: LiveKeyRow) -> Result<StoredKey, StoreError> {
    let (
        id,
        api_id,
        start,
        name,
        meta,
        expires,
        enabled,
        credits,
        ratelimits,
        created_at,
        updated_at,
        identity_id,
        external_id,
        identity_meta,
        identity_ratelimits,
        last_refilled,
    ) = row;
    let identity = match (identity_id, external_id, identity_meta, identity_ratelimits) {
        (Some(identity_id), Some(external_id), Some(identity_meta), Some(identity_ratelimits)) => {
            let meta = crate::store::identities::stored_meta(&identity_id, identity_meta)?;
            let ratelimits = crate::store::identities::stored_ratelimits(&identity_id, identity_ratelimits)?;
            Some(Identity { id: identity_id, external_id, meta, ratelimits })
        }
        _ => None,
    };
    Ok(StoredKey {
        id,
        api_id,
        start,
        name,
        meta,
        expires,
        enabled,
        credits: credits_now(credits, last_refilled)?,
        ratelimits,
        created_at,
        updated_at,
        identity,
    })
}

/// A key's credits as they stand now: a refill that fell due since they were last refilled or set shows, as
/// it would where refills are a job that writes them when due (Unkey's), though here it is written only with
/// the key's next spend or update.
fn credits_now(credits: Option<String>, last_refilled_ms: i64) -> Result<Option<String>, StoreError> {
    let Some(text) = credits else { return Ok(None) };
    match parse_credits(&text)?.refilled(last_refilled_ms, now_ms()) {
        (credits, true) => json_text(&credits).map(Some),
        (_, false) => Ok(Some(text)),
    }
}

/// Implements [`Keys`] for a [`Backend`](super::backend::Backend) that also implements `Identities`.
macro_rules! impl_keys {
    ($store:ty) => {
        // A block of its own, so that the implementation names what it uses as this file does.
        const _: () = {
            use std::sync::Arc;

            use futures::TryStreamExt;

            use $crate::domain::identity::{Creation, NewIdentity, PAGE_BYTES};
            use $crate::domain::ids::new_id;
            use $crate::domain::key::{Credits, KeyChanges};
            use $crate::domain::workspace::WorkspaceId;
            use $crate::store::StoreError;
            use $crate::store::backend::{Backend, now_ms};
            use $crate::store::changes::{Change, Written};
            use $crate::store::idempotency_keys::{Recorded, Recording};
            use $crate::store::keys::*;

            impl $store {
                /// The live key that `query` (a [`LIVE_KEY`] form) picks by `picked`.
                async fn live_key(
                    &self,
                    query: &'static str,
                    workspace: &WorkspaceId,
                    picked: &str,
                ) -> Result<Option<StoredKey>, StoreError> {
                    let (workspace, picked) = (workspace.clone(), picked.to_owned());
                    let row: Option<LiveKeyRow> = self
                        .on_reader(|connection| {
                            Box::pin(async move {
                                Ok(sqlx::query_as(query)
                                    .bind(workspace.as_str())
                                    .bind(picked)
                                    .fetch_optional(connection)
                                    .await?)
                            })
                        })
                        .await?;
                    row.map(stored_key).transpose()
                }
            }

            #[async_trait::async_trait]
            impl Keys for $store {
                async fn get_key(
                    &self,
                    workspace: &WorkspaceId,
                    key_id: &str,
                ) -> Result<Option<StoredKey>, StoreError> {
                    self.live_key(LIVE_KEY, workspace, key_id).await
                }

                async fn list_keys(
                    &self,
                    workspace: &WorkspaceId,
                    of: &KeysOf,
                    cursor: Option<&str>,
                    limit: i64,
                ) -> Result<KeyPage, StoreError> {
                    let owned = (workspace.clone(), of.clone(), cursor.map(str::to_owned));
                    self.on_reader(|connection| {
                        let (workspace, of, cursor) = owned;
                        Box::pin(async move {
                            let page = match of {
                                KeysOf::Api { api_id, identity_id } => sqlx::query_as(LIVE_KEYS_OF_API)
                                    .bind(workspace.as_str())
                                    .bind(api_id)
                                    .bind(cursor)
                                    .bind(identity_id),
                                KeysOf::Identity { identity_id } => sqlx::query_as(LIVE_KEYS_OF_IDENTITY)
                                    .bind(workspace.as_str())
                                    .bind(identity_id)
                                    .bind(cursor),
                            };
                            // Read as a stream, so that rows past the page's end are dropped as they come.
                            // They are read all the same: PostgreSQL sends every row the statement selects,
                            // and rows left unread would fall to the connection's next user.
                            let mut rows = page.bind(limit.saturating_add(1)).fetch(connection);
                            let page_bytes = usize::try_from(PAGE_BYTES).unwrap_or(usize::MAX);
                            let (mut keys, mut bytes, mut next) = (Vec::new(), 0, None);
                            while let Some(row) = rows.try_next().await? {
                                if next.is_some() {
                                    continue;
                                }
                                let key = stored_key(row)?;
                                if i64::try_from(keys.len()).is_ok_and(|read| read >= limit) || bytes >= page_bytes {
                                    next = Some(key.id);
                                    continue;
                                }
                                bytes += key.bytes();
                                keys.push(key);
                            }
                            Ok(KeyPage { keys, next })
                        })
                    })
                    .await
                }

                async fn get_key_by_hash(
                    &self,
                    workspace: &WorkspaceId,
                    hash: &str,
                ) -> Result<Option<Arc<StoredKey>>, StoreError> {
                    let cache = self.caches().and_then(|caches| caches.keys());
                    if let Some(known) = cache.and_then(|cache| cache.get(workspace, hash)) {
                        return Ok(known);
                    }
                    let read = cache.map(|cache| cache.read_version(workspace, hash));
                    let key = self.live_key(LIVE_KEY_BY_HASH, workspace, hash).await?.map(Arc::new);
                    if let (Some(cache), Some(read)) = (cache, read) {
                        cache.insert(workspace, hash, key.as_ref(), read);
                    }
                    Ok(key)
                }

                async fn delete_key(
                    &self,
                    workspace: &WorkspaceId,
                    key_id: &str,
                    permanent: bool,
                    recording: Option<Recording<bool>>,
                ) -> Result<Recorded<bool>, StoreError> {
                    let owned = (workspace.clone(), key_id.to_owned());
                    self.write_recorded(workspace, recording, true, move |connection| {
                        let (workspace, key_id) = owned.clone();
                        Box::pin(async move {
                            let delete = if permanent {
                                sqlx::query_scalar(DELETE_KEY_ROW).bind(workspace.as_str()).bind(key_id)
                            } else {
                                sqlx::query_scalar(SOFT_DELETE_KEY).bind(workspace.as_str()).bind(key_id).bind(now_ms())
                            };
                            let deleted: Option<String> = delete.fetch_optional(&mut *connection).await?;
                            Ok(match deleted {
                                Some(hash) => Written::new(true, vec![Change::key(&workspace, &hash)]),
                                None => Written::unchanged(false),
                            })
                        })
                    })
                    .await
                }

                async fn spend_credits(
                    &self,
                    workspace: &WorkspaceId,
                    key_id: &str,
                    costs: &[i64],
                ) -> Result<Vec<CreditsSpent>, StoreError> {
                    let owned = (workspace.clone(), key_id.to_owned(), costs.to_vec());
                    self.write(move |connection| {
                        let (workspace, key_id, costs) = owned.clone();
                        Box::pin(async move {
                            let held: Option<(Option<String>, i64, bool, Option<i64>)> =
                                sqlx::query_as(HOLD_KEY_CREDITS)
                                    .bind(workspace.as_str())
                                    .bind(&key_id)
                                    .fetch_optional(&mut *connection)
                                    .await?;
                            let Some((credits, last_refilled, enabled, expires)) = held else {
                                return Ok(Written::unchanged(vec![CreditsSpent::NotFound; costs.len()]));
                            };
                            let now = now_ms();
                            let unusable = if !enabled {
                                Some(CreditsSpent::Disabled)
                            } else {
                                expires
                                    .filter(|&expires| now > expires)
                                    .map(|expires| CreditsSpent::Expired { expires })
                            };
                            if let Some(unusable) = unusable {
                                return Ok(Written::unchanged(vec![unusable; costs.len()]));
                            }
                            let Some(credits) = credits.as_deref().map(parse_credits).transpose()? else {
                                return Ok(Written::unchanged(vec![CreditsSpent::Unlimited; costs.len()]));
                            };
                            let (credits, refilled) = credits.refilled(last_refilled, now);
                            let (spent, left) = spend_in_turn(credits.remaining, &costs);
                            if left != credits.remaining || refilled {
                                let credits = Credits { remaining: left, ..credits };
                                sqlx::query(SET_KEY_CREDITS)
                                    .bind(workspace.as_str())
                                    .bind(&key_id)
                                    .bind(json_text(&credits)?)
                                    .bind(if refilled { now } else { last_refilled })
                                    .execute(&mut *connection)
                                    .await?;
                            }
                            Ok(Written::unchanged(spent))
                        })
                    })
                    .await
                    .inspect_err(|error| self.write_failed(error))
                }

                async fn update_key(
                    &self,
                    workspace: &WorkspaceId,
                    key_id: &str,
                    changes: &KeyChanges,
                    recording: Option<Recording<KeyUpdate>>,
                ) -> Result<Recorded<KeyUpdate>, StoreError> {
                    let owned = (workspace.clone(), key_id.to_owned(), changes.clone());
                    self.write_recorded(workspace, recording, false, move |connection| {
                        let (workspace, key_id, changes) = owned.clone();
                        Box::pin(async move { Self::update_key_in(connection, &workspace, &key_id, &changes).await })
                    })
                    .await
                }

                async fn create_key(
                    &self,
                    workspace: &WorkspaceId,
                    key: &NewKey,
                    recording: Option<Recording<String>>,
                ) -> Result<Recorded<String>, StoreError> {
                    let owned = (workspace.clone(), key.clone());
                    self.write_recorded(workspace, recording, false, move |connection| {
                        let (workspace, key) = owned.clone();
                        Box::pin(async move { Self::create_key_in(connection, &workspace, &key).await })
                    })
                    .await
                }
            }

            impl $store {
                /// The id of the live identity holding `external_id`, created in this transaction when there
                /// is none.
                async fn identity_for_key_in(
                    connection: &mut <Self as Backend>::Connection,
                    workspace: &WorkspaceId,
                    external_id: &str,
                ) -> Result<Written<String>, StoreError> {
                    let new = NewIdentity {
                        id: None,
                        external_id: external_id.to_owned(),
                        meta: Default::default(),
                        ratelimits: Vec::new(),
                    };
                    Ok(Self::create_identity_in(connection, workspace, &new).await?.map(|outcome| match outcome {
                        Creation::Created { id } => id,
                        Creation::AlreadyExists { existing_id } => existing_id,
                    }))
                }

                async fn create_key_in(
                    connection: &mut <Self as Backend>::Connection,
                    workspace: &WorkspaceId,
                    key: &NewKey,
                ) -> Result<Written<String>, StoreError> {
                    let mut changes = Vec::new();
                    let identity_id = match &key.external_id {
                        None => None,
                        Some(external_id) => {
                            let got = Self::identity_for_key_in(connection, workspace, external_id).await?;
                            changes = got.changes;
                            Some(got.outcome)
                        }
                    };
                    let key_id = new_id("key");
                    sqlx::query(INSERT_KEY)
                        .bind(&key_id)
                        .bind(workspace.as_str())
                        .bind(&key.api_id)
                        .bind(&key.hash)
                        .bind(&key.start)
                        .bind(&key.name)
                        .bind(&key.meta)
                        .bind(identity_id)
                        .bind(key.expires)
                        .bind(key.enabled)
                        .bind(&key.credits)
                        .bind(&key.ratelimits)
                        .bind(now_ms())
                        .execute(&mut *connection)
                        .await?;
                    Ok(Written::new(key_id, changes))
                }

                async fn update_key_in(
                    connection: &mut <Self as Backend>::Connection,
                    workspace: &WorkspaceId,
                    key_id: &str,
                    changes: &KeyChanges,
                ) -> Result<Written<KeyUpdate>, StoreError> {
                    let held: Option<KeyFieldsRow> = sqlx::query_as(HOLD_LIVE_KEY)
                        .bind(workspace.as_str())
                        .bind(key_id)
                        .fetch_optional(&mut *connection)
                        .await?;
                    let Some(held) = held else { return Ok(Written::unchanged(KeyUpdate::NotFound)) };
                    // Changed credits count as refilled now (WRITE_KEY_FIELDS); others are written as they are.
                    let refilled_at = changes.credits.is_some().then(now_ms);
                    let fields = match changes.apply(key_fields(key_id, held, refilled_at)?) {
                        Ok(fields) => fields,
                        Err(refusal) => return Ok(Written::unchanged(KeyUpdate::Refused(refusal))),
                    };
                    let mut identity_changes = Vec::new();
                    if let Some(external_id) = &changes.external_id {
                        let identity_id = match external_id {
                            Some(external_id) => {
                                let got = Self::identity_for_key_in(connection, workspace, external_id).await?;
                                identity_changes = got.changes;
                                Some(got.outcome)
                            }
                            None => None,
                        };
                        sqlx::query(LINK_KEY_TO_IDENTITY)
                            .bind(workspace.as_str())
                            .bind(key_id)
                            .bind(identity_id)
                            .execute(&mut *connection)
                            .await?;
                    }
                    let hash: String = sqlx::query_scalar(WRITE_KEY_FIELDS)
                        .bind(workspace.as_str())
                        .bind(key_id)
                        .bind(&fields.name)
                        .bind(&fields.meta)
                        .bind(fields.expires)
                        .bind(fields.enabled)
                        .bind(fields.credits.as_ref().map(json_text).transpose()?)
                        .bind(json_text(&fields.ratelimits)?)
                        .bind(now_ms())
                        .bind(changes.credits.is_some())
                        .fetch_one(&mut *connection)
                        .await?;
                    let mut written = identity_changes;
                    written.push(Change::key(workspace, &hash));
                    // On PostgreSQL the key's API may have been deleted since the key was held: its key is then
                    // no live key, and the update is answered as one of a missing key.
                    let row: Option<LiveKeyRow> = sqlx::query_as(LIVE_KEY)
                        .bind(workspace.as_str())
                        .bind(key_id)
                        .fetch_optional(&mut *connection)
                        .await?;
                    Ok(match row {
                        Some(row) => Written::new(KeyUpdate::Updated(Box::new(stored_key(row)?)), written),
                        None => Written::new(KeyUpdate::NotFound, written),
                    })
                }
            }
        };
    };
}
pub(super) use impl_keys;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    /// A spend holds the key's row: a key disabled or expired after the verification read it (a disable
    /// committed in between, on this node or another) spends nothing. The read and the spend are two steps of
    /// one request, so no request can be paused between them; the store is asked directly.
    #[tokio::test]
    async fn a_spend_takes_nothing_from_a_key_disabled_or_expired_since_it_was_read() {
        use sqlx::{Connection, SqliteConnection};
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("sigil.db").display());
        let store = SqliteStore::open(&url).await.expect("open");
        let mut beside = SqliteConnection::connect(&url).await.expect("connect");
        let setup = "INSERT INTO workspaces (id, name, created_at) VALUES ('ws_1', 'one', 0); \
            INSERT INTO apis (id, workspace_id, name, created_at) VALUES ('api_1', 'ws_1', 'production', 0); \
            INSERT INTO keys (id, workspace_id, api_id, hash, start, enabled, credits, created_at) \
            VALUES ('key_1', 'ws_1', 'api_1', 'hash_1', 'sk', TRUE, '{\"remaining\":5}', 0)";
        let mut run = async |statement: String| {
            sqlx::raw_sql(&statement).execute(&mut beside).await.expect("statement");
        };
        run(setup.to_owned()).await;
        let workspace = WorkspaceId::from_stored("ws_1".to_owned());
        let spend = || store.spend_credits(&workspace, "key_1", &[1, 2]);
        run("UPDATE keys SET enabled = FALSE".to_owned()).await;
        assert_eq!(spend().await.expect("spend"), vec![CreditsSpent::Disabled; 2]);
        let expired_at = now_ms() - 1000;
        run(format!("UPDATE keys SET enabled = TRUE, expires = {expired_at}")).await;
        assert_eq!(spend().await.expect("spend"), vec![CreditsSpent::Expired { expires: expired_at }; 2]);
        run("UPDATE keys SET expires = NULL".to_owned()).await;
        let spent = vec![CreditsSpent::Spent { remaining: 4 }, CreditsSpent::Spent { remaining: 2 }];
        assert_eq!(spend().await.expect("spend"), spent, "nothing was taken before");
        store.close().await;
    }

    #[test]
    fn costs_are_taken_in_turn_while_enough_is_left() {
        let (spent, left) = spend_in_turn(Some(5), &[4, 2, 1, 3]);
        let expected = [
            CreditsSpent::Spent { remaining: 1 },
            CreditsSpent::Exceeded { remaining: 1 },
            CreditsSpent::Spent { remaining: 0 },
            CreditsSpent::Exceeded { remaining: 0 },
        ];
        assert_eq!((spent, left), (expected.to_vec(), Some(0)));
        assert_eq!(spend_in_turn(None, &[1, 9]), (vec![CreditsSpent::Unlimited; 2], None));
        assert_eq!(spend_in_turn(Some(3), &[]), (vec![], Some(3)));
    }
}
