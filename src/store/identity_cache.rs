//! Identities read recently, kept in memory so that a getIdentity need not cross to SQLite's thread. Only
//! the SQLite backend uses it, and only under `sigil serve`, which holds the database's lock file: then
//! every write to identities passes through this process. (PostgreSQL nodes share their database with
//! other nodes, whose writes a cache here would never see.)
//!
//! Coherence without locks. Every (workspace, key) string maps to one of [`VERSIONS`] counters. A write
//! bumps the counters of the identity's id and externalId after it has committed and before it is
//! acknowledged. A read notes the counter before it reads the database and stores what it read with that
//! note, and a stored entry counts only while its note equals the counter. A read that raced a write
//! therefore stores an entry that is void already, and a read that starts after a write was acknowledged
//! never returns what that write replaced.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use moka::sync::Cache;

use crate::domain::identity::Identity;
use crate::domain::workspace::WorkspaceId;

const VERSIONS: usize = 4096;
/// Bytes of identities (roughly: their ids and meta as JSON) kept at most.
const CAPACITY_BYTES: u64 = 32 * 1024 * 1024;

pub(super) struct IdentityCache {
    entries: Cache<String, Entry>,
    versions: Box<[AtomicU64]>,
    hasher: RandomState,
}

#[derive(Clone)]
struct Entry {
    identity: Arc<Identity>,
    version: u64,
}

/// The version an entry was read at, to be handed back to [`IdentityCache::insert`].
pub(super) struct ReadVersion(u64);

impl IdentityCache {
    pub fn new() -> Self {
        let entries = Cache::builder()
            .max_capacity(CAPACITY_BYTES)
            .weigher(|key: &String, entry: &Entry| {
                u32::try_from(key.len() + weight(&entry.identity)).unwrap_or(u32::MAX)
            })
            .build();
        Self { entries, versions: (0..VERSIONS).map(|_| AtomicU64::new(0)).collect(), hasher: RandomState::new() }
    }

    /// The identity `key` (an id or an externalId) named when it was last read, if nothing has changed it since.
    pub fn get(&self, workspace: &WorkspaceId, key: &str) -> Option<Identity> {
        let entry = self.entries.get(&cache_key(workspace, key))?;
        (entry.version == self.version(workspace, key).load(Ordering::SeqCst)).then(|| Identity::clone(&entry.identity))
    }

    /// To be taken before reading `key` from the database.
    pub fn read_version(&self, workspace: &WorkspaceId, key: &str) -> ReadVersion {
        ReadVersion(self.version(workspace, key).load(Ordering::SeqCst))
    }

    pub fn insert(&self, workspace: &WorkspaceId, key: &str, identity: &Identity, read: ReadVersion) {
        let entry = Entry { identity: Arc::new(identity.clone()), version: read.0 };
        self.entries.insert(cache_key(workspace, key), entry);
    }

    /// Voids whatever was read of this identity under either of its names. Call it after the write that
    /// changed the identity committed, and before that write is acknowledged.
    pub fn changed(&self, workspace: &WorkspaceId, identity_id: &str, external_id: &str) {
        for key in [identity_id, external_id] {
            self.version(workspace, key).fetch_add(1, Ordering::SeqCst);
        }
    }

    fn version(&self, workspace: &WorkspaceId, key: &str) -> &AtomicU64 {
        let slot = self.hasher.hash_one((workspace.as_str(), key)) as usize % VERSIONS;
        &self.versions[slot]
    }
}

/// Workspace ids hold no NUL, so the key is unambiguous.
fn cache_key(workspace: &WorkspaceId, key: &str) -> String {
    format!("{}\0{key}", workspace.as_str())
}

fn weight(identity: &Identity) -> usize {
    let meta = serde_json::to_vec(&identity.meta).map_or(0, |json| json.len());
    identity.id.len() + identity.external_id.len() + meta + identity.ratelimits.len() * 64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(id: &str, external_id: &str) -> Identity {
        Identity { id: id.into(), external_id: external_id.into(), meta: Default::default(), ratelimits: Vec::new() }
    }

    #[test]
    fn a_change_voids_both_names_and_a_read_that_raced_it() {
        let cache = IdentityCache::new();
        let workspace = WorkspaceId::from_stored("ws_1".to_owned());
        let stored = identity("id_1", "user_1");
        for key in ["id_1", "user_1"] {
            let read = cache.read_version(&workspace, key);
            cache.insert(&workspace, key, &stored, read);
            assert_eq!(cache.get(&workspace, key), Some(stored.clone()));
        }
        let raced = cache.read_version(&workspace, "user_1");
        cache.changed(&workspace, "id_1", "user_1");
        assert_eq!(cache.get(&workspace, "id_1"), None);
        assert_eq!(cache.get(&workspace, "user_1"), None);
        cache.insert(&workspace, "user_1", &stored, raced);
        assert_eq!(cache.get(&workspace, "user_1"), None, "read before the change, stored after it");
        let other = WorkspaceId::from_stored("ws_2".to_owned());
        assert_eq!(cache.get(&other, "user_1"), None);
    }
}
