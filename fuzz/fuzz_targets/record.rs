//! The stored-record decoder, `vishnu::record::Record::from_json`.
//!
//! Whatever a store hands back (the input), decoding never panics; anything
//! that is not a JSON text (UTF-8, RFC 8259 syntax) is `Malformed`, including
//! in fields the decoder skips; a record it accepts has the current format;
//! and an accepted record re-encodes to JSON that decodes to an equal record,
//! and whose own re-encoding is byte-for-byte the same (the encoding is
//! stable, so a record read and saved again does not drift). The decoder's
//! and encoder's fast path for the common shape agree with serde alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use vishnu::record::{Record, RecordError, MAX_RECORD_BYTES, RECORD_FORMAT};

/// Whether the input is one JSON text: UTF-8, and well-formed. (serde_json
/// checks UTF-8 only in strings it keeps, so it is checked separately; a lone
/// surrogate escape such as `"\ud800"` is well-formed syntax, so it is not
/// parsed into a `Value`, which would reject it.)
fn is_json_text(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|text| serde_json::from_str::<IgnoredAny>(text).is_ok())
}

/// What serde alone makes of the input (the decoder reads records of the
/// common shape without it): the record, or serde's error message.
fn by_serde(data: &[u8]) -> Result<Record, String> {
    let text = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    serde_json::from_str::<Record>(text).map_err(|e| e.to_string())
}

fuzz_target!(|data: &[u8]| {
    let decoded = Record::from_json(data);
    // The decoder's fast path agrees with serde: the same record, or both refuse.
    // The one allowed difference: the fast path reads `data` one nesting level
    // deeper than serde's recursion limit allows inside a whole record.
    if data.len() <= MAX_RECORD_BYTES {
        match (&decoded, by_serde(data)) {
            (Ok(fast), Ok(slow)) => assert_eq!(fast, &slow, "fast path and serde differ"),
            (Ok(_), Err(e)) => assert!(e.contains("recursion limit"), "only the fast path accepted: {e}"),
            (Err(RecordError::UnknownFormat(_)), Ok(slow)) => assert_ne!(slow.format, RECORD_FORMAT),
            (Err(_), Ok(slow)) => panic!("only serde accepted: {slow:?}"),
            (Err(_), Err(_)) => {}
        }
    }
    let record = match decoded {
        Ok(record) => record,
        Err(RecordError::Malformed(_)) => return,
        Err(RecordError::UnknownFormat(v)) => {
            assert_ne!(v, RECORD_FORMAT);
            // Only a well-formed JSON document can name its format.
            assert!(is_json_text(data), "named a format in something not JSON");
            return;
        }
    };
    assert!(data.len() <= MAX_RECORD_BYTES);
    assert_eq!(record.format, RECORD_FORMAT);
    assert!(
        is_json_text(data),
        "accepted a record that is not a JSON text"
    );

    let json = record.to_json();
    assert_eq!(
        json,
        serde_json::to_vec(&record).expect("serde encodes"),
        "the encoding differs from serde's"
    );
    let again = match Record::from_json(&json) {
        Ok(again) => again,
        Err(e) => panic!(
            "re-encoded record does not decode: {e}\ninput: {}\nre-encoded: {}",
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(&json)
        ),
    };
    assert_eq!(
        again,
        record,
        "record changed on a round trip\ninput: {}\nre-encoded: {}\nre-encoded again: {}",
        String::from_utf8_lossy(data),
        String::from_utf8_lossy(&json),
        String::from_utf8_lossy(&again.to_json())
    );
    assert_eq!(again.to_json(), json, "the encoding is not stable");
});
