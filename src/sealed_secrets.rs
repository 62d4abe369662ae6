//! Secrets in recorded answers, sealed. A write's answer is recorded for replay (`idempotency.rs`), and
//! createKey's answer holds the new key, of which the database must never hold the plaintext. The record
//! keeps the secret sealed with AES-256-GCM under a key that is not in the database (`SIGIL_RECORD_KEY`),
//! bound to its record (workspace, Idempotency-Key and request fingerprint, as associated data), so that a
//! copy of the database, a backup or a replica holds no usable key, and a sealed value moved to another
//! record does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::TryRngCore;
use sha2::{Digest, Sha256};

/// What a sealed value starts with in a recorded body, where it stands for the secret.
const SEALED: &str = "sigil-sealed:v1:";
/// What a recorded body with sealed values starts with, and no JSON body can: only such a body is opened,
/// so a string of a client's that looks like a sealed value is never taken for one.
const SEALED_BODY: &str = "sigil-sealed-body:v1\n";
const NONCE_BYTES: usize = 12;

/// The key that seals secrets in recorded answers.
pub struct RecordKey {
    cipher: Aes256Gcm,
    /// SHA-256 of the key and a label: tells keys apart without telling anything of them.
    check: String,
}

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("RecordKey(…)")
    }
}

impl RecordKey {
    /// From 32 bytes in standard base64 (`openssl rand -base64 32`).
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let bytes = STANDARD.decode(text.trim()).map_err(|error| format!("the record key is not base64: {error}"))?;
        let cipher = Aes256Gcm::new_from_slice(&bytes)
            .map_err(|_| format!("the record key must be 32 bytes, not {}", bytes.len()))?;
        let check = STANDARD.encode(Sha256::digest([bytes.as_slice(), b"sigil record key check"].concat()));
        Ok(Self { cipher, check })
    }

    /// A value that is the same for the same key and tells nothing of it, for nodes to compare keys.
    pub fn check_value(&self) -> &str {
        &self.check
    }

    fn seal(&self, secret: &str, bound_to: &str) -> String {
        let mut nonce = [0_u8; NONCE_BYTES];
        rand::rngs::OsRng.try_fill_bytes(&mut nonce).expect("the operating system gives random bytes");
        let payload = Payload { msg: secret.as_bytes(), aad: bound_to.as_bytes() };
        let sealed = self.cipher.encrypt(Nonce::from_slice(&nonce), payload).expect("AES-GCM seals any short message");
        format!("{SEALED}{}", STANDARD.encode([nonce.as_slice(), &sealed].concat()))
    }

    fn open(&self, sealed: &str, bound_to: &str) -> Option<String> {
        let bytes = STANDARD.decode(sealed).ok()?;
        let (nonce, ciphertext) = bytes.split_at_checked(NONCE_BYTES)?;
        let payload = Payload { msg: ciphertext, aad: bound_to.as_bytes() };
        String::from_utf8(self.cipher.decrypt(Nonce::from_slice(nonce), payload).ok()?).ok()
    }
}

/// `body` with `secret` sealed wherever it stands, marked as holding sealed values. Without a key nothing
/// can be sealed, so the secret is left out: a record never holds a plaintext secret.
pub fn seal_in(body: &str, secret: &str, key: Option<&RecordKey>, bound_to: &str) -> String {
    let sealed = match key {
        Some(key) => key.seal(secret, bound_to),
        None => format!("{SEALED}not-kept"),
    };
    format!("{SEALED_BODY}{}", body.replace(secret, &sealed))
}

/// `body` with every sealed value opened; `None` when one does not open (the record key changed, or the
/// value was not sealed for this record).
pub fn open_in(body: String, key: Option<&RecordKey>, bound_to: &str) -> Option<String> {
    let Some(body) = body.strip_prefix(SEALED_BODY) else { return Some(body) };
    let key = key?;
    let mut opened = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(start) = rest.find(&format!("\"{SEALED}")) {
        let value = &rest[start + 1 + SEALED.len()..];
        let end = value.find('"')?;
        opened.push_str(&rest[..=start]);
        opened.push_str(&key.open(&value[..end], bound_to)?);
        rest = &value[end..];
    }
    opened.push_str(rest);
    Some(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RecordKey {
        RecordKey::from_base64(&STANDARD.encode([7_u8; 32])).expect("32 bytes")
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_record_and_under_its_key() {
        let body = r#"{"data":{"keyId":"key_1","key":"sk_abc"}}"#;
        let sealed = seal_in(body, "sk_abc", Some(&key()), "ws\0idem\0fp");
        assert!(!sealed.contains("sk_abc") && sealed.contains(SEALED), "{sealed}");
        assert_eq!(open_in(sealed.clone(), Some(&key()), "ws\0idem\0fp").as_deref(), Some(body));
        assert_eq!(open_in(sealed.clone(), Some(&key()), "ws\0other\0fp"), None, "bound to its record");
        let other = RecordKey::from_base64(&STANDARD.encode([8_u8; 32])).expect("32 bytes");
        assert_eq!(open_in(sealed.clone(), Some(&other), "ws\0idem\0fp"), None, "another key");
        assert_eq!(open_in(sealed, None, "ws\0idem\0fp"), None, "no key");
        assert!(!seal_in(body, "sk_abc", None, "b").contains("sk_abc"), "without a key the secret is left out");
        assert_eq!(open_in(body.to_owned(), None, "b").as_deref(), Some(body), "nothing sealed, nothing to open");
        let lookalike = format!(r#"{{"meta":{{"n":"{SEALED}x"}}}}"#);
        assert_eq!(open_in(lookalike.clone(), None, "b"), Some(lookalike), "a client's string is not opened");
        assert!(RecordKey::from_base64("c2hvcnQ=").is_err());
        assert_eq!(key().check_value(), key().check_value());
        assert_ne!(key().check_value(), other.check_value());
    }
}
