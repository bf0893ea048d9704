//! The cookie store: the whole session in the sealed cookie, no server state.
#![cfg(feature = "axum")]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use vishnu::{Config, CookieStore};

fn cookie_config() -> vishnu::ConfigBuilder {
    Config::builder().secret(SECRET).store(CookieStore)
}

#[tokio::test]
async fn sessions_live_in_the_cookie() {
    let app = app(cookie_config().build().expect("config"));
    let mut client = Client::new(app.clone());
    assert_eq!(client.get("/incr").await.body, "1");
    assert_eq!(client.get("/incr").await.body, "2");
    client.get("/set/user/ada").await;
    assert_eq!(client.get("/get/user").await.body, "ada");
    assert_eq!(client.get("/get/n").await.body, "2");
    // Another app instance with the same secret reads it: no shared server state needed.
    let other = common::app(cookie_config().build().expect("config"));
    let pair = client.pair().expect("cookie");
    assert_eq!(send(&other, "/get/user", &[&pair]).await.body, "ada");
    // The data is not readable in the cookie.
    assert!(!client.cookie.as_deref().unwrap_or("").contains("ada"));
}

#[tokio::test]
async fn tampered_cookies_give_fresh_sessions() {
    let mut client = Client::new(app(cookie_config().build().expect("config")));
    client.get("/set/user/ada").await;
    let mut bad = client.cookie.clone().expect("cookie").into_bytes();
    bad[20] = if bad[20] == b'A' { b'B' } else { b'A' };
    let a = send(
        &client.app,
        "/get/user",
        &[&format!(
            "vishnu={}",
            String::from_utf8(bad).expect("ascii")
        )],
    )
    .await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "none"));
}

#[tokio::test]
async fn a_session_too_large_for_a_cookie_is_an_error_at_save_time() {
    let app = app(cookie_config().build().expect("config"));
    let big = "x".repeat(5000);
    let a = send(&app, &format!("/set/blob/{big}"), &[]).await;
    assert_eq!(
        a.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "the handler's save() must fail"
    );
    assert!(a.set_cookies.is_empty(), "no truncated cookie may go out");
    // With auto_save the failure at the end of the request is a 500, never a dropped cookie.
    let auto = common::app(cookie_config().auto_save(true).build().expect("config"));
    let a = send(&auto, &format!("/put/blob/{big}"), &[]).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(a.set_cookies.is_empty());
    let fits = send(&auto, &format!("/put/blob/{}", "x".repeat(2000)), &[]).await;
    assert_eq!(fits.status, StatusCode::OK);
    assert!(fits.set_cookie().expect("cookie").len() <= 4096 + 100);
}

#[tokio::test]
async fn expiry_is_enforced_from_the_sealed_record() {
    let clock = MockClock::new();
    let config = cookie_config()
        .timeout(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .expect("config");
    let mut client = Client::new(app(config));
    client.get("/set/user/ada").await;
    let replay = client.pair().expect("cookie");
    clock.advance(Duration::from_secs(11));
    assert_eq!(
        send(&client.app, "/get/user", &[&replay]).await.body,
        "none"
    );
}

#[tokio::test]
async fn terminate_removes_the_cookie_but_cannot_revoke_a_copy() {
    let mut client = Client::new(app(cookie_config().build().expect("config")));
    client.get("/set/user/ada").await;
    let copy = client.pair().expect("cookie");
    let bye = client.get("/terminate").await;
    assert!(bye.set_cookie().expect("removal").contains("Max-Age=0"));
    assert_eq!(client.get("/get/user").await.body, "none");
    // The documented limit of client-side sessions: a copied cookie stays valid until it expires.
    assert_eq!(send(&client.app, "/get/user", &[&copy]).await.body, "ada");
}

#[tokio::test]
async fn an_encrypt_key_is_used_when_given_and_rotation_works() {
    let old = cookie_config()
        .encrypt_key(ENCRYPT_KEY)
        .build()
        .expect("config");
    let mut client = Client::new(app(old));
    client.get("/set/user/ada").await;
    let rotated = cookie_config()
        .encrypt_key("a brand new encryption key of 32+ bytes")
        .fallback_encrypt_key(ENCRYPT_KEY)
        .build()
        .expect("config");
    client.app = app(rotated);
    let a = client.get("/get/user").await;
    assert_eq!(a.body, "ada");
    assert!(a.set_cookie().is_some(), "re-issued under the new key");
}

#[tokio::test]
async fn terminate_sends_a_removal_cookie() {
    let mut client = Client::new(app(cookie_config().build().expect("config")));
    client.get("/set/user/ada").await;
    let ended = client.get("/terminate").await;
    assert!(
        ended.set_cookie().is_some_and(|c| c.contains("Max-Age=0")),
        "{:?}",
        ended.set_cookie()
    );
    assert_eq!(client.get("/get/user").await.body, "none");
}

#[tokio::test]
async fn a_users_sessions_are_unsupported_with_a_clear_error() {
    let engine = vishnu::Engine::new(cookie_config().build().expect("config"));
    let unsupported = |r: Result<_, vishnu::SessionError>| matches!(r, Err(vishnu::SessionError::Unsupported(why)) if why.contains("cookie store"));
    assert!(unsupported(engine.sessions_of("ada").await.map(|_| ())));
    assert!(unsupported(engine.revoke("ada", "h").await.map(|_| ())));
    assert!(unsupported(engine.revoke_all("ada").await.map(|_| ())));
    let session = engine.begin(vec![]);
    session
        .login("ada")
        .await
        .expect("login works in the cookie");
    assert_eq!(session.user().await.expect("user").as_deref(), Some("ada"));
    assert!(unsupported(session.sessions().await.map(|_| ())));
    assert!(unsupported(session.revoke_others().await.map(|_| ())));
}
