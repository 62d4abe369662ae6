//! API keys read recently by hash, kept in memory so that a `keys.verifyKey` need not go to the database.
//! Kept, and trusted, exactly where identities are ([`super::identity_cache`]): by `sigil serve`, and on
//! PostgreSQL only while the node hears other nodes' changes.
//!
//! An entry holds a key and its live identity, so it goes stale when either changes. Both are versioned as
//! identities are: a key's counter is picked by its hash, which a reader knows before it reads, and is
//! bumped by every write to the key after it commits and before it is acknowledged. The identity is known
//! only once the row is read, so its counter is noted after the read; a read during which any identity
//! changed stores nothing, since the change may have been to this key's identity before its counter was
//! noted. A key that does not exist is remembered too: keys are random and shown only once stored, so none
//! can be presented before it exists, and a deleted key never verifies again.
//!
//! A key with credits is not kept: every verification of it spends in the database anyway, and what a
//! verification shows of its credits (even one that spends nothing) must be what the database holds, which
//! changes with every spend on every node.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use moka::sync::Cache;

use crate::store::caches::CacheHasher;

use crate::domain::workspace::WorkspaceId;
use crate::store::StoredKey;
pub use crate::store::identity_cache::TIME_TO_LIVE;

const VERSIONS: usize = 4096;
/// Bytes of keys (roughly: their fields and their identity's) kept at most.
const CAPACITY_BYTES: u64 = 32 * 1024 * 1024;

pub(super) struct KeyCache {
    by_hash: Cache<String, Entry, CacheHasher>,
    /// Counters of keys, by workspace and hash, and of identities, by workspace and id.
    versions: Box<[AtomicU64]>,
    hasher: CacheHasher,
    /// Bumped by every identity change, before its own counter.
    identity_changes: AtomicU64,
    /// Bumped when everything read is void.
    generation: AtomicU64,
}

#[derive(Clone)]
struct Entry {
    /// `None`: no live key has this hash.
    key: Option<Arc<StoredKey>>,
    key_version: u64,
    identity_version: u64,
    generation: u64,
}

/// What a reader noted before it read a key, to be handed back to [`KeyCache::insert`].
pub(super) struct KeyRead {
    key_version: u64,
    identity_changes: u64,
    generation: u64,
}

impl Default for KeyCache {
    fn default() -> Self {
        let by_hash = Cache::builder().max_capacity(CAPACITY_BYTES).time_to_live(TIME_TO_LIVE).weigher(
            |hash: &String, entry: &Entry| {
                u32::try_from(hash.len() + entry.key.as_deref().map_or(0, StoredKey::bytes)).unwrap_or(u32::MAX)
            },
        );
        Self {
            by_hash: by_hash.build_with_hasher(CacheHasher::new()),
            versions: (0..VERSIONS).map(|_| AtomicU64::new(0)).collect(),
            hasher: CacheHasher::new(),
            identity_changes: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }
}

impl KeyCache {
    /// `Some(None)`: known not to exist. `None`: not known.
    pub fn get(&self, workspace: &WorkspaceId, hash: &str) -> Option<Option<Arc<StoredKey>>> {
        let entry = self.by_hash.get(&cache_key(workspace, hash))?;
        let current = entry.generation == self.generation.load(Ordering::SeqCst)
            && entry.key_version == self.key_version(workspace, hash).load(Ordering::SeqCst)
            && entry.key.as_ref().and_then(|key| key.identity.as_ref()).is_none_or(|identity| {
                entry.identity_version == self.identity_version(workspace, &identity.id).load(Ordering::SeqCst)
            });
        current.then(|| entry.key.clone())
    }

    /// To be taken before reading the key with this hash from the database.
    pub fn read_version(&self, workspace: &WorkspaceId, hash: &str) -> KeyRead {
        KeyRead {
            generation: self.generation.load(Ordering::SeqCst),
            identity_changes: self.identity_changes.load(Ordering::SeqCst),
            key_version: self.key_version(workspace, hash).load(Ordering::SeqCst),
        }
    }

    pub fn insert(&self, workspace: &WorkspaceId, hash: &str, found: Option<&Arc<StoredKey>>, read: KeyRead) {
        if found.is_some_and(|key| key.credits.is_some()) {
            return;
        }
        let identity_version = match found.and_then(|key| key.identity.as_ref()) {
            None => 0,
            Some(identity) => {
                // Noted before the check: an identity change bumps the shared counter first, so a change this
                // note missed is one the check sees.
                let noted = self.identity_version(workspace, &identity.id).load(Ordering::SeqCst);
                if self.identity_changes.load(Ordering::SeqCst) != read.identity_changes {
                    return;
                }
                noted
            }
        };
        let entry =
            Entry { key: found.cloned(), key_version: read.key_version, identity_version, generation: read.generation };
        self.by_hash.insert(cache_key(workspace, hash), entry);
    }

    /// Voids what was read of the key with this hash. Call it after the write committed, before it is
    /// acknowledged.
    pub fn key_changed(&self, workspace: &WorkspaceId, hash: &str) {
        self.key_version(workspace, hash).fetch_add(1, Ordering::SeqCst);
    }

    /// Voids what was read of every key of this identity.
    pub fn identity_changed(&self, workspace: &WorkspaceId, identity_id: &str) {
        self.identity_changes.fetch_add(1, Ordering::SeqCst);
        self.identity_version(workspace, identity_id).fetch_add(1, Ordering::SeqCst);
    }

    pub fn void_everything(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.by_hash.invalidate_all();
    }

    fn key_version(&self, workspace: &WorkspaceId, hash: &str) -> &AtomicU64 {
        self.slot(("key", workspace.as_str(), hash))
    }

    fn identity_version(&self, workspace: &WorkspaceId, identity_id: &str) -> &AtomicU64 {
        self.slot(("identity", workspace.as_str(), identity_id))
    }

    fn slot(&self, named: (&str, &str, &str)) -> &AtomicU64 {
        &self.versions[self.hasher.hash_one(named) as usize % VERSIONS]
    }
}

/// Workspace ids hold no NUL, so the key is unambiguous.
fn cache_key(workspace: &WorkspaceId, hash: &str) -> String {
    format!("{}\0{hash}", workspace.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identity::{Identity, stored_json};

    fn key(identity_id: Option<&str>) -> Arc<StoredKey> {
        Arc::new(StoredKey {
            id: "key_1".into(),
            api_id: "api_1".into(),
            start: "sk_1".into(),
            name: None,
            meta: None,
            expires: None,
            enabled: true,
            credits: None,
            ratelimits: "[]".into(),
            created_at: 0,
            updated_at: None,
            identity: identity_id.map(|id| Identity {
                id: id.into(),
                external_id: "user_1".into(),
                meta: stored_json("{}".into(), '{').expect("an object"),
                ratelimits: stored_json("[]".into(), '[').expect("an array"),
            }),
        })
    }

    fn workspace() -> WorkspaceId {
        WorkspaceId::from_stored("ws_1".to_owned())
    }

    #[test]
    fn a_change_to_the_key_or_its_identity_voids_it() {
        let cache = KeyCache::default();
        let read = cache.read_version(&workspace(), "hash_1");
        cache.insert(&workspace(), "hash_1", Some(&key(Some("id_1"))), read);
        assert!(matches!(cache.get(&workspace(), "hash_1"), Some(Some(_))));
        assert_eq!(cache.get(&WorkspaceId::from_stored("ws_2".to_owned()), "hash_1").map(|_| ()), None);

        cache.identity_changed(&workspace(), "id_1");
        assert!(cache.get(&workspace(), "hash_1").is_none(), "its identity changed");

        let read = cache.read_version(&workspace(), "hash_1");
        cache.insert(&workspace(), "hash_1", Some(&key(Some("id_1"))), read);
        cache.key_changed(&workspace(), "hash_1");
        assert!(cache.get(&workspace(), "hash_1").is_none(), "the key changed");
    }

    #[test]
    fn a_read_that_raced_a_change_stores_nothing_that_counts() {
        let cache = KeyCache::default();
        let raced = cache.read_version(&workspace(), "hash_1");
        cache.key_changed(&workspace(), "hash_1");
        cache.insert(&workspace(), "hash_1", Some(&key(None)), raced);
        assert!(cache.get(&workspace(), "hash_1").is_none(), "the key changed during the read");

        let raced = cache.read_version(&workspace(), "hash_1");
        cache.identity_changed(&workspace(), "id_other");
        cache.insert(&workspace(), "hash_1", Some(&key(Some("id_1"))), raced);
        assert!(cache.get(&workspace(), "hash_1").is_none(), "some identity changed during the read");

        let raced = cache.read_version(&workspace(), "hash_2");
        cache.void_everything();
        cache.insert(&workspace(), "hash_2", None, raced);
        assert!(cache.get(&workspace(), "hash_2").is_none(), "voided during the read");
    }

    #[test]
    fn a_key_with_credits_is_not_kept() {
        let cache = KeyCache::default();
        let read = cache.read_version(&workspace(), "hash_1");
        let with_credits = Arc::new(StoredKey { credits: Some(r#"{"remaining":5}"#.into()), ..(*key(None)).clone() });
        cache.insert(&workspace(), "hash_1", Some(&with_credits), read);
        assert!(cache.get(&workspace(), "hash_1").is_none());
    }

    #[test]
    fn a_missing_key_is_remembered_until_everything_is_void() {
        let cache = KeyCache::default();
        let read = cache.read_version(&workspace(), "hash_1");
        cache.insert(&workspace(), "hash_1", None, read);
        assert!(matches!(cache.get(&workspace(), "hash_1"), Some(None)));
        cache.void_everything();
        assert!(cache.get(&workspace(), "hash_1").is_none());
    }
}
