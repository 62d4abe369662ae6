//! Root keys, kept in memory briefly so a request does not pay a database round trip to learn its
//! workspace. A cached entry lives at most [`TIME_TO_LIVE`], which bounds how stale a key's permissions can
//! be. Keys that do not exist are remembered too, so a client retrying with a wrong key in a loop does not
//! reach the database on every request. That cannot hide a new key: a key is random and shown only once
//! it is stored, so nobody can present it before it exists.

use std::time::Duration;

use moka::sync::Cache;

use crate::domain::permission::RootKey;
use crate::store::{Store, StoreError};

pub const TIME_TO_LIVE: Duration = Duration::from_secs(30);
const CAPACITY: u64 = 10_000;

#[derive(Clone)]
pub struct RootKeyCache {
    /// `None`: no key has this hash.
    by_hash: Cache<String, Option<RootKey>>,
}

impl Default for RootKeyCache {
    fn default() -> Self {
        Self { by_hash: Cache::builder().max_capacity(CAPACITY).time_to_live(TIME_TO_LIVE).build() }
    }
}

impl RootKeyCache {
    pub async fn find(&self, store: &dyn Store, key_hash: &str) -> Result<Option<RootKey>, StoreError> {
        if let Some(known) = self.by_hash.get(key_hash) {
            return Ok(known);
        }
        let found = store.find_root_key(key_hash).await?;
        self.by_hash.insert(key_hash.to_owned(), found.clone());
        Ok(found)
    }
}
