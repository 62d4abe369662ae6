//! Identities read recently, kept in memory so that a getIdentity need not go to the database. Only
//! `sigil serve` keeps one. On SQLite it holds the database's lock file, so every write to identities passes
//! through this process. PostgreSQL nodes share their database: each node also hears of the others' writes
//! (`postgres/changes.rs`), a little after they commit, and serves nothing from memory while it cannot hear.
//!
//! Coherence without locks. Every (workspace, key) string maps to one of [`VERSIONS`] counters. A write
//! bumps the counters of the identity's id and externalId after it has committed and before it is
//! acknowledged. A read notes the counter before it reads the database and stores what it read with that
//! note, and a stored entry counts only while its note equals the counter. A read that raced a write
//! therefore stores an entry that is void already, and a read that starts after a write was acknowledged
//! never returns what that write replaced.
//!
//! The only writer also remembers which identity holds an externalId, from the creates that collided with
//! it, so that a create repeating a live externalId is answered 409 without waiting for the writer. The
//! same counters void that memory: a delete or a rename bumps the externalId's counter before it is
//! acknowledged, so a create after it goes to the writer and succeeds. Nodes of a shared database hear of
//! other nodes' deletes only after they were acknowledged, so they do not remember holders.
//!
//! No entry is served longer than [`TIME_TO_LIVE`] after it was stored. That bounds what no counter can
//! catch: a write whose request was abandoned (timed out, or its client left) after the write was sent,
//! which may commit without this process bumping anything, and on PostgreSQL a change whose notice never
//! came.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;

use crate::store::caches::CacheHasher;

use crate::domain::identity::Identity;
use crate::domain::workspace::WorkspaceId;

/// The longest an identity is served from memory after it was stored there.
pub const TIME_TO_LIVE: Duration = Duration::from_secs(5);
const VERSIONS: usize = 4096;
/// Bytes of identities (roughly: their ids and meta as JSON) kept at most.
const CAPACITY_BYTES: u64 = 32 * 1024 * 1024;
/// Bytes of externalIds and the ids holding them kept at most.
const HOLDERS_CAPACITY_BYTES: u64 = 8 * 1024 * 1024;

pub(super) struct IdentityCache {
    entries: Cache<String, Entry, CacheHasher>,
    /// The identity holding an externalId (by [`cache_key`]), with the version it was learned at; only
    /// while this process is the only writer.
    holders: Option<Cache<String, Holder, CacheHasher>>,
    versions: Box<[AtomicU64]>,
    hasher: CacheHasher,
    /// Whether entries may be served: false while a PostgreSQL node cannot hear of other nodes' writes.
    serving: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What operators see of the cache, on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityCacheStats {
    /// False while a PostgreSQL node cannot hear of other nodes' writes, and so reads every identity from
    /// the database.
    pub serving: bool,
    /// Reads answered from memory.
    pub hits: u64,
    /// Reads that went to the database.
    pub misses: u64,
}

#[derive(Clone)]
struct Entry {
    identity: Arc<Identity>,
    version: u64,
}

#[derive(Clone)]
struct Holder {
    identity_id: String,
    version: u64,
}

/// The version an entry was read at, to be handed back to [`IdentityCache::insert`].
pub(super) struct ReadVersion(u64);

impl IdentityCache {
    /// For the only process that writes the database: it serves from the start.
    pub fn for_the_only_writer() -> Self {
        Self::build(TIME_TO_LIVE, true, true)
    }

    /// For one of several nodes writing the database: it serves nothing until [`Self::start_serving`].
    pub fn for_a_shared_database() -> Self {
        Self::build(TIME_TO_LIVE, false, false)
    }

    fn build(time_to_live: Duration, serving: bool, only_writer: bool) -> Self {
        let entries = Cache::builder().max_capacity(CAPACITY_BYTES).time_to_live(time_to_live).weigher(
            |key: &String, entry: &Entry| u32::try_from(key.len() + weight(&entry.identity)).unwrap_or(u32::MAX),
        );
        let holders = only_writer.then(|| {
            Cache::builder()
                .max_capacity(HOLDERS_CAPACITY_BYTES)
                .time_to_live(time_to_live)
                .weigher(|key: &String, holder: &Holder| {
                    u32::try_from(key.len() + holder.identity_id.len()).unwrap_or(u32::MAX)
                })
                .build_with_hasher(CacheHasher::new())
        });
        Self {
            entries: entries.build_with_hasher(CacheHasher::new()),
            holders,
            versions: (0..VERSIONS).map(|_| AtomicU64::new(0)).collect(),
            hasher: CacheHasher::new(),
            serving: AtomicBool::new(serving),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The identity `key` (an id or an externalId) named when it was last read, if nothing has changed it since.
    pub fn get(&self, workspace: &WorkspaceId, key: &str) -> Option<Identity> {
        let found = self.current(workspace, key);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn current(&self, workspace: &WorkspaceId, key: &str) -> Option<Identity> {
        if !self.serving.load(Ordering::SeqCst) {
            return None;
        }
        let entry = self.entries.get(&cache_key(workspace, key))?;
        (entry.version == self.version(workspace, key).load(Ordering::SeqCst)).then(|| Identity::clone(&entry.identity))
    }

    /// The id of the live identity holding `external_id`, when this process is the only writer and has seen
    /// it held (read it, or had a create collide with it) since the last change to that externalId.
    pub fn holder_of(&self, workspace: &WorkspaceId, external_id: &str) -> Option<String> {
        let holders = self.holders.as_ref()?;
        let current = self.version(workspace, external_id).load(Ordering::SeqCst);
        let key = cache_key(workspace, external_id);
        if let Some(holder) = holders.get(&key).filter(|holder| holder.version == current) {
            return Some(holder.identity_id);
        }
        let entry = self.entries.get(&key).filter(|entry| entry.version == current)?;
        (entry.identity.external_id == external_id).then(|| entry.identity.id.clone())
    }

    /// Remembers that `identity_id` held `external_id` when a write that began at `read` found it so.
    pub fn insert_holder(&self, workspace: &WorkspaceId, external_id: &str, identity_id: &str, read: ReadVersion) {
        if let Some(holders) = &self.holders {
            let holder = Holder { identity_id: identity_id.to_owned(), version: read.0 };
            holders.insert(cache_key(workspace, external_id), holder);
        }
    }

    /// Whether what this node read may be served: false while a PostgreSQL node cannot hear other nodes.
    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> IdentityCacheStats {
        IdentityCacheStats {
            serving: self.serving.load(Ordering::SeqCst),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
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

    /// Voids every entry, for when writes may have gone unheard.
    pub fn void_everything(&self) {
        for version in &self.versions {
            version.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Call it once the writes of other nodes can be heard again. What was read before then is void.
    pub fn start_serving(&self) {
        self.void_everything();
        self.serving.store(true, Ordering::SeqCst);
    }

    /// Call it when the writes of other nodes can no longer be heard.
    pub fn stop_serving(&self) {
        self.serving.store(false, Ordering::SeqCst);
        self.void_everything();
    }

    fn version(&self, workspace: &WorkspaceId, key: &str) -> &AtomicU64 {
        let slot = self.hasher.hash_one((workspace.as_str(), key)) as usize % VERSIONS;
        &self.versions[slot]
    }
}

/// Workspace ids hold no NUL, so the key is unambiguous.
fn cache_key(workspace: &WorkspaceId, key: &str) -> String {
    [workspace.as_str(), "\0", key].concat()
}

fn weight(identity: &Identity) -> usize {
    identity.id.len() + identity.external_id.len() + identity.meta.get().len() + identity.ratelimits.get().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identity::stored_json;

    fn identity(id: &str, external_id: &str) -> Identity {
        Identity {
            id: id.into(),
            external_id: external_id.into(),
            meta: stored_json("{}".into(), '{').expect("an object"),
            ratelimits: stored_json("[]".into(), '[').expect("an array"),
        }
    }

    #[test]
    fn a_change_voids_both_names_and_a_read_that_raced_it() {
        let cache = IdentityCache::for_the_only_writer();
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

    #[test]
    fn a_shared_database_cache_serves_only_while_it_hears_and_forgets_what_it_read_unheard() {
        let cache = IdentityCache::for_a_shared_database();
        let workspace = WorkspaceId::from_stored("ws_1".to_owned());
        let stored = identity("id_1", "user_1");
        let read = cache.read_version(&workspace, "id_1");
        cache.insert(&workspace, "id_1", &stored, read);
        assert_eq!(cache.get(&workspace, "id_1"), None, "not serving before it can hear other nodes");

        cache.start_serving();
        assert_eq!(cache.get(&workspace, "id_1"), None, "read before it could hear");
        let read = cache.read_version(&workspace, "id_1");
        cache.insert(&workspace, "id_1", &stored, read);
        assert_eq!(cache.get(&workspace, "id_1"), Some(stored.clone()));

        let read_while_deaf = cache.read_version(&workspace, "id_1");
        cache.stop_serving();
        assert_eq!(cache.get(&workspace, "id_1"), None, "deaf");
        cache.insert(&workspace, "id_1", &stored, read_while_deaf);
        cache.start_serving();
        assert_eq!(cache.get(&workspace, "id_1"), None, "read before it could hear again");

        let read = cache.read_version(&workspace, "id_1");
        cache.insert(&workspace, "id_1", &stored, read);
        cache.void_everything();
        assert_eq!(cache.get(&workspace, "id_1"), None, "voided");
    }

    #[test]
    fn an_entry_is_forgotten_after_its_time_to_live() {
        let cache = IdentityCache::build(Duration::from_millis(50), true, true);
        let workspace = WorkspaceId::from_stored("ws_1".to_owned());
        let stored = identity("id_1", "user_1");
        let read = cache.read_version(&workspace, "id_1");
        cache.insert(&workspace, "id_1", &stored, read);
        assert_eq!(cache.get(&workspace, "id_1"), Some(stored));
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(cache.get(&workspace, "id_1"), None);
    }

    #[test]
    fn a_holder_is_known_until_its_external_id_changes_and_only_to_the_only_writer() {
        let cache = IdentityCache::for_the_only_writer();
        let workspace = WorkspaceId::from_stored("ws_1".to_owned());
        assert_eq!(cache.holder_of(&workspace, "user_1"), None);
        let read = cache.read_version(&workspace, "user_1");
        cache.insert_holder(&workspace, "user_1", "id_1", read);
        assert_eq!(cache.holder_of(&workspace, "user_1").as_deref(), Some("id_1"));

        let raced = cache.read_version(&workspace, "user_1");
        cache.changed(&workspace, "id_1", "user_1");
        assert_eq!(cache.holder_of(&workspace, "user_1"), None, "deleted or renamed");
        cache.insert_holder(&workspace, "user_1", "id_1", raced);
        assert_eq!(cache.holder_of(&workspace, "user_1"), None, "learned before the change, stored after it");

        let read = cache.read_version(&workspace, "user_2");
        cache.insert(&workspace, "user_2", &identity("id_2", "user_2"), read);
        assert_eq!(cache.holder_of(&workspace, "user_2").as_deref(), Some("id_2"), "read by externalId");
        let read = cache.read_version(&workspace, "id_3");
        cache.insert(&workspace, "id_3", &identity("id_9", "id_3"), read);
        let read = cache.read_version(&workspace, "id_9");
        cache.insert(&workspace, "id_9", &identity("id_9", "id_3"), read);
        assert_eq!(cache.holder_of(&workspace, "id_9"), None, "an id is not an externalId");

        let shared = IdentityCache::for_a_shared_database();
        shared.start_serving();
        let read = shared.read_version(&workspace, "user_1");
        shared.insert_holder(&workspace, "user_1", "id_1", read);
        assert_eq!(shared.holder_of(&workspace, "user_1"), None, "another node may have deleted it, unheard");
    }
}
