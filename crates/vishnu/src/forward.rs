//! Forwards: where a session went after its id changed, readable only with the old id.
//!
//! When a session's id changes (cycle or renewal) its old key holds a
//! [`Moved`](crate::record::Moved) record for a grace window. The new id is
//! kept there sealed with AES-256-GCM under
//! `HKDF-SHA256(salt = "vishnu forward v1", ikm = old id, info = "vishnu forward key")`.
//! The store sees only SHA-256 of the old id (its key), never the old id, so a
//! dump of the store cannot open a forward: nothing in it is a usable cookie.
//! A request that carries the old id can open it, which is exactly who the
//! renewal grace window serves.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use sha2::Sha256;

use crate::id::{SessionId, ID_LEN};

const NONCE_LEN: usize = 12;

fn cipher(old: &SessionId) -> Aes256Gcm {
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's output limit: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(b"vishnu forward v1"), old.as_bytes())
        .expand(b"vishnu forward key", &mut key);
    Aes256Gcm::new(&key.into())
}

/// Seals `new` so that only a holder of `old` can read it.
///
/// # Errors
/// `getrandom::Error` when no nonce can be drawn.
pub(crate) fn seal(old: &SessionId, new: &SessionId) -> Result<String, getrandom::Error> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)?;
    let sealed = cipher(old)
        .encrypt(Nonce::from_slice(&nonce), new.as_bytes().as_slice())
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(URL_SAFE_NO_PAD.encode(out))
}

/// Opens a forward sealed by [`seal`] with the old id; `None` if it does not open.
pub(crate) fn open(old: &SessionId, sealed: &str) -> Option<SessionId> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    let (nonce, ciphertext) = bytes.split_at_checked(NONCE_LEN)?;
    let plain = cipher(old)
        .decrypt(Nonce::from_slice(nonce), ciphertext)
        .ok()?;
    Some(SessionId::from_bytes(<[u8; ID_LEN]>::try_from(plain).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_old_id_opens_a_forward() {
        let old = SessionId::from_bytes([1; ID_LEN]);
        let new = SessionId::from_bytes([2; ID_LEN]);
        let sealed = seal(&old, &new).expect("rng");
        assert_eq!(open(&old, &sealed), Some(new));
        assert_eq!(open(&SessionId::from_bytes([3; ID_LEN]), &sealed), None);
        // Nothing in it is the new id, its hex, or its store key.
        let hex_new: String = new.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert!(!sealed.contains(&hex_new));
        assert!(!sealed.contains(&URL_SAFE_NO_PAD.encode(new.as_bytes())));
        assert!(!sealed.contains(new.store_key().as_str()));
    }

    #[test]
    fn tampered_or_garbage_forwards_do_not_open() {
        let old = SessionId::from_bytes([1; ID_LEN]);
        let sealed = seal(&old, &SessionId::from_bytes([2; ID_LEN])).expect("rng");
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).expect("b64");
        bytes[NONCE_LEN] ^= 1;
        assert_eq!(open(&old, &URL_SAFE_NO_PAD.encode(&bytes)), None);
        assert_eq!(open(&old, ""), None);
        assert_eq!(open(&old, "!!"), None);
        assert_eq!(open(&old, "AAAA"), None);
    }
}
