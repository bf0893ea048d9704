//! The `Cookie` header parser, `vishnu::cookie::cookie_values`.
//!
//! Input: one or more `Cookie` header values separated by `\n`. For each of a
//! few cookie names the parser must
//! - agree exactly with a straightforward model of the documented rules (pairs
//!   split on `;` and `,`, the first `=` splits name from value, ASCII whitespace
//!   trimmed, pairs without `=` skipped, a DQUOTE-wrapped value unwrapped);
//! - return slices of the headers it was given, in order, none holding a `;` or `,`;
//! - never let a neighbour hide our cookie: whatever precedes or follows
//!   `; NAME=MARK` in a header, or whatever other header comes first, MARK is found;
//! - give back a plain value unchanged when it is re-sent, bare or quoted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vishnu::cookie::cookie_values;

const NAMES: [&str; 3] = ["vishnu", "a", "__Host-sid"];
const MARK: &[u8] = b"AQ_the-marked-value_0";

fn values<'a>(headers: &[&'a [u8]], name: &'a str) -> Vec<&'a [u8]> {
    cookie_values(headers.to_vec(), name).collect()
}

/// The documented parsing rules, written out byte by byte.
fn model<'a>(headers: &[&'a [u8]], name: &[u8]) -> Vec<&'a [u8]> {
    fn strip(mut s: &[u8]) -> &[u8] {
        while let [first, rest @ ..] = s {
            if !first.is_ascii_whitespace() {
                break;
            }
            s = rest;
        }
        while let [rest @ .., last] = s {
            if !last.is_ascii_whitespace() {
                break;
            }
            s = rest;
        }
        s
    }
    let mut out = Vec::new();
    for header in headers {
        let mut start = 0;
        for end in 0..=header.len() {
            if end < header.len() && header[end] != b';' && header[end] != b',' {
                continue;
            }
            let pair = &header[start..end];
            start = end + 1;
            let mut eq = None;
            for (i, &b) in pair.iter().enumerate() {
                if b == b'=' {
                    eq = Some(i);
                    break;
                }
            }
            let Some(eq) = eq else { continue };
            if strip(&pair[..eq]) != name {
                continue;
            }
            let v = strip(&pair[eq + 1..]);
            let v = if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
                &v[1..v.len() - 1]
            } else {
                v
            };
            out.push(v);
        }
    }
    out
}

/// Which header a value points into, and where: values must be sub-slices.
fn locate(headers: &[&[u8]], value: &[u8]) -> (usize, usize) {
    let v = value.as_ptr() as usize;
    for (i, h) in headers.iter().enumerate() {
        let start = h.as_ptr() as usize;
        if v >= start && v + value.len() <= start + h.len() {
            return (i, v - start);
        }
    }
    panic!("value {value:?} is not a slice of any header");
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn check(headers: &[&[u8]], name: &str) {
    let got = values(headers, name);
    assert_eq!(got, model(headers, name.as_bytes()), "name {name:?}");

    // Sub-slices, in order, without `;` or `,`.
    let mut last = None;
    for v in &got {
        assert!(!v.contains(&b';'), "value {v:?} holds a ';'");
        assert!(!v.contains(&b','), "value {v:?} holds a ','");
        let at = locate(headers, v);
        if let Some(prev) = last {
            assert!(at > prev, "values out of order");
        }
        last = Some(at);
    }

    let n = name.as_bytes();
    for (i, h) in headers.iter().enumerate() {
        // Our pair after anything: found last.
        let after = join(&[h, b"; ", n, b"=", MARK]);
        assert_eq!(values(&[&after], name).last().copied(), Some(MARK));
        // Our pair before anything: found first.
        let before = join(&[n, b"=", MARK, b"; ", h]);
        assert_eq!(values(&[&before], name).first().copied(), Some(MARK));
        // Our pair in the middle of anything: found.
        let mid = h.len() / 2;
        let middle = join(&[&h[..mid], b";", n, b"=", MARK, b";", &h[mid..]]);
        assert!(values(&[&middle], name).contains(&MARK));
        // Our cookie in a later header, whatever the earlier headers hold.
        if i == 0 {
            let mut more = headers.to_vec();
            let ours = join(&[n, b"=", MARK]);
            more.push(&ours);
            assert_eq!(values(&more, name).last().copied(), Some(MARK));
        }
    }

    // A value without `;`, `,`, `"` or edge whitespace comes back unchanged, bare or quoted.
    for v in &got {
        let plain = !v.is_empty()
            && !v.contains(&b'"')
            && !v[0].is_ascii_whitespace()
            && !v[v.len() - 1].is_ascii_whitespace();
        if plain {
            let bare = join(&[n, b"=", v]);
            assert_eq!(values(&[&bare], name), [*v]);
            let quoted = join(&[n, b"=\"", v, b"\""]);
            assert_eq!(values(&[&quoted], name), [*v]);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let headers: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    for name in NAMES {
        check(&headers, name);
    }
});
