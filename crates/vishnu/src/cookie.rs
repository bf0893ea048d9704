//! The HTTP side of the cookie: finding ours in `Cookie` headers, and writing `Set-Cookie`.
//!
//! Parsing follows what browsers send, not what RFC 6265 grammar allows: pairs
//! are separated by `;`, a pair without `=` or with odd characters (`b,c=2`,
//! JSON with quotes) is skipped without hiding the pairs around it, and several
//! `Cookie` headers are read in order. When our name appears more than once
//! (for example cookies set for two paths), every value is tried in order and
//! the first one that authenticates wins.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use crate::record::Millis;

/// Every value of the cookie called `name` across the given `Cookie` header values, in order.
///
/// Pairs are separated by `;`, and by `,` too: WSGI servers (wsgiref,
/// gunicorn) join repeated `Cookie` headers with `, `, and our cookie values
/// (base64url) never contain a comma. A comma inside another cookie's value
/// at worst yields a pair that is not ours, or one of ours that fails
/// authentication.
pub fn cookie_values<'a, I>(headers: I, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: 'a,
{
    headers.into_iter().flat_map(move |header| {
        Pairs(Some(header)).filter_map(move |pair| {
            let eq = memchr::memchr(b'=', pair)?;
            let (k, v) = pair.split_at(eq);
            let (k, v) = (trim(k), trim(v.get(1..).unwrap_or_default()));
            if k != name.as_bytes() {
                return None;
            }
            // A DQUOTE-wrapped value (RFC 6265 cookie-value) is unwrapped.
            Some(match v {
                [b'"', inner @ .., b'"'] => inner,
                _ => v,
            })
        })
    })
}

/// The pieces of a header between `;` and `,` separators, as `split` yields
/// them (empty ones included), found with `memchr`'s vectorised search: a
/// session cookie is a long value, and this scan is on every request.
struct Pairs<'a>(Option<&'a [u8]>);

impl<'a> Iterator for Pairs<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.0?;
        match memchr::memchr2(b';', b',', rest) {
            Some(at) => {
                let (pair, tail) = rest.split_at(at);
                self.0 = Some(tail.get(1..).unwrap_or_default());
                Some(pair)
            }
            None => {
                self.0 = None;
                Some(rest)
            }
        }
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &s[start..end.max(start)]
}

/// The cookie's SameSite attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Sent only on same-site requests.
    Strict,
    /// Sent on same-site requests and top-level cross-site navigations (the default).
    Lax,
    /// Sent on every request; requires `secure`.
    None,
}

impl SameSite {
    /// The attribute value as it appears in Set-Cookie.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// Browsers cap cookie lifetimes at 400 days (RFC 6265bis); so do we.
pub const MAX_COOKIE_AGE: Duration = Duration::from_secs(400 * 86_400);

/// The session cookie's name and attributes: all the cookie writer needs.
#[derive(Debug, Clone)]
pub(crate) struct CookieAttributes {
    pub(crate) name: String,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) domain: Option<String>,
    pub(crate) path: String,
    /// CHIPS: the browser keys the cookie by the top-level site too.
    pub(crate) partitioned: bool,
}

/// A `Set-Cookie` value that issues `value`, persistent until `expires_at` if given.
pub(crate) fn issue(
    config: &CookieAttributes,
    value: &str,
    expires_at: Option<Millis>,
    now: Millis,
) -> String {
    let mut out = String::with_capacity(config.name.len() + value.len() + 128);
    out.push_str(&config.name);
    out.push('=');
    out.push_str(value);
    if let Some(expires_at) = expires_at {
        // Rounded up, and at least 1: Max-Age=0 would delete a live session's cookie.
        let max_age = expires_at
            .saturating_sub(now)
            .div_ceil(1000)
            .clamp(1, MAX_COOKIE_AGE.as_secs());
        out.push_str("; Max-Age=");
        // Writing to a String cannot fail.
        let _ = write!(out, "{max_age}");
        out.push_str("; Expires=");
        push_http_date(&mut out, (now / 1000).saturating_add(max_age));
    }
    attributes(config, &mut out);
    out
}

/// Appends the HTTP date of `secs` after the epoch. Every cookie issued in the
/// same second with the same lifetime has the same `Expires`, so each thread
/// keeps the last one it formatted.
fn push_http_date(out: &mut String, secs: u64) {
    thread_local! {
        static LAST: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs || text.is_empty() {
            *at = secs;
            *text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
        }
        out.push_str(text);
    });
}

/// A `Set-Cookie` value that removes the cookie: the same Path, Domain, Secure,
/// HttpOnly and SameSite as the issued one, so that browsers match and drop it.
pub(crate) fn removal(config: &CookieAttributes) -> String {
    let mut out = String::with_capacity(config.name.len() + 128);
    out.push_str(&config.name);
    out.push_str("=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    attributes(config, &mut out);
    out
}

fn attributes(config: &CookieAttributes, out: &mut String) {
    if let Some(domain) = &config.domain {
        out.push_str("; Domain=");
        out.push_str(domain);
    }
    out.push_str("; Path=");
    out.push_str(&config.path);
    if config.secure {
        out.push_str("; Secure");
    }
    if config.http_only {
        out.push_str("; HttpOnly");
    }
    out.push_str("; SameSite=");
    out.push_str(config.same_site.as_str());
    if config.partitioned {
        out.push_str("; Partitioned");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(headers: &'a [&'a str], name: &'a str) -> Vec<&'a str> {
        cookie_values(headers.iter().map(|h| h.as_bytes()), name)
            .map(|v| std::str::from_utf8(v).expect("utf8"))
            .collect()
    }

    #[test]
    fn finds_ours_among_neighbours() {
        assert_eq!(values(&["a=1; vishnu=xyz; b=2"], "vishnu"), ["xyz"]);
        assert_eq!(values(&["b,c=2; vishnu=xyz"], "vishnu"), ["xyz"]);
        assert_eq!(
            values(&[r#"json={"a":"b;c"}; vishnu=xyz"#], "vishnu"),
            ["xyz"]
        );
        assert_eq!(values(&["novalue; vishnu=xyz;"], "vishnu"), ["xyz"]);
        assert_eq!(values(&["vishnu=\"xyz\""], "vishnu"), ["xyz"]);
        assert_eq!(values(&["\tvishnu = xyz \t"], "vishnu"), ["xyz"]);
    }

    #[test]
    fn headers_joined_with_commas_are_split_too() {
        // How wsgiref and gunicorn pass two Cookie headers.
        assert_eq!(values(&["a=1, vishnu=xyz"], "vishnu"), ["xyz"]);
        assert_eq!(
            values(&["vishnu=first, a=1; vishnu=second"], "vishnu"),
            ["first", "second"]
        );
    }

    #[test]
    fn reads_several_headers_and_duplicates_in_order() {
        assert_eq!(
            values(&["a=1; vishnu=first", "vishnu=second"], "vishnu"),
            ["first", "second"]
        );
    }

    #[test]
    fn expires_matches_max_age_as_the_second_changes() {
        let config = CookieAttributes {
            name: "vishnu".into(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            domain: None,
            path: "/".into(),
            partitioned: false,
        };
        // Each second's date is formatted once per thread and reused: moving
        // back and forth between seconds must never give a stale one.
        let cases = [
            (
                0,
                1_000_000,
                "Max-Age=1000; Expires=Thu, 01 Jan 1970 00:16:40 GMT",
            ),
            (
                999,
                1_000_999,
                "Max-Age=1000; Expires=Thu, 01 Jan 1970 00:16:40 GMT",
            ),
            (
                1_000,
                1_001_000,
                "Max-Age=1000; Expires=Thu, 01 Jan 1970 00:16:41 GMT",
            ),
            (
                0,
                1_000_000,
                "Max-Age=1000; Expires=Thu, 01 Jan 1970 00:16:40 GMT",
            ),
            (
                1_764_460_800_000,
                1_764_547_200_000,
                "Max-Age=86400; Expires=Mon, 01 Dec 2025 00:00:00 GMT",
            ),
        ];
        for (now, expires_at, expected) in cases {
            let cookie = issue(&config, "v", Some(expires_at), now);
            assert!(
                cookie.starts_with(&format!("vishnu=v; {expected}; Path=/")),
                "{now}: {cookie}"
            );
        }
    }

    proptest::proptest! {
        /// The vectorised scan cuts a header exactly where `split` on `;` and
        /// `,` does, empty pieces and all.
        #[test]
        fn pairs_cut_where_split_does(header in proptest::collection::vec(
            proptest::sample::select(b"ab=; ,\"\t".to_vec()), 0..40,
        )) {
            let split: Vec<&[u8]> = header.split(|&b| b == b';' || b == b',').collect();
            let pairs: Vec<&[u8]> = Pairs(Some(&header)).collect();
            proptest::prop_assert_eq!(pairs, split);
        }
    }

    #[test]
    fn names_match_exactly() {
        assert!(values(&["Vishnu=x; vishnu2=y; xvishnu=z"], "vishnu").is_empty());
        assert!(values(&["", ";;;", "="], "vishnu").is_empty());
    }
}
