//! Two `sigil serve` processes on one PostgreSQL database, for the tests of what nodes share: ratelimit
//! counters (in PostgreSQL, or in Redis) and what each keeps of keys in memory.

use futures::future::join_all;
use serde_json::{Value, json};

use crate::harness::{Backend, SigilProcess, TestDatabase};
use crate::keys::{COUNTED_WINDOW_MS, start_well_inside_a_counted_window};

pub struct TwoNodes {
    pub first: SigilProcess,
    pub second: SigilProcess,
    root_key: String,
    _database: TestDatabase,
}

impl TwoNodes {
    /// Both started with the `serve` `options`; `None` when PostgreSQL is unreachable outside CI.
    pub async fn start(options: &[&str]) -> Option<Self> {
        let database = TestDatabase::create(Backend::Postgres).await?;
        let url = database.url();
        let (first, second) =
            tokio::join!(SigilProcess::start_with(&url, options), SigilProcess::start_with(&url, options));
        let root_key = crate::harness::admin_key(&url).await;
        Some(Self { first, second, root_key, _database: database })
    }

    /// The body of a 200 to `operation` on `node`.
    pub async fn call(&self, node: &SigilProcess, operation: &str, body: Value) -> Value {
        let response = node.call(operation, &self.root_key, body).await;
        assert_eq!(response.status, 200, "{operation}: {}", response.text);
        response.body
    }

    /// `count` keys, made on the first node, of identity `user_1`, whose limits are `ratelimits`.
    pub async fn keys_of_one_identity(&self, ratelimits: Value, count: usize) -> Vec<(String, String)> {
        self.call(&self.first, "identities.createIdentity", json!({"externalId": "user_1", "ratelimits": ratelimits}))
            .await;
        let api = self.call(&self.first, "apis.createApi", json!({"name": "production"})).await;
        let mut keys = Vec::new();
        for _ in 0..count {
            let body = json!({"apiId": api["data"]["apiId"], "externalId": "user_1"});
            let created = self.call(&self.first, "keys.createKey", body).await;
            let (key_id, key) = (&created["data"]["keyId"], &created["data"]["key"]);
            keys.push((key_id.as_str().expect("keyId").to_owned(), key.as_str().expect("key").to_owned()));
        }
        keys
    }

    /// 200 verifications, alternating nodes and two keys of one identity whose limit is 50: exactly 50 pass.
    pub async fn give_exactly_an_identitys_limit_of_valid_verifications(&self) {
        start_well_inside_a_counted_window().await;
        let limit = json!([{"name": "requests", "limit": 50, "duration": COUNTED_WINDOW_MS, "autoApply": true}]);
        let keys = self.keys_of_one_identity(limit, 2).await;
        let verifications = (0..200).map(|n| {
            let node = if n % 2 == 0 { &self.first } else { &self.second };
            let body = json!({"key": keys[(n / 2) % 2].1});
            async move { self.call(node, "keys.verifyKey", body).await["data"]["code"].clone() }
        });
        let codes = join_all(verifications).await;
        assert_eq!(codes.iter().filter(|code| **code == "VALID").count(), 50, "{codes:?}");
        assert_eq!(codes.iter().filter(|code| **code == "RATE_LIMITED").count(), 150, "{codes:?}");
    }
}
