//! The one "this test needs a server" helper: a test asks for the environment
//! variable that scripts/test.sh sets when it starts the server. Outside CI a
//! missing variable skips the test with a message; under CI (`CI=true` or
//! `CI=1`) it fails the test, so that no CI run passes by skipping.
#![allow(dead_code)]

/// Whether this is a CI run: `CI` is `true` or `1` (any case), as CI systems set it.
pub fn under_ci() -> bool {
    std::env::var("CI")
        .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
        .unwrap_or(false)
}

/// The value of `var`; when it is unset or empty, `None` outside CI (after
/// printing why the test is skipped and `how` to set it), a panic under CI.
pub fn required_env(var: &str, how: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if under_ci() => panic!("{var} is not set, and under CI no test may skip: {how}"),
        _ => {
            eprintln!("skipping: {var} is not set ({how})");
            None
        }
    }
}
