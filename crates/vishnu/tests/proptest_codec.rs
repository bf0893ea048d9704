//! Property tests: the codec round-trips, and no input makes decoding or parsing panic.
#![cfg(feature = "axum")]

mod common;

use proptest::prelude::*;
use vishnu::codec::{Codec, KeyUsed};
use vishnu::cookie::cookie_values;

fn codecs() -> [Codec; 3] {
    [
        Codec::new("vishnu", &[common::SECRET.as_bytes()], &[]),
        Codec::new(
            "vishnu",
            &[common::SECRET.as_bytes()],
            &[common::ENCRYPT_KEY.as_bytes()],
        ),
        Codec::new(
            "vishnu",
            &[common::SECRET.as_bytes(), common::OLD_SECRET.as_bytes()],
            &[common::ENCRYPT_KEY.as_bytes()],
        ),
    ]
}

/// The length of an encoded cookie value, from the format in the codec's docs:
/// signed `0x01 || payload || HMAC-SHA256 (32)`, sealed `0x02 || nonce (12) ||
/// AES-GCM(payload || HMAC-SHA256 (32)) || GCM tag (16)`, in unpadded base64url.
fn expected_len(sealed: bool, payload_len: usize) -> usize {
    let raw = if sealed {
        1 + 12 + payload_len + 32 + 16
    } else {
        1 + payload_len + 32
    };
    // Unpadded base64: 4 characters per 3 bytes, 2 or 3 for a 1- or 2-byte tail.
    raw / 3 * 4 + [0, 2, 3][raw % 3]
}

proptest! {
    #[test]
    fn encode_then_decode_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for codec in codecs() {
            let value = codec.encode(&payload).expect("encode");
            prop_assert_eq!(codec.decode(value.as_bytes()).expect("decode"), (payload.clone(), KeyUsed::Current));
        }
    }

    #[test]
    fn encoded_length_is_exactly_the_format_length(payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for codec in codecs() {
            let value = codec.encode(&payload).expect("encode");
            prop_assert_eq!(value.len(), expected_len(codec.is_sealed(), payload.len()));
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(input in proptest::collection::vec(any::<u8>(), 0..6000)) {
        for codec in codecs() {
            let _ = codec.decode(&input);
        }
    }

    #[test]
    fn decoding_arbitrary_base64_never_panics_nor_verifies(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        use base64::Engine as _;
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&input);
        for codec in codecs() {
            prop_assert!(codec.decode(text.as_bytes()).is_err());
        }
    }

    #[test]
    fn parsing_arbitrary_cookie_headers_never_panics(headers in proptest::collection::vec(any::<Vec<u8>>(), 0..4)) {
        let n = cookie_values(headers.iter().map(Vec::as_slice), "vishnu").count();
        prop_assert!(n <= headers.iter().map(|h| h.len()).sum::<usize>());
    }

    #[test]
    fn any_cookie_header_gets_a_normal_response(header in "[ -~]{0,300}") {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let app = common::app(common::builder().build().expect("config"));
        let answer = rt.block_on(async {
            let req = http::Request::get("/get/user").header("cookie", header.as_str()).body(axum::body::Body::empty()).expect("req");
            tower::ServiceExt::oneshot(app, req).await.expect("infallible")
        });
        prop_assert_eq!(answer.status(), 200);
    }
}
