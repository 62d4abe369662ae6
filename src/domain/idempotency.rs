//! Idempotency keys (draft-ietf-httpapi-idempotency-key-header): what a valid key is, what makes two
//! requests "the same", and which outcomes are kept for replay.

use sha2::{Digest, Sha256};

pub const MAX_KEY_CHARS: usize = 255;

/// A key is 1–255 visible ASCII characters (an HTTP header value, without spaces at its ends).
pub fn is_valid_key(key: &str) -> bool {
    (1..=MAX_KEY_CHARS).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && key.trim() == key
}

/// Two requests are the same when they come with the same root key (its hash) and name the same operation
/// with the same body bytes. A replay then goes only to the key whose request made the answer, which may
/// hold what another key of the workspace may not read.
pub fn fingerprint(root_key_hash: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(root_key_hash.as_bytes());
    hasher.update([0]);
    hasher.update(path.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hex::encode(hasher.finalize())
}

/// Outcomes of a request that ran are kept and replayed. Anything else (a rejected body, a missing
/// permission, a server failure) releases the key, so a corrected retry can run under it.
pub fn is_replayable(status: u16) -> bool {
    matches!(status, 200..=299 | 404 | 409)
}

/// An answered request, as stored for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// What holds an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub fingerprint: String,
    /// `None` while the first request is still running.
    pub response: Option<StoredResponse>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_characters() {
        assert!(is_valid_key("a"));
        assert!(is_valid_key(&"k".repeat(255)));
        assert!(is_valid_key("order 42/retry-1"));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key(&"k".repeat(256)));
        assert!(!is_valid_key(" padded "));
        assert!(!is_valid_key("tab\there"));
    }

    #[test]
    fn the_fingerprint_covers_operation_and_body() {
        let create = fingerprint("k1", "/v2/identities.createIdentity", b"{\"externalId\":\"a\"}");
        assert_eq!(create, fingerprint("k1", "/v2/identities.createIdentity", b"{\"externalId\":\"a\"}"));
        assert_ne!(create, fingerprint("k1", "/v2/identities.upsertIdentity", b"{\"externalId\":\"a\"}"));
        assert_ne!(create, fingerprint("k1", "/v2/identities.createIdentity", b"{\"externalId\":\"b\"}"));
        assert_ne!(create, fingerprint("k2", "/v2/identities.createIdentity", b"{\"externalId\":\"a\"}"));
    }

    #[test]
    fn only_outcomes_of_requests_that_ran_are_replayable() {
        for status in [200, 404, 409] {
            assert!(is_replayable(status));
        }
        for status in [400, 401, 403, 408, 413, 422, 500, 503] {
            assert!(!is_replayable(status));
        }
    }
}
