//! Cookie value decoding, `vishnu::codec::Codec::decode`: signed and sealed,
//! with and without a fallback secret or encrypt key.
//!
//! The input is used twice.
//!
//! 1. As a cookie value, decoded by every codec below. Decoding never panics;
//!    the codecs agree with each other (a fallback key accepts exactly what
//!    the codec with that key as its current one accepts, and says so;
//!    signed codecs never accept a sealed value nor the reverse; a codec for
//!    another cookie name accepts nothing of ours); and an accepted value is
//!    the one canonical encoding of its payload (re-encoding it under the
//!    same key, and for sealed values the same nonce, gives back the input
//!    byte for byte), and re-encoding under the current keys decodes to the
//!    same payload, reported as `Current`.
//! 2. As a payload: encoding it with every codec decodes back to it, and
//!    changing the encoded text in any way (one character replaced, one
//!    removed, one added, the value truncated, the last character's unused
//!    bits set) makes it fail to decode.
#![no_main]

use std::sync::LazyLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use vishnu::codec::{
    Codec, CodecError, KeyUsed, MAX_COOKIE_BYTES, VERSION_SEALED, VERSION_SEALED_SIV,
    VERSION_SIGNED,
};

// The seed corpus in fuzz/corpus/cookie_value/ was made with these keys (see fuzz/README.md).
const NAME: &str = "vishnu";
const SECRET: &[u8] = b"fuzz secret: at least 32 bytes long, 0001";
const NEW_SECRET: &[u8] = b"fuzz secret: at least 32 bytes long, 0002";
const KEY: &[u8] = b"fuzz encrypt key: at least 32 bytes, 0001";
const NEW_KEY: &[u8] = b"fuzz encrypt key: at least 32 bytes, 0002";
const NONCE_LEN: usize = 12;
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

struct Codecs {
    /// Signed with SECRET.
    signed: Codec,
    /// Signed with NEW_SECRET; SECRET is a fallback.
    signed_fallback: Codec,
    /// Sealed with KEY, signed with SECRET.
    sealed: Codec,
    /// Sealed with KEY, signed with NEW_SECRET; SECRET is a fallback.
    sealed_fallback_secret: Codec,
    /// Sealed with NEW_KEY, signed with SECRET; KEY is a fallback.
    sealed_fallback_key: Codec,
    /// The same keys as `signed` and `sealed`, for another cookie name.
    other_name: [Codec; 2],
}

static CODECS: LazyLock<Codecs> = LazyLock::new(|| Codecs {
    signed: Codec::new(NAME, &[SECRET], &[]),
    signed_fallback: Codec::new(NAME, &[NEW_SECRET, SECRET], &[]),
    sealed: Codec::new(NAME, &[SECRET], &[KEY]),
    sealed_fallback_secret: Codec::new(NAME, &[NEW_SECRET, SECRET], &[KEY]),
    sealed_fallback_key: Codec::new(NAME, &[SECRET], &[NEW_KEY, KEY]),
    other_name: [
        Codec::new("vishnu2", &[SECRET], &[]),
        Codec::new("vishnu2", &[SECRET], &[KEY]),
    ],
});

type Decoded = Result<(Vec<u8>, KeyUsed), CodecError>;

/// What one codec's answer says about the value, whatever the codec.
fn check_one(codec: &Codec, value: &[u8], got: &Decoded) {
    if value.len() > MAX_COOKIE_BYTES {
        assert_eq!(got, &Err(CodecError::TooLong));
        return;
    }
    let Ok((payload, used)) = got else { return };
    // Only canonical base64url of the right version is accepted.
    let raw = URL_SAFE_NO_PAD
        .decode(value)
        .expect("accepted value is base64url");
    assert_eq!(
        URL_SAFE_NO_PAD.encode(&raw).as_bytes(),
        value,
        "accepted value is not canonical"
    );
    if codec.is_sealed() {
        // Format 3 (AES-GCM-SIV), or format 2 (AES-GCM) from before it, which
        // is only ever opened to be re-issued: reported as a fallback.
        assert!(
            raw[0] == VERSION_SEALED_SIV || raw[0] == VERSION_SEALED,
            "version {}",
            raw[0]
        );
        if raw[0] == VERSION_SEALED {
            assert_eq!(*used, KeyUsed::Fallback, "a legacy value is re-issued");
        }
    } else {
        assert_eq!(raw[0], VERSION_SIGNED);
    }
    // Signed and sealed are deterministic given the key and nonce: under the
    // current key the input is the one encoding of its payload.
    if *used == KeyUsed::Current {
        let again = if codec.is_sealed() {
            let nonce: [u8; NONCE_LEN] = raw[1..1 + NONCE_LEN].try_into().expect("nonce");
            codec.seal_with_nonce(payload, nonce).expect("seal")
        } else {
            codec.encode(payload).expect("sign")
        };
        assert_eq!(
            again.as_bytes(),
            value,
            "a second encoding of the same payload"
        );
    }
    // Re-encoding under the current keys (as the engine re-issues a cookie
    // verified with a fallback) decodes to the same payload, as Current.
    let fresh = codec.encode(payload).expect("encode");
    assert_eq!(fresh.len(), value.len(), "re-encoding changed the length");
    assert_eq!(
        codec.decode(fresh.as_bytes()),
        Ok((payload.clone(), KeyUsed::Current))
    );
}

/// `rotated` has `base`'s current key as a fallback, and a new current key.
/// `legacy`: the value is in the sealed format 2, which is only ever opened
/// to be re-issued (reported as a fallback whatever key opened it).
fn check_rotation(base: &Decoded, rotated: &Decoded, legacy: bool) {
    match (base, rotated) {
        (Err(CodecError::Authentication), Ok((_, KeyUsed::Fallback))) if legacy => {}
        (Ok((p, KeyUsed::Fallback)), Ok((q, KeyUsed::Fallback))) if legacy => assert_eq!(p, q),
        // What the old key accepts, the rotated codec accepts as a fallback.
        (Ok((p, KeyUsed::Current)), Ok((q, KeyUsed::Fallback))) => assert_eq!(p, q),
        // Made under the new key: the old codec cannot verify it.
        (Err(CodecError::Authentication), Ok((_, KeyUsed::Current))) => {}
        // Rejected by both for the same reason.
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("rotation disagrees: old key {a:?}, rotated {b:?}"),
    }
}

fn decode_as_value(c: &Codecs, value: &[u8]) {
    let signed = c.signed.decode(value);
    let signed_fallback = c.signed_fallback.decode(value);
    let sealed = c.sealed.decode(value);
    let sealed_fallback_secret = c.sealed_fallback_secret.decode(value);
    let sealed_fallback_key = c.sealed_fallback_key.decode(value);

    check_one(&c.signed, value, &signed);
    check_one(&c.signed_fallback, value, &signed_fallback);
    check_one(&c.sealed, value, &sealed);
    check_one(&c.sealed_fallback_secret, value, &sealed_fallback_secret);
    check_one(&c.sealed_fallback_key, value, &sealed_fallback_key);

    let legacy = URL_SAFE_NO_PAD
        .decode(value)
        .is_ok_and(|raw| raw.first() == Some(&VERSION_SEALED));
    check_rotation(&signed, &signed_fallback, false);
    check_rotation(&sealed, &sealed_fallback_secret, legacy);
    check_rotation(&sealed, &sealed_fallback_key, legacy);

    // Signed codecs take no sealed value, and the reverse.
    for s in [&signed, &signed_fallback] {
        for e in [&sealed, &sealed_fallback_secret, &sealed_fallback_key] {
            assert!(s.is_err() || e.is_err(), "accepted as signed and as sealed");
        }
    }
    // The cookie name is authenticated.
    if signed.is_ok() || signed_fallback.is_ok() {
        assert_eq!(
            c.other_name[0].decode(value),
            Err(CodecError::Authentication)
        );
    }
    if sealed.is_ok() || sealed_fallback_secret.is_ok() || sealed_fallback_key.is_ok() {
        assert_eq!(
            c.other_name[1].decode(value),
            Err(CodecError::Authentication)
        );
    }
    for other in &c.other_name {
        let _ = other.decode(value);
    }
}

/// Changes to an encoded value that must all be rejected. `seed` picks positions.
fn tampered(value: &str, seed: usize) -> Vec<Vec<u8>> {
    let v = value.as_bytes();
    let n = v.len();
    let mut out = Vec::new();
    let at = seed % n;
    // One character replaced by another base64url character.
    let mut replaced = v.to_vec();
    let pos = ALPHABET
        .iter()
        .position(|&ch| ch == v[at])
        .expect("base64url");
    replaced[at] = ALPHABET[(pos + 1 + seed / n % 63) % 64];
    out.push(replaced);
    // One character removed; one character added.
    let mut removed = v.to_vec();
    removed.remove(at);
    out.push(removed);
    let mut added = v.to_vec();
    added.insert(at, ALPHABET[seed % 64]);
    out.push(added);
    // Truncated, and extended.
    out.push(v[..at].to_vec());
    out.push([v, b"A"].concat());
    out.push([v, b"="].concat());
    // The last character's unused low bits set (non-canonical spelling of the same bytes).
    let last = ALPHABET
        .iter()
        .position(|&ch| ch == v[n - 1])
        .expect("base64url");
    let unused = match n % 4 {
        2 => 0b1111,
        3 => 0b11,
        _ => 0,
    };
    for bits in 1..=unused {
        if last & bits == 0 {
            let mut odd = v.to_vec();
            odd[n - 1] = ALPHABET[last | bits];
            out.push(odd);
        }
    }
    out
}

fn encode_as_payload(c: &Codecs, payload: &[u8]) {
    let seed = payload.iter().fold(payload.len(), |h, &b| {
        h.wrapping_mul(31).wrapping_add(b as usize)
    });
    let mut nonce = [0u8; NONCE_LEN];
    for (n, b) in nonce.iter_mut().zip(payload.iter().rev()) {
        *n = *b;
    }
    let all = [
        &c.signed,
        &c.signed_fallback,
        &c.sealed,
        &c.sealed_fallback_secret,
        &c.sealed_fallback_key,
    ];
    for codec in all {
        let value = if codec.is_sealed() {
            codec.seal_with_nonce(payload, nonce).expect("seal")
        } else {
            codec.encode(payload).expect("sign")
        };
        if value.len() > MAX_COOKIE_BYTES {
            assert_eq!(codec.decode(value.as_bytes()), Err(CodecError::TooLong));
            continue;
        }
        assert_eq!(
            codec.decode(value.as_bytes()),
            Ok((payload.to_vec(), KeyUsed::Current))
        );
        for bad in tampered(&value, seed) {
            assert_ne!(bad, value.as_bytes());
            let got = codec.decode(&bad);
            assert!(
                got.is_err(),
                "tampered value {:?} decoded to {got:?}",
                String::from_utf8_lossy(&bad)
            );
        }
    }
    // Values made under the new key are not accepted by the codecs without it.
    for (new, old) in [
        (&c.signed_fallback, &c.signed),
        (&c.sealed_fallback_secret, &c.sealed),
        (&c.sealed_fallback_key, &c.sealed),
    ] {
        let value = new.encode(payload).expect("encode");
        if value.len() <= MAX_COOKIE_BYTES {
            assert_eq!(
                old.decode(value.as_bytes()),
                Err(CodecError::Authentication)
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let c = &*CODECS;
    decode_as_value(c, data);
    encode_as_payload(c, data);
});
