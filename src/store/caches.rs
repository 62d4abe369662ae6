//! What a serving node keeps in memory, and how a change makes it true again.

use crate::domain::workspace::WorkspaceId;
use crate::store::changes::Change;
use crate::store::identity_cache::IdentityCache;
use crate::store::root_key_cache::RootKeyCache;

pub(super) struct Caches {
    pub identities: IdentityCache,
    root_keys: RootKeyCache,
}

impl Caches {
    pub fn new(identities: IdentityCache) -> Self {
        Self { identities, root_keys: RootKeyCache::default() }
    }

    pub fn apply(&self, change: &Change) {
        match change {
            Change::IdentityCreated { workspace, id, external_id }
            | Change::Identity { workspace, id, external_id } => {
                self.identities.changed(&WorkspaceId::from_stored(workspace.clone()), id, external_id);
            }
            Change::RootKey { hash } => self.root_keys.forget(hash),
            Change::Everything => self.void_everything(),
        }
    }

    /// Root keys read, while this node hears other nodes' changes (the identity cache says whether it does).
    pub fn root_keys(&self) -> Option<&RootKeyCache> {
        self.identities.is_serving().then_some(&self.root_keys)
    }

    pub fn void_everything(&self) {
        self.identities.void_everything();
        self.root_keys.void_everything();
    }
}
