//! API keys: how one is made, and what is kept of it. The key itself is shown once, when it is created;
//! only its hash is stored, computed as Unkey computes it, so that a database moved from Unkey verifies.

use base64::Engine;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

/// Random bytes in a key when the request names no length, as in Unkey.
pub const DEFAULT_BYTE_LENGTH: usize = 16;

/// A new key's secret parts.
pub struct MadeKey {
    /// `<prefix>_<base58 of random bytes>`: the only time it exists is in the create's answer.
    pub key: String,
    /// SHA-256 of the whole key, in standard base64 with padding (44 characters).
    pub hash: String,
    /// The prefix and the first 4 characters after it, shown to tell keys apart.
    pub start: String,
}

/// A key of `byte_length` random bytes from the operating system's CSPRNG, base58-encoded (Bitcoin's
/// alphabet) after `prefix` and `_`.
pub fn make_key(prefix: Option<&str>, byte_length: usize) -> Result<MadeKey, rand::rand_core::OsError> {
    let mut random = vec![0_u8; byte_length];
    rand::rngs::OsRng.try_fill_bytes(&mut random)?;
    let encoded = bs58::encode(&random).into_string();
    let head: String = encoded.chars().take(4).collect();
    let (key, start) = match prefix {
        Some(prefix) => (format!("{prefix}_{encoded}"), format!("{prefix}_{head}")),
        None => (encoded, head),
    };
    Ok(MadeKey { hash: hash(&key), key, start })
}

/// The stored form of a key.
pub fn hash(key: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_its_prefix_and_base58_and_is_stored_as_unkey_stores_it() {
        let made = make_key(Some("sk_live"), 16).expect("random bytes");
        let encoded = made.key.strip_prefix("sk_live_").expect("prefixed");
        assert!((21..=22).contains(&encoded.len()), "{encoded}");
        assert!(encoded.chars().all(|c| c.is_ascii_alphanumeric() && !"0OIl".contains(c)));
        assert_eq!(made.start, format!("sk_live_{}", &encoded[..4]));
        assert_eq!(made.hash.len(), 44);
        // SHA-256 of "abc", in standard base64.
        assert_eq!(hash("abc"), "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
        assert_ne!(make_key(None, 16).expect("random").key, make_key(None, 16).expect("random").key);
    }
}
