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

/// An answered request, as stored for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// What holds an idempotency key: the answer of the request that ran under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub fingerprint: String,
    pub response: StoredResponse,
}

/// What a key's record answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedAnswer {
    /// The same request was answered under this key: its answer, to send again.
    Replay(StoredResponse),
    /// The key holds the answer of a different request (another operation, body or root key).
    KeyReused,
}

impl IdempotencyRecord {
    /// What this record answers a request with `fingerprint`.
    pub fn answer_for(self, fingerprint: &str) -> RecordedAnswer {
        if self.fingerprint == fingerprint { RecordedAnswer::Replay(self.response) } else { RecordedAnswer::KeyReused }
    }
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
}
