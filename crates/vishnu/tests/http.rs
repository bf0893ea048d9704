//! HTTP-level tests of the core semantics, through the tower layer and the axum extractor.
#![cfg(feature = "axum")]

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use tower::ServiceExt;
use vishnu::{
    Config, ConfigError, MemoryStore, SameSite, Session, SessionError, SessionLayer, SessionStore,
};

fn memory_app() -> (Router, Arc<FlakyStore>) {
    let store = FlakyStore::new(Arc::new(MemoryStore::new()));
    let config = builder()
        .shared_store(store.clone())
        .build()
        .expect("config");
    (app(config), store)
}

// ---- requests that do not use the session -------------------------------------------

#[tokio::test]
async fn untouched_session_costs_no_store_io_and_no_cookie() {
    let (app, store) = memory_app();
    let mut client = Client::new(app.clone());
    client.get("/set/user/ada").await;
    let before = store.io();
    let a = client.get("/public").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "public"));
    assert!(a.set_cookies.is_empty());
    let a = send(&app, "/public", &["vishnu=garbage"]).await;
    assert!(a.set_cookies.is_empty());
    assert_eq!(
        store.io(),
        before,
        "a request that never used the session touched the store"
    );
}

#[tokio::test]
async fn reading_a_missing_session_sends_no_cookie_and_creates_nothing() {
    let (app, store) = memory_app();
    let a = send(&app, "/get/user", &[]).await;
    assert_eq!(a.body, "none");
    assert!(a.set_cookies.is_empty());
    assert_eq!(store.writes.load(Ordering::SeqCst), 0);
}

// ---- the cookie: tampering, malformed input, parsing ---------------------------------

async fn flips_give_fresh_sessions(config: Config) {
    let app = app(config);
    let mut client = Client::new(app.clone());
    client.get("/set/user/ada").await;
    let good = client.cookie.clone().expect("cookie");
    let raw = URL_SAFE_NO_PAD.decode(&good).expect("base64");
    let mut tried = 0;
    for byte in 0..raw.len() {
        for bit in 0..8 {
            let mut bad = raw.clone();
            bad[byte] ^= 1 << bit;
            let cookie = format!("vishnu={}", URL_SAFE_NO_PAD.encode(&bad));
            let a = send(&app, "/get/user", &[&cookie]).await;
            assert_eq!(
                (a.status, a.body.as_str()),
                (StatusCode::OK, "none"),
                "byte {byte} bit {bit}"
            );
            tried += 1;
        }
    }
    assert_eq!(tried, raw.len() * 8);
    // The good cookie still works.
    assert_eq!(client.get("/get/user").await.body, "ada");
}

#[tokio::test]
async fn every_bit_flip_of_a_signed_cookie_gives_a_fresh_session() {
    flips_give_fresh_sessions(builder().build().expect("config")).await;
}

#[tokio::test]
async fn every_bit_flip_of_an_encrypted_cookie_gives_a_fresh_session() {
    flips_give_fresh_sessions(builder().encrypt_key(ENCRYPT_KEY).build().expect("config")).await;
}

#[tokio::test]
async fn malformed_cookies_give_fresh_sessions_and_are_removed() {
    let store = Arc::new(MemoryStore::new());
    let plain = app(builder()
        .shared_store(store.clone())
        .build()
        .expect("config"));
    let encrypted = app(builder()
        .shared_store(store)
        .encrypt_key(ENCRYPT_KEY)
        .build()
        .expect("config"));
    let mut client = Client::new(plain.clone());
    client.get("/set/user/ada").await;
    let good = client.cookie.clone().expect("cookie");
    let cases = [
        String::new(),
        "x".into(),
        good[..good.len() / 2].to_owned(),
        format!("{good}AAAA"),
        format!("{good}="),
        good.replace(|c: char| c.is_ascii_lowercase(), "+"),
        "%%%not base64%%%".into(),
        URL_SAFE_NO_PAD.encode([9u8; 49]),
        "A".repeat(5000),
    ];
    for case in &cases {
        let a = send(&plain, "/get/user", &[&format!("vishnu={case}")]).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (StatusCode::OK, "none"),
            "{case:.40}"
        );
        assert!(a.set_cookie().expect("removal").contains("Max-Age=0"));
    }
    // A plain cookie after encryption was turned on: a fresh session, not a 500.
    let a = send(&encrypted, "/get/user", &[&format!("vishnu={good}")]).await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "none"));
}

#[tokio::test]
async fn our_cookie_is_found_among_malformed_neighbours_and_several_headers() {
    let (app, _) = memory_app();
    let mut client = Client::new(app.clone());
    client.get("/set/user/ada").await;
    let pair = client.pair().expect("cookie");
    for headers in [
        vec![format!("b,c=2; {pair}")],
        vec![format!(r#"json={{"a":"b","c":[1,2]}}; {pair}; after=1"#)],
        vec![format!("novalue; ; =; {pair}")],
        vec!["first=1".to_owned(), pair.clone()],
        vec!["vishnu=forged".to_owned(), pair.clone()],
    ] {
        let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let a = send(&app, "/get/user", &refs).await;
        assert_eq!(a.body, "ada", "{headers:?}");
    }
}

#[tokio::test]
async fn a_cookie_made_under_a_fallback_secret_is_accepted_and_reissued() {
    let store = Arc::new(MemoryStore::new());
    let old = app(Config::builder()
        .secret(OLD_SECRET)
        .shared_store(store.clone())
        .build()
        .expect("config"));
    let rotated = app(Config::builder()
        .secret(SECRET)
        .fallback_secret(OLD_SECRET)
        .shared_store(store.clone())
        .build()
        .expect("config"));
    let new_only = app(Config::builder()
        .secret(SECRET)
        .shared_store(store)
        .build()
        .expect("config"));

    let mut client = Client::new(old);
    client.get("/set/user/ada").await;
    let old_cookie = client.cookie.clone().expect("cookie");
    assert_eq!(
        send(&new_only, "/get/user", &[&format!("vishnu={old_cookie}")])
            .await
            .body,
        "none"
    );

    client.app = rotated;
    let a = client.get("/get/user").await;
    assert_eq!(a.body, "ada");
    let reissued = value(a.set_cookie().expect("re-issued under the current secret")).to_owned();
    assert_ne!(reissued, old_cookie);
    // Once re-issued, no further Set-Cookie.
    assert!(client.get("/get/user").await.set_cookies.is_empty());
    client.app = new_only;
    assert_eq!(client.get("/get/user").await.body, "ada");
}

#[tokio::test]
async fn a_write_extends_the_cookie_it_received_with_the_same_value() {
    for sealed in [false, true] {
        let mut b = builder().timeout(Duration::from_secs(3600));
        if sealed {
            b = b.encrypt_key(ENCRYPT_KEY);
        }
        let mut client = Client::new(app(b.build().expect("config")));
        client.get("/set/user/ada").await;
        let first = client.cookie.clone().expect("cookie");
        let again = client.get("/set/user/bob").await;
        // A persistent cookie is sent again to extend it: the value the
        // browser already holds, under the same id and the current key.
        let extended = again.set_cookie().expect("a write extends the cookie");
        assert_eq!(value(extended), first, "sealed: {sealed}");
        assert!(extended.contains("Max-Age="), "{extended}");
        assert_eq!(client.get("/get/user").await.body, "bob");
    }
}

// ---- cookie attributes and configuration ---------------------------------------------

#[tokio::test]
async fn default_cookie_attributes() {
    let (app, _) = memory_app();
    let a = send(&app, "/set/user/ada", &[]).await;
    let c = a.set_cookie().expect("cookie");
    assert!(c.starts_with("vishnu="));
    assert!(
        c.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax"),
        "{c}"
    );
    assert_eq!(
        attr(c, "Max-Age"),
        None,
        "no timeout means a browser-session cookie"
    );
    assert_eq!(attr(c, "Domain"), None);
}

#[tokio::test]
async fn each_option_shows_in_set_cookie() {
    let config = builder()
        .cookie_name("sid")
        .domain("example.com")
        .path("/app")
        .secure(false)
        .http_only(false)
        .same_site(SameSite::Strict)
        .build()
        .expect("config");
    let a = send(&app(config), "/set/user/ada", &[]).await;
    let c = a.set_cookie().expect("cookie");
    assert!(c.starts_with("sid="), "{c}");
    assert_eq!(attr(c, "Domain"), Some("example.com"));
    assert_eq!(attr(c, "Path"), Some("/app"));
    assert_eq!(attr(c, "SameSite"), Some("Strict"));
    assert_eq!(attr(c, "Secure"), None);
    assert_eq!(attr(c, "HttpOnly"), None);

    let none = builder().same_site(SameSite::None).build().expect("config");
    let a = send(&app(none), "/set/user/ada", &[]).await;
    assert_eq!(
        attr(a.set_cookie().expect("cookie"), "SameSite"),
        Some("None")
    );
}

#[tokio::test]
async fn max_age_and_expires_follow_the_timeouts() {
    let config = builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("config");
    let a = send(&app(config), "/set/user/ada", &[]).await;
    let c = a.set_cookie().expect("cookie");
    assert_eq!(attr(c, "Max-Age"), Some("60"));
    let expires = httpdate::parse_http_date(attr(c, "Expires").expect("Expires")).expect("date");
    let delta = expires
        .duration_since(SystemTime::now())
        .expect("future")
        .as_secs();
    assert!((58..=61).contains(&delta), "Expires is {delta}s away");

    let capped = builder()
        .timeout(Duration::from_secs(60))
        .absolute_timeout(Duration::from_secs(30))
        .build()
        .expect("config");
    let a = send(&app(capped), "/set/user/ada", &[]).await;
    assert_eq!(attr(a.set_cookie().expect("cookie"), "Max-Age"), Some("30"));
}

#[tokio::test]
async fn a_per_session_timeout_changes_only_that_session() {
    let config = builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("config");
    let app = app(config);
    let mut a = Client::new(app.clone());
    let mut b = Client::new(app.clone());
    a.get("/set/user/ada").await;
    let answer = a.get("/timeout/5").await;
    assert_eq!(
        attr(answer.set_cookie().expect("cookie"), "Max-Age"),
        Some("5")
    );
    let answer = b.get("/set/user/bob").await;
    assert_eq!(
        attr(answer.set_cookie().expect("cookie"), "Max-Age"),
        Some("60")
    );
    let answer = a.get("/timeout/browser").await;
    assert_eq!(attr(answer.set_cookie().expect("cookie"), "Max-Age"), None);
    let answer = Client::new(app).get("/set/user/eve").await;
    assert_eq!(
        attr(answer.set_cookie().expect("cookie"), "Max-Age"),
        Some("60")
    );
}

#[test]
fn configuration_errors_name_the_option() {
    let err = |b: vishnu::ConfigBuilder| b.build().expect_err("must fail");
    let short = err(Config::builder().secret("short").store(MemoryStore::new()));
    assert_eq!(
        short,
        ConfigError::KeyTooShort {
            option: "secret",
            len: 5
        }
    );
    assert!(short.to_string().starts_with("secret:"));
    assert_eq!(
        err(Config::builder().store(MemoryStore::new())),
        ConfigError::MissingSecret
    );
    assert_eq!(
        err(Config::builder().secret(SECRET)),
        ConfigError::MissingStore
    );
    assert!(err(builder().encrypt_key("too short"))
        .to_string()
        .starts_with("encrypt_key:"));
    assert!(err(builder().fallback_secret("x"))
        .to_string()
        .starts_with("fallback_secret:"));
    assert!(matches!(
        err(builder().cookie_name("a b")),
        ConfigError::InvalidCookieName(_)
    ));
    assert!(matches!(
        err(builder().cookie_name("")),
        ConfigError::InvalidCookieName(_)
    ));
    assert_eq!(
        err(builder().same_site(SameSite::None).secure(false)),
        ConfigError::SameSiteNoneRequiresSecure
    );
    assert!(err(builder().path("app")).to_string().starts_with("path:"));
    assert!(err(builder().domain("a;b"))
        .to_string()
        .starts_with("domain:"));
    assert!(err(builder().timeout(Duration::ZERO))
        .to_string()
        .starts_with("timeout:"));
    assert!(err(builder().absolute_timeout(Duration::from_millis(1500)))
        .to_string()
        .starts_with("absolute_timeout:"));
}

#[test]
fn host_and_secure_prefixes_are_validated() {
    let err = |b: vishnu::ConfigBuilder| b.build().expect_err("must fail");
    assert!(matches!(
        err(builder().cookie_name("__Host-id").secure(false)),
        ConfigError::PrefixRequirements(_)
    ));
    assert!(matches!(
        err(builder().cookie_name("__Host-id").path("/app")),
        ConfigError::PrefixRequirements(_)
    ));
    assert!(matches!(
        err(builder().cookie_name("__Host-id").domain("example.com")),
        ConfigError::PrefixRequirements(_)
    ));
    assert!(matches!(
        err(builder().cookie_name("__host-id").secure(false)),
        ConfigError::PrefixRequirements(_)
    ));
    assert!(matches!(
        err(builder().cookie_name("__Secure-id").secure(false)),
        ConfigError::PrefixRequirements(_)
    ));
    builder()
        .cookie_name("__Secure-id")
        .domain("example.com")
        .build()
        .expect("valid");
}

#[tokio::test]
async fn a_host_prefixed_cookie_works() {
    let config = builder()
        .cookie_name("__Host-vishnu")
        .build()
        .expect("config");
    let mut client = Client::named(app(config), "__Host-vishnu");
    let a = client.get("/set/user/ada").await;
    let c = a.set_cookie().expect("cookie");
    assert!(c.starts_with("__Host-vishnu="));
    assert!(c.contains("; Path=/; Secure"));
    assert_eq!(attr(c, "Domain"), None);
    assert_eq!(client.get("/get/user").await.body, "ada");
}

// ---- activity and expiry ---------------------------------------------------------------

#[tokio::test]
async fn a_save_is_the_requests_only_write_even_when_it_is_slow() {
    let clock = MockClock::new();
    let counted = FlakyStore::new(Arc::new(MemoryStore::new()));
    // Longer than the refresh throttle (a tenth of the timeout).
    *counted.slow_saves.lock().expect("lock") = Some((clock.clone(), Duration::from_secs(20)));
    let config = builder()
        .shared_store(counted.clone())
        .timeout(Duration::from_secs(100))
        .clock(clock.clone())
        .auto_save(true)
        .build()
        .expect("config");
    let mut client = Client::new(app(config));
    client.get("/set/user/ada").await;
    clock.advance(Duration::from_secs(50));
    let writes = counted.writes.load(Ordering::SeqCst);
    let a = client.get("/put/user/grace").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        counted.writes.load(Ordering::SeqCst),
        writes + 1,
        "the save stamped the expiry: no touch after it"
    );
    // The expiry counts from the save's reading of the clock, at its start
    // (the clock is now 20 s past it).
    clock.advance(Duration::from_secs(79));
    assert_eq!(client.get("/get/user").await.body, "grace");
}

#[tokio::test]
async fn reading_is_activity_with_throttled_refreshes() {
    let clock = MockClock::new();
    let store = FlakyStore::new(Arc::new(MemoryStore::new()));
    let config = builder()
        .shared_store(store.clone())
        .timeout(Duration::from_secs(100))
        .clock(clock.clone())
        .build()
        .expect("config");
    let mut client = Client::new(app(config));
    client.get("/set/user/ada").await;

    clock.advance(Duration::from_secs(5));
    let writes = store.writes.load(Ordering::SeqCst);
    let a = client.get("/get/user").await;
    assert_eq!(a.body, "ada");
    assert!(a.set_cookies.is_empty(), "refreshed too soon");
    assert_eq!(
        store.writes.load(Ordering::SeqCst),
        writes,
        "a read within the throttle window wrote"
    );

    clock.advance(Duration::from_secs(6));
    let a = client.get("/get/user").await;
    assert_eq!(
        attr(a.set_cookie().expect("refreshed cookie"), "Max-Age"),
        Some("100")
    );
    assert_eq!(
        store.writes.load(Ordering::SeqCst),
        writes + 1,
        "one touch, no rewrite"
    );

    // Only reading, the user stays logged in well past the first expiry.
    for _ in 0..3 {
        clock.advance(Duration::from_secs(90));
        assert_eq!(client.get("/get/user").await.body, "ada");
    }
    clock.advance(Duration::from_secs(101));
    assert_eq!(client.get("/get/user").await.body, "none");
}

#[tokio::test]
async fn expiry_is_enforced_on_the_server_whatever_the_cookie_says() {
    let clock = MockClock::new();
    let config = builder()
        .timeout(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .expect("config");
    let app = app(config);
    let mut client = Client::new(app.clone());
    client.get("/set/user/ada").await;
    let replayed = client.pair().expect("cookie");
    clock.advance(Duration::from_secs(11));
    let a = send(&app, "/get/user", &[&replayed]).await;
    assert_eq!(a.body, "none");
    assert!(a.set_cookie().expect("removal").contains("Max-Age=0"));
}

#[tokio::test]
async fn the_absolute_timeout_is_never_extended_by_activity() {
    let clock = MockClock::new();
    let config = builder()
        .timeout(Duration::from_secs(100))
        .absolute_timeout(Duration::from_secs(30))
        .clock(clock.clone())
        .build()
        .expect("config");
    let mut client = Client::new(app(config));
    client.get("/set/user/ada").await;
    for _ in 0..3 {
        clock.advance(Duration::from_secs(9));
        client.get("/save").await;
        assert_eq!(client.get("/get/user").await.body, "ada");
    }
    clock.advance(Duration::from_secs(4));
    assert_eq!(client.get("/get/user").await.body, "none");
}

// ---- lifecycle ---------------------------------------------------------------------------

#[tokio::test]
async fn cycle_id_issues_a_new_id_keeps_data_and_kills_the_old_one() {
    let (app, _) = memory_app();
    let mut client = Client::new(app.clone());
    client.get("/set/cart/full").await;
    let before = client.pair().expect("cookie");
    client.get("/login/ada").await;
    let after = client.pair().expect("cookie");
    assert_ne!(before, after);
    assert_eq!(client.get("/get/cart").await.body, "full");
    assert_eq!(client.get("/get/user").await.body, "ada");
    assert_eq!(send(&app, "/get/cart", &[&before]).await.body, "none");
}

#[tokio::test]
async fn terminate_then_set_then_save_gives_a_new_live_session() {
    let (app, _) = memory_app();
    let mut client = Client::new(app.clone());
    client.get("/set/user/ada").await;
    let old = client.pair().expect("cookie");
    let a = client.get("/terminate-then-set").await;
    assert_eq!(a.body, "again");
    assert!(!a.set_cookie().expect("cookie").contains("Max-Age=0"));
    assert_ne!(client.pair().expect("cookie"), old);
    assert_eq!(client.get("/get/user").await.body, "bob");
    assert_eq!(send(&app, "/get/user", &[&old]).await.body, "none");
}

#[tokio::test]
async fn terminate_without_a_prior_read_deletes_the_record() {
    let (app, _) = memory_app();
    let mut client = Client::new(app.clone());
    client.get("/set/user/ada").await;
    let old = client.pair().expect("cookie");
    client.get("/terminate").await;
    assert_eq!(send(&app, "/get/user", &[&old]).await.body, "none");
}

/// The Set-Cookie of a new session, then that of its removal.
async fn issued_then_removed(config: Config) -> (String, String) {
    let mut client = Client::new(app(config));
    let issued = client
        .get("/set/user/ada")
        .await
        .set_cookie()
        .expect("cookie")
        .to_owned();
    let removal = client
        .get("/terminate")
        .await
        .set_cookie()
        .expect("removal")
        .to_owned();
    (issued, removal)
}

#[tokio::test]
async fn the_removal_cookie_carries_the_issued_attributes() {
    let config = builder()
        .domain("example.com")
        .path("/app")
        .same_site(SameSite::Strict)
        .build()
        .expect("config");
    let (issued, removal) = issued_then_removed(config).await;
    for a in ["Domain", "Path", "Secure", "HttpOnly", "SameSite"] {
        assert_eq!(attr(&removal, a), attr(&issued, a), "{a}");
    }
    assert_eq!(attr(&removal, "Max-Age"), Some("0"));
    assert!(removal.starts_with("vishnu=;"));
}

#[tokio::test]
async fn a_partitioned_cookie_and_its_removal_say_partitioned() {
    let config = builder().partitioned(true).build().expect("config");
    assert!(config.partitioned());
    let (issued, removal) = issued_then_removed(config).await;
    assert!(
        issued.ends_with("; Secure; HttpOnly; SameSite=Lax; Partitioned"),
        "{issued}"
    );
    assert_eq!(attr(&removal, "Partitioned"), Some(""), "{removal}");
    // Not partitioned by default.
    let mut plain = Client::new(app(builder().build().expect("config")));
    let issued = plain
        .get("/set/user/ada")
        .await
        .set_cookie()
        .expect("cookie")
        .to_owned();
    assert_eq!(attr(&issued, "Partitioned"), None);
}

#[test]
fn a_partitioned_cookie_requires_secure() {
    assert_eq!(
        builder()
            .partitioned(true)
            .secure(false)
            .build()
            .expect_err("refused"),
        ConfigError::PartitionedRequiresSecure
    );
}

#[tokio::test]
async fn without_auto_save_changes_need_save() {
    let (app, store) = memory_app();
    let a = send(&app, "/put/user/ada", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.set_cookies.is_empty());
    assert_eq!(store.writes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_5xx_response_persists_nothing_unless_saved() {
    let config = builder().auto_save(true).build().expect("config");
    let mut client = Client::new(app(config));
    client.get("/put/user/ada").await;
    let a = client.get("/fail/user/mallory").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(client.get("/get/user").await.body, "ada");
    let a = client.get("/fail-after-save/user/bob").await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(client.get("/get/user").await.body, "bob");
}

// ---- store failures ----------------------------------------------------------------------

#[tokio::test]
async fn a_load_error_reaches_the_handler_as_a_value() {
    let store = FlakyStore::new(Arc::new(MemoryStore::new()));
    let config = builder()
        .shared_store(store.clone())
        .build()
        .expect("config");
    let app = Router::new()
        .route(
            "/probe",
            get(|s: Session| async move {
                match s.get::<String>("user").await {
                    Err(SessionError::Store(_)) => {
                        (StatusCode::SERVICE_UNAVAILABLE, "store down, try later").into_response()
                    }
                    Err(e) => e.into_response(),
                    Ok(_) => "fine".into_response(),
                }
            }),
        )
        .layer(SessionLayer::new(config.clone()))
        .merge(common::app(config));
    let mut client = Client::new(app);
    client.get("/set/user/ada").await;
    store.fail_reads.store(true, Ordering::SeqCst);
    let a = client.get("/probe").await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "store down, try later")
    );
    assert!(
        a.set_cookies.is_empty(),
        "a store outage must not log the user out"
    );
    // With `?`, the error becomes a 500 that reveals nothing.
    let a = client.get("/get/user").await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    );
    store.fail_reads.store(false, Ordering::SeqCst);
    assert_eq!(client.get("/get/user").await.body, "ada");
}

#[tokio::test]
async fn a_save_error_at_the_end_becomes_an_opaque_500() {
    let store = FlakyStore::new(Arc::new(MemoryStore::new()));
    let config = builder()
        .shared_store(store.clone())
        .auto_save(true)
        .build()
        .expect("config");
    let mut client = Client::new(app(config));
    client.get("/put/user/ada").await;
    store.fail_writes.store(true, Ordering::SeqCst);
    let a = client.get("/put/user/bob").await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        a.body.is_empty(),
        "the 500 body must reveal nothing: {:?}",
        a.body
    );
    assert!(a.set_cookies.is_empty());
    store.fail_writes.store(false, Ordering::SeqCst);
    assert_eq!(client.get("/get/user").await.body, "ada");
}

// ---- concurrency ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_increments_end_at_exactly_a_hundred() {
    let (app, _) = memory_app();
    let mut client = Client::new(app.clone());
    client.get("/save").await;
    let pair = client.pair().expect("cookie");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (app, pair) = (app.clone(), pair.clone());
            tokio::spawn(async move { send(&app, "/incr", &[&pair]).await })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        let a = t.await.expect("task");
        assert_eq!(a.status, StatusCode::OK);
        seen.push(a.body.parse::<u64>().expect("number"));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=100).collect::<Vec<_>>(),
        "each increment returns its own committed value"
    );
    assert_eq!(client.get("/get/n").await.body, "100");
}

// ---- fronts ----------------------------------------------------------------------------

#[tokio::test]
async fn plain_tower_services_get_the_session_from_extensions() {
    let config = builder().auto_save(true).build().expect("config");
    let svc = tower::ServiceBuilder::new()
        .layer(SessionLayer::new(config))
        .service_fn(|req: Request<Body>| async move {
            let session = req
                .extensions()
                .get::<Session>()
                .cloned()
                .expect("layer installed");
            let n: u64 = session.get("n").await?.unwrap_or(0);
            session.set("n", &(n + 1))?;
            Ok::<_, SessionError>(http::Response::new(Body::from(n.to_string())))
        });
    let res = svc
        .clone()
        .oneshot(Request::new(Body::empty()))
        .await
        .expect("ok");
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("pair")
        .to_owned();
    let res = svc
        .oneshot(
            Request::builder()
                .header("cookie", cookie)
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("ok");
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&body[..], b"1");
}

#[tokio::test]
async fn a_missing_layer_is_explained() {
    let app = Router::new().route("/", get(|_s: Session| async { "unreachable" }));
    let a = send(&app, "/", &[]).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        a.body.contains("is vishnu::SessionLayer installed"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn a_non_json_value_is_refused_at_set_time() {
    let engine = vishnu::Engine::new(builder().build().expect("config"));
    let session = engine.begin(vec![]);
    let mut map = std::collections::HashMap::new();
    map.insert(vec![1u8], 1);
    let err = session
        .set("bad", &map)
        .expect_err("a map with non-string keys is not JSON");
    assert!(err.to_string().contains("\"bad\""), "{err}");
}

// ---- the memory store ----------------------------------------------------------------------

#[tokio::test]
async fn the_memory_store_evicts_expired_records_for_real() {
    use vishnu::record::Record;
    let store = MemoryStore::new();
    let now = vishnu::SystemClock.now_millis();
    for _ in 0..500 {
        let key = vishnu::id::SessionId::generate().expect("rng").store_key();
        store
            .create(&key, &Record::new(Default::default(), now, now + 300))
            .await
            .expect("create");
    }
    assert_eq!(store.len(), 500);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Any use of a shard sweeps it; touch every shard.
    for _ in 0..2000 {
        let key = vishnu::id::SessionId::generate().expect("rng").store_key();
        store.load(&key).await.expect("load");
    }
    assert_eq!(store.len(), 0, "expired records are still held");
}

#[tokio::test]
async fn the_memory_store_capacity_bounds_memory() {
    use vishnu::record::Record;
    let store = MemoryStore::new().with_capacity(128);
    let now = vishnu::SystemClock.now_millis();
    for i in 0..5000u64 {
        let key = vishnu::id::SessionId::generate().expect("rng").store_key();
        store
            .create(
                &key,
                &Record::new(Default::default(), now, now + 10_000 + i),
            )
            .await
            .expect("create");
    }
    assert!(store.len() <= 128, "{} records held", store.len());
}

use vishnu::Clock as _;

#[tokio::test]
async fn max_age_is_rounded_up_never_zero_for_a_live_session() {
    let clock = MockClock::new();
    let config = builder()
        .timeout(Duration::from_secs(1))
        .clock(clock.clone())
        .build()
        .expect("config");
    let mut client = Client::new(app(config));
    client.get("/set/user/ada").await;
    clock.advance(Duration::from_millis(300));
    let a = client.get("/save").await;
    assert_eq!(attr(a.set_cookie().expect("cookie"), "Max-Age"), Some("1"));
    clock.advance(Duration::from_millis(990));
    let a = client.get("/get/user").await;
    assert_eq!(a.body, "ada");
}

#[tokio::test]
async fn a_cookieless_logout_sends_no_removal_cookie() {
    // A cross-site POST to a logout route arrives without a SameSite=Strict
    // cookie; answering it with a removal cookie would let another site log
    // the user out of their browser.
    let (app, _) = memory_app();
    let a = send(&app, "/terminate", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.set_cookies.is_empty(), "{:?}", a.set_cookies);
    let mut client = Client::new(app.clone());
    client.get("/set/user/ada").await;
    let bye = client.get("/terminate").await;
    assert!(bye.set_cookie().expect("removal").contains("Max-Age=0"));
}
