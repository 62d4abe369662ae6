//! What a serving node keeps in memory, and how a change makes it true again.

use crate::domain::workspace::WorkspaceId;
use crate::store::changes::Change;
use crate::store::identity_cache::IdentityCache;
use crate::store::key_cache::KeyCache;
use crate::store::root_key_cache::RootKeyCache;

/// How every in-memory cache hashes its keys. Keys are chosen by callers (externalIds, presented keys'
/// digests), so the hasher is keyed at random per process, as std's SipHash is; aHash, built for that, cost
/// a cached getIdentity 800 fewer instructions (1.3%, callgrind) across the root key and identity caches.
pub(super) type CacheHasher = ahash::RandomState;

pub(super) struct Caches {
    pub identities: IdentityCache,
    keys: KeyCache,
    root_keys: RootKeyCache,
}

impl Caches {
    pub fn new(identities: IdentityCache) -> Self {
        Self { identities, keys: KeyCache::default(), root_keys: RootKeyCache::default() }
    }

    pub fn apply(&self, change: &Change) {
        match change {
            // A new identity has no keys yet: a key linked to it is a change of the key.
            Change::IdentityCreated { workspace, id, external_id } => {
                self.identities.changed(&WorkspaceId::from_stored(workspace.clone()), id, external_id);
            }
            Change::Identity { workspace, id, external_id } => {
                let workspace = WorkspaceId::from_stored(workspace.clone());
                self.identities.changed(&workspace, id, external_id);
                self.keys.identity_changed(&workspace, id);
            }
            Change::Key { workspace, hash } => {
                self.keys.key_changed(&WorkspaceId::from_stored(workspace.clone()), hash);
            }
            Change::RootKey { hash } => self.root_keys.forget(hash),
            Change::Everything => self.void_everything(),
        }
    }

    /// Root keys read, while this node hears other nodes' changes (the identity cache says whether it does).
    pub fn root_keys(&self) -> Option<&RootKeyCache> {
        self.identities.is_serving().then_some(&self.root_keys)
    }

    /// API keys read, under the same condition.
    pub fn keys(&self) -> Option<&KeyCache> {
        self.identities.is_serving().then_some(&self.keys)
    }

    /// What this node read is trusted again, once it hears other nodes' changes again.
    pub fn start_serving(&self) {
        self.root_keys.void_everything();
        self.keys.void_everything();
        self.identities.start_serving();
    }

    pub fn stop_serving(&self) {
        self.identities.stop_serving();
        self.keys.void_everything();
        self.root_keys.void_everything();
    }

    pub fn void_everything(&self) {
        self.identities.void_everything();
        self.keys.void_everything();
        self.root_keys.void_everything();
    }
}
