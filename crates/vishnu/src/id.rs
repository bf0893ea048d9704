//! Session ids: generation from the OS CSPRNG, and the store key derived from them.
//!
//! The id is the bearer secret that the cookie carries. The store never sees it:
//! records are keyed by [`StoreKey`], a SHA-256 hash of the id, so a dump of the
//! store yields nothing that can be replayed as a cookie.

use sha2::{Digest, Sha256};
use std::fmt;

/// Length of a session id in bytes (128 bits, ASVS v5 7.2.3).
pub const ID_LEN: usize = 16;

/// A session id: 128 random bits from the operating system's CSPRNG.
///
/// `Debug` never prints the id itself, only a short prefix of its store key, so
/// that ids do not end up in logs (ASVS v5 16.2.5).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; ID_LEN]);

impl SessionId {
    /// Draws a fresh id from the OS CSPRNG.
    ///
    /// # Errors
    /// Fails only if the operating system cannot provide randomness.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; ID_LEN];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// Builds an id from raw bytes (used by the cookie codec and tests).
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes of the id.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// The key under which the store keeps this session's record.
    pub fn store_key(&self) -> StoreKey {
        StoreKey::hashed(b"vishnu store key v1\0", &self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.store_key();
        write!(f, "SessionId(key {}…)", &key.as_str()[..8])
    }
}

/// The key of a session record in a store: lowercase hex of a SHA-256 hash of the id.
///
/// It is safe to log, to use as a Redis key or an SQL primary key: it cannot be
/// turned back into a cookie.
#[derive(Clone)]
pub struct StoreKey(KeyText);

/// A key's text: inline for a key hashed here (no allocation per request),
/// owned for one read back from a store.
#[derive(Clone)]
enum KeyText {
    /// The digest's hex digits, and its first 64 bits (what
    /// [`digest_bits`](StoreKey::digest_bits) would read back from them).
    Hex([u8; HEX_LEN], u64),
    Stored(String),
}

/// Length of a hashed key's text: SHA-256 in hex.
const HEX_LEN: usize = 64;

/// Each byte's two lowercase hex digits: one lookup per byte of a digest.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [DIGITS[b >> 4], DIGITS[b & 0x0f]];
        b += 1;
    }
    pairs
};

impl StoreKey {
    /// The key as text (64 lowercase hex characters).
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Hex digits are ASCII: the check always passes.
            KeyText::Hex(digits, _) => std::str::from_utf8(digits).unwrap_or_default(),
            KeyText::Stored(key) => key,
        }
    }

    /// The key's text as bytes (no UTF-8 check, for a key written into a
    /// command on every request).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            KeyText::Hex(digits, _) => digits,
            KeyText::Stored(key) => key.as_bytes(),
        }
    }

    /// The key for `bytes` in the key space named by `domain`: lowercase hex
    /// of SHA-256(domain || bytes). The one place store keys are hashed.
    pub(crate) fn hashed(domain: &[u8], bytes: &[u8]) -> Self {
        let digest = Sha256::new()
            .chain_update(domain)
            .chain_update(bytes)
            .finalize();
        let mut hex = [0u8; HEX_LEN];
        for (pair, b) in hex.chunks_exact_mut(2).zip(digest) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        StoreKey(KeyText::Hex(hex, u64::from_be_bytes(first)))
    }

    /// 64 uniformly spread bits of the key's digest (its first 16 hex digits),
    /// for choosing a shard, a lock stripe or a hash bucket. The one place
    /// they are read: each caller takes its own bits from these.
    pub(crate) fn digest_bits(&self) -> u64 {
        match &self.0 {
            KeyText::Hex(_, bits) => *bits,
            KeyText::Stored(key) => digest_bits(key.as_bytes()),
        }
    }

    /// Wraps a key read back from a store. It is not checked: keys only ever
    /// come from [`SessionId::store_key`] or from the store itself.
    pub fn from_stored(key: String) -> Self {
        Self(KeyText::Stored(key))
    }
}

// Equality and order are the text's, however it is held; the hash is the
// digest bits, a function of the text (so equal keys hash alike), known
// without reading it again for a key hashed here.
impl PartialEq for StoreKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for StoreKey {}

impl std::hash::Hash for StoreKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.digest_bits());
    }
}

impl PartialOrd for StoreKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StoreKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey({})", self.as_str())
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// 64 bits from the first 16 hex digits of a store key's text (see [`StoreKey::digest_bits`]).
pub(crate) fn digest_bits(hex: &[u8]) -> u64 {
    hex.iter().take(16).fold(0u64, |acc, &b| {
        let nibble = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b & 0x0f,
        };
        (acc << 4) | u64::from(nibble)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_unique_and_128_bits() {
        let ids: HashSet<[u8; ID_LEN]> = (0..100_000)
            .map(|_| *SessionId::generate().expect("rng").as_bytes())
            .collect();
        assert_eq!(ids.len(), 100_000);
    }

    #[test]
    fn store_key_is_a_fixed_hash_not_the_id() {
        let id = SessionId::from_bytes([7u8; ID_LEN]);
        let key = id.store_key();
        assert_eq!(key.as_str().len(), 64);
        assert!(!key.as_str().contains("0707070707"));
        // Known answer: pins the key derivation shared with the Python front.
        assert_eq!(
            key.as_str(),
            "a9fb41877a60250ed3670b3a13ee16819506608d3d89228e86711659186038eb",
            "if this changed on purpose, every stored session is orphaned"
        );
    }

    #[test]
    fn digest_bits_spread_over_stripes() {
        let key = SessionId::from_bytes([7u8; ID_LEN]).store_key();
        assert_eq!(key.digest_bits(), 0xa9fb_4187_7a60_250e);
        // 1024 stripes, 100 000 keys: the busiest stripe stays near the mean (~98).
        let mut counts = vec![0u32; 1024];
        for _ in 0..100_000 {
            let key = SessionId::generate().expect("rng").store_key();
            counts[(key.digest_bits() % 1024) as usize] += 1;
        }
        let max = counts.iter().max().copied().unwrap_or(0);
        assert!(counts.iter().all(|&c| c > 0), "every stripe is used");
        assert!(max < 160, "busiest stripe holds {max}");
    }

    #[test]
    fn a_key_read_back_equals_the_hashed_key() {
        use std::hash::{BuildHasher, RandomState};
        let hashed = SessionId::from_bytes([7u8; ID_LEN]).store_key();
        let stored = StoreKey::from_stored(hashed.as_str().to_owned());
        assert_eq!(hashed, stored);
        assert_eq!(hashed.cmp(&stored), std::cmp::Ordering::Equal);
        let state = RandomState::new();
        assert_eq!(state.hash_one(&hashed), state.hash_one(&stored));
        assert_eq!(hashed.digest_bits(), stored.digest_bits());
        assert_eq!(
            format!("{hashed} {hashed:?}"),
            format!("{stored} {stored:?}")
        );
        let other = SessionId::from_bytes([8u8; ID_LEN]).store_key();
        assert_ne!(hashed, other);
        assert_eq!(hashed.cmp(&other), hashed.as_str().cmp(other.as_str()));
    }

    #[test]
    fn debug_does_not_print_the_id() {
        let id = SessionId::from_bytes([0xab; ID_LEN]);
        assert!(!format!("{id:?}").contains("abab"));
    }
}
