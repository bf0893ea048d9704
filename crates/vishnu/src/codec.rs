//! The cookie value: key derivation, signing, sealing, verification and key rotation.
//!
//! # Format (version 1 signed, version 3 sealed; version 2 is read only)
//!
//! ```text
//! signed:  base64url( 0x01 || payload || HMAC-SHA256(k_sign, 0x01 || len(name) || name || payload) )
//! sealed:  base64url( 0x03 || nonce(12) || AES-256-GCM-SIV(k_siv, nonce, payload || tag, aad = 0x03 || name) )
//!          where tag = HMAC-SHA256(k_sign, 0x03 || len(name) || name || payload)
//! legacy:  base64url( 0x02 || nonce(12) || AES-256-GCM(k_enc, nonce, payload || tag, aad = 0x02 || name) )
//! ```
//!
//! `k_sign = HKDF-SHA256(salt = "vishnu v1", ikm = secret, info = "vishnu cookie signing")`,
//! `k_siv = HKDF-SHA256(salt = "vishnu v1", ikm = encrypt key, info = "vishnu cookie encryption gcm-siv")` and
//! `k_enc = HKDF-SHA256(salt = "vishnu v1", ikm = encrypt key, info = "vishnu cookie encryption")`:
//! separate keys for separate purposes, so changing the encryption key leaves
//! signatures valid and vice versa. The cookie name is authenticated, so the
//! value of one cookie cannot be replayed under another name. base64 is
//! unpadded and canonical: any other spelling of the same bytes is rejected.
//!
//! # Why AES-GCM-SIV
//!
//! Every save and refresh re-seals the cookie with a fresh random 96-bit
//! nonce. With AES-GCM, a repeated nonce under one key reveals the
//! authentication key, and random 96-bit nonces should stay under 2^32
//! encryptions per key (NIST SP 800-38D), which a busy cookie store reaches.
//! AES-GCM-SIV (RFC 8452) is nonce-misuse resistant: a repeated nonce only
//! reveals that two sealed payloads were equal, and its per-key bounds with
//! random nonces are far beyond any cookie volume. Cookies sealed with AES-GCM
//! (version 2) are still opened, reported as [`KeyUsed::Fallback`] so that the
//! engine re-issues them as version 3.
//!
//! For server-side stores the payload is the 16-byte session id. Decoding
//! tries the current secret, then each fallback secret; a value verified with a
//! fallback is reported as such so that the engine re-issues it under the
//! current secret.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aes_gcm_siv::Aes256GcmSiv;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Version byte of a signed (not encrypted) cookie value.
pub const VERSION_SIGNED: u8 = 1;
/// Version byte of a cookie value sealed with AES-256-GCM: still opened, never written.
pub const VERSION_SEALED: u8 = 2;
/// Version byte of a sealed (AES-256-GCM-SIV encrypted) cookie value.
pub const VERSION_SEALED_SIV: u8 = 3;
/// Longest cookie value accepted (RFC 6265bis: name and value ≤ 4096 bytes).
pub const MAX_COOKIE_BYTES: usize = 4096;

const TAG_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const AEAD_TAG_LEN: usize = 16;
const HKDF_SALT: &[u8] = b"vishnu v1";

/// Why a cookie value was rejected. Only ever logged: every variant means
/// "no session" to the client, so the variants are no oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Longer than [`MAX_COOKIE_BYTES`].
    #[error("cookie value is too long")]
    TooLong,
    /// Not canonical unpadded base64url.
    #[error("cookie value is not canonical base64url")]
    Base64,
    /// Unknown version byte, or a signed value where a sealed one is required (and vice versa).
    #[error("cookie value has an unexpected format version")]
    Version,
    /// Too short to hold its authentication.
    #[error("cookie value is truncated")]
    Truncated,
    /// Authentication failed (wrong key, tampered value, or a value made for another cookie name).
    #[error("cookie value failed authentication")]
    Authentication,
    /// The operating system could not provide randomness for a nonce.
    #[error("no randomness available for the cookie nonce")]
    Random,
}

/// Which key authenticated a decoded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsed {
    /// The current secret (and encrypt key).
    Current,
    /// One of the fallback secrets or fallback encrypt keys: re-issue under the current one.
    Fallback,
}

/// Signs/seals and verifies/opens cookie values for one cookie name.
#[derive(Clone)]
pub struct Codec {
    name: Vec<u8>,
    signers: Vec<HmacSha256>,
    /// Seal (the first) and open (all): format 3.
    ciphers: Vec<Aes256GcmSiv>,
    /// Open only: format 2, from before AES-GCM-SIV.
    legacy: Vec<Aes256Gcm>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("cookie_name", &String::from_utf8_lossy(&self.name))
            .field("secrets", &self.signers.len())
            .field("encrypt_keys", &self.ciphers.len())
            .finish()
    }
}

fn derive(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte output limit: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(HKDF_SALT), ikm).expand(info, &mut okm);
    okm
}

/// The HKDF salt of [`framework_secret`]: a separate domain from the codec's own keys.
const FRAMEWORK_SALT: &[u8] = b"vishnu framework secret v1";

/// A web framework's secret key (Flask's and Django's `SECRET_KEY`,
/// Starlette's `secret_key`: any length) turned into a 32-byte vishnu secret
/// with HKDF-SHA256. vishnu's Flask, Django and Starlette fronts sign with
/// this, so a Rust service that derives its secret the same way
/// ([`ConfigBuilder::framework_secret`](crate::ConfigBuilder::framework_secret))
/// shares their sessions. `None` for an empty key.
pub fn framework_secret(key: &[u8]) -> Option<[u8; 32]> {
    if key.is_empty() {
        return None;
    }
    let mut okm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(FRAMEWORK_SALT), key)
        .expand(b"session", &mut okm)
        .ok()?;
    Some(okm)
}

impl Codec {
    /// Builds a codec. `secrets[0]` signs; every secret verifies. When
    /// `encrypt_keys` is non-empty, `encrypt_keys[0]` seals and every key opens.
    /// Lengths are validated by [`crate::Config`]; the codec itself accepts any.
    pub fn new(cookie_name: &str, secrets: &[&[u8]], encrypt_keys: &[&[u8]]) -> Self {
        let signers = secrets
            .iter()
            .map(|s| {
                let key = derive(s, b"vishnu cookie signing");
                // HMAC accepts keys of any length: new_from_slice cannot fail.
                <HmacSha256 as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable!())
            })
            .collect();
        let ciphers = encrypt_keys
            .iter()
            .map(|k| Aes256GcmSiv::new(&derive(k, b"vishnu cookie encryption gcm-siv").into()))
            .collect();
        let legacy = encrypt_keys
            .iter()
            .map(|k| Aes256Gcm::new(&derive(k, b"vishnu cookie encryption").into()))
            .collect();
        Self {
            name: cookie_name.as_bytes().to_vec(),
            signers,
            ciphers,
            legacy,
        }
    }

    /// Whether values are sealed (encrypted) rather than only signed.
    pub fn is_sealed(&self) -> bool {
        !self.ciphers.is_empty()
    }

    /// The MAC state over `version || len(name) || name || payload`.
    fn mac(&self, signer: &HmacSha256, version: u8, payload: &[u8]) -> HmacSha256 {
        let mut mac = signer.clone();
        mac.update(&[version]);
        // The name is at most a few hundred bytes; its length fits in u32.
        mac.update(
            &u32::try_from(self.name.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        mac.update(&self.name);
        mac.update(payload);
        mac
    }

    fn tag(&self, signer: &HmacSha256, version: u8, payload: &[u8]) -> [u8; TAG_LEN] {
        self.mac(signer, version, payload)
            .finalize()
            .into_bytes()
            .into()
    }

    fn verify(&self, version: u8, payload: &[u8], tag: &[u8]) -> Option<KeyUsed> {
        let tag: &[u8; TAG_LEN] = tag.try_into().ok()?;
        self.signers.iter().enumerate().find_map(|(i, signer)| {
            tags_equal(&self.tag(signer, version, payload), tag).then_some(if i == 0 {
                KeyUsed::Current
            } else {
                KeyUsed::Fallback
            })
        })
    }

    /// Encodes `payload` into a cookie value under the current keys.
    ///
    /// # Errors
    /// [`CodecError::Random`] if no nonce could be drawn (sealed mode only).
    pub fn encode(&self, payload: &[u8]) -> Result<String, CodecError> {
        if self.is_sealed() {
            let mut nonce = [0u8; NONCE_LEN];
            getrandom::fill(&mut nonce).map_err(|_| CodecError::Random)?;
            self.seal(payload, nonce)
        } else {
            Ok(self.sign(payload))
        }
    }

    fn sign(&self, payload: &[u8]) -> String {
        let mut raw = Vec::with_capacity(1 + payload.len() + TAG_LEN);
        raw.push(VERSION_SIGNED);
        raw.extend_from_slice(payload);
        if let Some(signer) = self.signers.first() {
            raw.extend_from_slice(&self.tag(signer, VERSION_SIGNED, payload));
        }
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Seals with a given nonce: deterministic, for the fuzzer's round-trip
    /// checks only (built with `--cfg fuzzing`), never public API otherwise.
    #[cfg(fuzzing)]
    #[doc(hidden)]
    pub fn seal_with_nonce(
        &self,
        payload: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<String, CodecError> {
        self.seal(payload, nonce)
    }

    /// Seals `payload` (format 3) with the current keys and `nonce`.
    fn seal(&self, payload: &[u8], nonce: [u8; NONCE_LEN]) -> Result<String, CodecError> {
        let (Some(signer), Some(cipher)) = (self.signers.first(), self.ciphers.first()) else {
            return Err(CodecError::Version);
        };
        let mut plain = Vec::with_capacity(payload.len() + TAG_LEN);
        plain.extend_from_slice(payload);
        plain.extend_from_slice(&self.tag(signer, VERSION_SEALED_SIV, payload));
        let aad = self.aad(VERSION_SEALED_SIV);
        let sealed = cipher
            .encrypt(
                aes_gcm_siv::Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| CodecError::Authentication)?;
        let mut raw = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        raw.push(VERSION_SEALED_SIV);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(raw))
    }

    fn aad(&self, version: u8) -> Vec<u8> {
        let mut aad = Vec::with_capacity(1 + self.name.len());
        aad.push(version);
        aad.extend_from_slice(&self.name);
        aad
    }

    /// [`decode`](Codec::decode) for a payload of exactly `N` bytes (a
    /// session id): a payload of another length is [`CodecError::Truncated`].
    /// A signed value of that shape is decoded and verified on the stack;
    /// anything else (sealed, malformed, another length) takes
    /// [`decode`](Codec::decode)'s path, so the outcome and the error are the
    /// same either way.
    pub(crate) fn decode_fixed<const N: usize>(
        &self,
        value: &[u8],
    ) -> Result<([u8; N], KeyUsed), CodecError> {
        if !self.is_sealed() {
            // version, payload, tag: the only shape this fast path accepts
            // (a longer value does not fit the buffer and goes the slow way).
            let mut raw = [0u8; 128];
            if let Ok(len) = URL_SAFE_NO_PAD.decode_slice(value, &mut raw) {
                if len == 1 + N + TAG_LEN && raw[0] == VERSION_SIGNED {
                    let (payload, tag) = raw[1..len].split_at(N);
                    if let Some(used) = self.verify(VERSION_SIGNED, payload, tag) {
                        let mut out = [0u8; N];
                        out.copy_from_slice(payload);
                        return Ok((out, used));
                    }
                    return Err(CodecError::Authentication);
                }
            }
        }
        let (payload, used) = self.decode(value)?;
        let payload = <[u8; N]>::try_from(payload.as_slice()).map_err(|_| CodecError::Truncated)?;
        Ok((payload, used))
    }

    /// Decodes a cookie value, returning its payload and which key verified it.
    ///
    /// # Errors
    /// A [`CodecError`] for anything that is not a value this codec produced.
    pub fn decode(&self, value: &[u8]) -> Result<(Vec<u8>, KeyUsed), CodecError> {
        if value.len() > MAX_COOKIE_BYTES {
            return Err(CodecError::TooLong);
        }
        let mut raw = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| CodecError::Base64)?;
        let (&version, rest) = raw.split_first().ok_or(CodecError::Truncated)?;
        match (version, self.is_sealed()) {
            (VERSION_SIGNED, false) => {
                if rest.len() < TAG_LEN {
                    return Err(CodecError::Truncated);
                }
                let (payload, tag) = rest.split_at(rest.len() - TAG_LEN);
                let used = self
                    .verify(VERSION_SIGNED, payload, tag)
                    .ok_or(CodecError::Authentication)?;
                // The payload moved to the front of the decoded bytes: no second buffer.
                let len = payload.len();
                raw.copy_within(1..=len, 0);
                raw.truncate(len);
                Ok((raw, used))
            }
            (VERSION_SEALED_SIV, true) => {
                let aad = self.aad(version);
                self.open(version, rest, |nonce, msg| {
                    self.ciphers.iter().enumerate().find_map(|(i, c)| {
                        c.decrypt(
                            aes_gcm_siv::Nonce::from_slice(nonce),
                            Payload { msg, aad: &aad },
                        )
                        .ok()
                        .map(|p| (p, i))
                    })
                })
            }
            (VERSION_SEALED, true) => {
                let aad = self.aad(version);
                // Opened only to be re-issued in format 3.
                self.open(version, rest, |nonce, msg| {
                    self.legacy.iter().find_map(|c| {
                        c.decrypt(Nonce::from_slice(nonce), Payload { msg, aad: &aad })
                            .ok()
                            .map(|p| (p, usize::MAX))
                    })
                })
            }
            _ => Err(CodecError::Version),
        }
    }

    /// Opens `nonce || sealed` with `decrypt` (the plaintext and the index of
    /// the key that opened it), then verifies the inner tag.
    fn open(
        &self,
        version: u8,
        rest: &[u8],
        decrypt: impl FnOnce(&[u8], &[u8]) -> Option<(Vec<u8>, usize)>,
    ) -> Result<(Vec<u8>, KeyUsed), CodecError> {
        if rest.len() < NONCE_LEN + AEAD_TAG_LEN + TAG_LEN {
            return Err(CodecError::Truncated);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let (mut plain, key_index) = decrypt(nonce, sealed).ok_or(CodecError::Authentication)?;
        if plain.len() < TAG_LEN {
            return Err(CodecError::Truncated);
        }
        let tag = plain.split_off(plain.len() - TAG_LEN);
        let used = self
            .verify(version, &plain, &tag)
            .ok_or(CodecError::Authentication)?;
        let used = if key_index == 0 {
            used
        } else {
            KeyUsed::Fallback
        };
        Ok((plain, used))
    }
}

/// Whether two tags are equal, compared in constant time (with `subtle`, as
/// `Mac::verify_slice` does) a 64-bit word at a time rather than a byte at a
/// time: a quarter of the optimization barriers, the same guarantee.
fn tags_equal(a: &[u8; TAG_LEN], b: &[u8; TAG_LEN]) -> bool {
    let words = |t: &[u8; TAG_LEN]| -> [u64; TAG_LEN / 8] {
        std::array::from_fn(|i| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&t[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(w)
        })
    };
    bool::from(words(a)[..].ct_eq(&words(b)[..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"an example secret of at least 32 bytes!!";
    const OLD_SECRET: &[u8] = b"the previous secret, also 32 bytes long";
    const KEY: &[u8] = b"an example encryption key, 32 bytes or more";
    const ID: [u8; 16] = *b"0123456789abcdef";

    fn signed() -> Codec {
        Codec::new("vishnu", &[SECRET], &[])
    }
    fn sealed() -> Codec {
        Codec::new("vishnu", &[SECRET], &[KEY])
    }

    // Known answers, cross-checked against an independent Python implementation
    // (hmac, hashlib and cryptography's AESGCMSIV and AESGCM): scripts/kat_crosscheck.py.
    #[test]
    fn known_answer_framework_secret() {
        let derived = framework_secret(b"dev").expect("a non-empty key");
        let hex: String = derived.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "69aac76f008606bff8c51eefa0a159fead6e8ee6c3d76509117764fdeadf5763"
        );
        assert_eq!(framework_secret(b""), None);
    }

    #[test]
    fn known_answer_signed() {
        assert_eq!(
            signed().encode(&ID).expect("encode"),
            "ATAxMjM0NTY3ODlhYmNkZWb8Zj1TA-4EsJX4Y2OHjheY8u1pIkfX8p0uwVC_TKbmwQ"
        );
    }

    #[test]
    fn known_answer_sealed() {
        assert_eq!(
            sealed().seal(&ID, [9u8; 12]).expect("seal"),
            "AwkJCQkJCQkJCQkJCWyQNL0FLVWf7GbJwm2Yi7W6w89v83n3eVNiWmyqZ91-T0kevwsnL2trCGxZ8vOGLPhQGhjILxUpeXCtcZEK0Po"
        );
    }

    // The stack path for ids must answer exactly what `decode` answers, for
    // every kind of value: valid (current or fallback key), tampered,
    // truncated, too long, another payload length, another format, garbage.
    #[test]
    fn decode_fixed_agrees_with_decode() {
        let rotated = Codec::new("vishnu", &[SECRET, OLD_SECRET], &[]);
        let old = Codec::new("vishnu", &[OLD_SECRET], &[]);
        for codec in [signed(), sealed(), rotated] {
            let mut values = vec![
                codec.encode(&ID).expect("encode"),
                old.encode(&ID).expect("encode"),
                signed().encode(&ID).expect("encode"),
                sealed().encode(&ID).expect("encode"),
                codec.encode(b"fifteen bytes!!").expect("encode"),
                codec.encode(b"seventeen bytes!!").expect("encode"),
                codec.encode(&[7u8; 64]).expect("encode"),
                "not base64 at all!".to_owned(),
                String::new(),
                "A".repeat(5000),
            ];
            let good = codec.encode(&ID).expect("encode");
            let mut tampered = good.clone().into_bytes();
            tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
            values.push(String::from_utf8(tampered).expect("ascii"));
            values.push(good[..good.len() - 4].to_owned());
            let mut wrong_version = URL_SAFE_NO_PAD.decode(&good).expect("b64");
            wrong_version[0] = 9;
            values.push(URL_SAFE_NO_PAD.encode(wrong_version));
            for value in &values {
                let slow = codec.decode(value.as_bytes()).and_then(|(p, used)| {
                    <[u8; 16]>::try_from(p.as_slice())
                        .map(|p| (p, used))
                        .map_err(|_| CodecError::Truncated)
                });
                assert_eq!(codec.decode_fixed::<16>(value.as_bytes()), slow, "{value}");
            }
        }
        assert_eq!(
            signed().decode_fixed::<16>(signed().encode(&ID).expect("encode").as_bytes()),
            Ok((ID, KeyUsed::Current))
        );
    }

    // A cookie sealed with AES-256-GCM before format 3: still opened, and
    // reported as a fallback so that the engine re-issues it as format 3.
    #[test]
    fn known_answer_legacy_sealed_opens_and_asks_for_reissue() {
        let legacy = "AgkJCQkJCQkJCQkJCeJd4-A-zQ74WUjY-Ey4HggxhUGQHQs4-ijro7oGM6cUxZLVejXQuXgD5ZUV19h81jkTXKpRhIzkKE3Vw9ZSlEw";
        assert_eq!(
            sealed().decode(legacy.as_bytes()),
            Ok((ID.to_vec(), KeyUsed::Fallback))
        );
        // Under another key it does not open.
        let other = Codec::new(
            "vishnu",
            &[SECRET],
            &[b"another encryption key of 32 bytes!!".as_slice()],
        );
        assert_eq!(
            other.decode(legacy.as_bytes()),
            Err(CodecError::Authentication)
        );
        // New values are format 3.
        let fresh = sealed().encode(&ID).expect("encode");
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&fresh).expect("b64")[0],
            VERSION_SEALED_SIV
        );
    }

    // AES-GCM-SIV is deterministic for a key and nonce; a repeated nonce with
    // another payload still opens each correctly (misuse resistance).
    #[test]
    fn a_repeated_nonce_still_seals_each_payload_apart() {
        let codec = sealed();
        let a = codec.seal(b"payload one.....", [7u8; 12]).expect("seal");
        let b = codec.seal(b"payload two.....", [7u8; 12]).expect("seal");
        assert_ne!(a, b);
        assert_eq!(
            codec.decode(a.as_bytes()).expect("a").0,
            b"payload one....."
        );
        assert_eq!(
            codec.decode(b.as_bytes()).expect("b").0,
            b"payload two....."
        );
    }

    #[test]
    fn round_trips() {
        for codec in [signed(), sealed()] {
            let value = codec.encode(&ID).expect("encode");
            assert_eq!(
                codec.decode(value.as_bytes()),
                Ok((ID.to_vec(), KeyUsed::Current))
            );
        }
    }

    #[test]
    fn the_cookie_name_is_authenticated() {
        for keys in [&[][..], &[KEY][..]] {
            let a = Codec::new("a", &[SECRET], keys);
            let b = Codec::new("b", &[SECRET], keys);
            let value = a.encode(&ID).expect("encode");
            assert_eq!(b.decode(value.as_bytes()), Err(CodecError::Authentication));
        }
    }

    #[test]
    fn fallback_secrets_verify_and_say_so() {
        let old = Codec::new("vishnu", &[OLD_SECRET], &[]);
        let rotated = Codec::new("vishnu", &[SECRET, OLD_SECRET], &[]);
        let value = old.encode(&ID).expect("encode");
        assert_eq!(
            rotated.decode(value.as_bytes()),
            Ok((ID.to_vec(), KeyUsed::Fallback))
        );
        assert_eq!(
            signed().decode(value.as_bytes()),
            Err(CodecError::Authentication)
        );
    }

    #[test]
    fn fallback_encrypt_keys_open_and_say_so() {
        let old = Codec::new(
            "vishnu",
            &[SECRET],
            &[b"old encryption key, 32 bytes long!!"],
        );
        let rotated = Codec::new(
            "vishnu",
            &[SECRET],
            &[KEY, b"old encryption key, 32 bytes long!!"],
        );
        let value = old.encode(&ID).expect("encode");
        assert_eq!(
            rotated.decode(value.as_bytes()),
            Ok((ID.to_vec(), KeyUsed::Fallback))
        );
    }

    #[test]
    fn signed_and_sealed_do_not_mix() {
        let plain = signed().encode(&ID).expect("encode");
        assert_eq!(sealed().decode(plain.as_bytes()), Err(CodecError::Version));
        let enc = sealed().encode(&ID).expect("encode");
        assert_eq!(signed().decode(enc.as_bytes()), Err(CodecError::Version));
    }

    #[test]
    fn malformed_values_are_rejected() {
        let good = signed().encode(&ID).expect("encode");
        let c = signed();
        assert_eq!(c.decode(b""), Err(CodecError::Truncated));
        assert_eq!(c.decode(b"!!!"), Err(CodecError::Base64));
        assert_eq!(
            c.decode(format!("{good}=").as_bytes()),
            Err(CodecError::Base64)
        );
        assert_eq!(
            c.decode(&vec![b'A'; MAX_COOKIE_BYTES + 1]),
            Err(CodecError::TooLong)
        );
        assert!(c.decode(&good.as_bytes()[..good.len() - 4]).is_err());
        assert_eq!(
            c.decode(URL_SAFE_NO_PAD.encode([1u8; 20]).as_bytes()),
            Err(CodecError::Truncated)
        );
        // Non-canonical: change the unused low bits of the last character.
        let mut bytes = good.clone().into_bytes();
        let last = bytes.len() - 1;
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let pos = alphabet
            .iter()
            .position(|&ch| ch == bytes[last])
            .expect("b64");
        bytes[last] = alphabet[pos ^ 1];
        assert!(c.decode(&bytes).is_err());
        // Unknown version byte.
        let mut raw = URL_SAFE_NO_PAD.decode(&good).expect("b64");
        raw[0] = 9;
        assert_eq!(
            c.decode(URL_SAFE_NO_PAD.encode(raw).as_bytes()),
            Err(CodecError::Version)
        );
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        for codec in [signed(), sealed()] {
            let good = codec.encode(&ID).expect("encode");
            let raw = URL_SAFE_NO_PAD.decode(&good).expect("b64");
            for byte in 0..raw.len() {
                for bit in 0..8 {
                    let mut bad = raw.clone();
                    bad[byte] ^= 1 << bit;
                    let value = URL_SAFE_NO_PAD.encode(&bad);
                    assert!(
                        codec.decode(value.as_bytes()).is_err(),
                        "byte {byte} bit {bit}"
                    );
                }
            }
        }
    }
}
