//! Root keys, kept in memory briefly so a request does not pay a database round trip to learn its
//! workspace. A revoked key is voided at once on the node that revoked it and, on PostgreSQL, on every node
//! that hears the change; an entry lives at most [`TIME_TO_LIVE`] whatever happens, which bounds what no
//! notice reaches (a key revoked beside a SQLite server, or a notice lost). Keys that do not exist are
//! remembered too, so a client retrying with a wrong key in a loop does not reach the database on every
//! request. That cannot hide a new key: a key is random and shown only once it is stored, so nobody can
//! present it before it exists.

use std::sync::atomic::{AtomicU64, Ordering};

use moka::sync::Cache;

use crate::store::caches::CacheHasher;

use crate::domain::permission::RootKey;

/// The same bound as for identities.
pub use crate::store::identity_cache::TIME_TO_LIVE;

const CAPACITY: u64 = 10_000;

pub(super) struct RootKeyCache {
    /// `None`: no key has this hash.
    by_hash: Cache<String, Option<RootKey>, CacheHasher>,
    /// Bumped by every revocation heard: a read that began before one stores nothing (it may have read
    /// the key just before it was revoked).
    generation: AtomicU64,
}

/// The generation a read began in, to be handed back to [`RootKeyCache::insert`].
pub(super) struct ReadGeneration(u64);

impl Default for RootKeyCache {
    fn default() -> Self {
        Self {
            by_hash: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TIME_TO_LIVE)
                .build_with_hasher(CacheHasher::new()),
            generation: AtomicU64::new(0),
        }
    }
}

impl RootKeyCache {
    /// `Some(None)`: known not to exist.
    pub fn get(&self, key_hash: &str) -> Option<Option<RootKey>> {
        self.by_hash.get(key_hash)
    }

    /// To be taken before reading a key from the database.
    pub fn read_generation(&self) -> ReadGeneration {
        ReadGeneration(self.generation.load(Ordering::SeqCst))
    }

    pub fn insert(&self, key_hash: &str, found: Option<RootKey>, read: ReadGeneration) {
        if self.generation.load(Ordering::SeqCst) != read.0 {
            return;
        }
        self.by_hash.insert(key_hash.to_owned(), found);
        // A revocation heard between the check and the insert voids what was just stored.
        if self.generation.load(Ordering::SeqCst) != read.0 {
            self.by_hash.invalidate(key_hash);
        }
    }

    pub fn forget(&self, key_hash: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.by_hash.invalidate(key_hash);
    }

    pub fn void_everything(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.by_hash.invalidate_all();
    }
}
