//! Authenticated root keys, kept in memory briefly so a request does not pay a database round trip to
//! learn its workspace. Only keys that exist are cached (a newly minted key works at once); a cached
//! entry lives at most [`TIME_TO_LIVE`], which bounds how stale a key's permissions can be.

use std::time::Duration;

use moka::sync::Cache;

use crate::domain::permission::RootKey;
use crate::store::{Store, StoreError};

pub const TIME_TO_LIVE: Duration = Duration::from_secs(30);
const CAPACITY: u64 = 10_000;

#[derive(Clone)]
pub struct RootKeyCache {
    by_hash: Cache<String, RootKey>,
}

impl Default for RootKeyCache {
    fn default() -> Self {
        Self { by_hash: Cache::builder().max_capacity(CAPACITY).time_to_live(TIME_TO_LIVE).build() }
    }
}

impl RootKeyCache {
    pub async fn find(&self, store: &dyn Store, key_hash: &str) -> Result<Option<RootKey>, StoreError> {
        if let Some(root_key) = self.by_hash.get(key_hash) {
            return Ok(Some(root_key));
        }
        let found = store.find_root_key(key_hash).await?;
        if let Some(root_key) = &found {
            self.by_hash.insert(key_hash.to_owned(), root_key.clone());
        }
        Ok(found)
    }
}
