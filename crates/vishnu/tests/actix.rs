//! The actix-web front: `SessionMiddleware`, the `Session` extractor and
//! `SessionError` as an actix `ResponseError`, through actix's test service.

mod common;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use actix_http::Request;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{COOKIE, SET_COOKIE};
use actix_web::http::StatusCode;
use actix_web::{test, web, App, Error};
use common::{attr, builder, value, FlakyStore};
use tracing_subscriber::util::SubscriberInitExt;
use vishnu::actix::SessionMiddleware;
use vishnu::{Config, MemoryStore, Session, SessionError};

// ---- fixtures ---------------------------------------------------------------------------

async fn counter(session: Session) -> Result<String, SessionError> {
    let n: u64 = session
        .update("counter", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(n.to_string())
}

/// Sets a value and leaves the save to the middleware (`auto_save`).
async fn put(
    session: Session,
    path: web::Path<(String, String)>,
) -> Result<&'static str, SessionError> {
    let (key, value) = path.into_inner();
    session.set(&key, &value)?;
    Ok("put")
}

async fn get(session: Session, key: web::Path<String>) -> Result<String, SessionError> {
    Ok(session
        .get::<String>(&key)
        .await?
        .unwrap_or_else(|| "none".to_owned()))
}

async fn login(session: Session, user: web::Path<String>) -> Result<&'static str, SessionError> {
    session.set("user", &*user)?;
    session.login(&user).await?;
    Ok("welcome")
}

async fn logout(session: Session) -> Result<&'static str, SessionError> {
    session.terminate().await?;
    Ok("bye")
}

/// The routes the tests drive, behind the middleware, saving with `auto_save`.
macro_rules! app {
    ($config:expr) => {
        test::init_service(
            App::new()
                .wrap(SessionMiddleware::new($config))
                .route("/public", web::get().to(|| async { "public" }))
                .route("/unused", web::get().to(|_: Session| async { "unused" }))
                .route("/counter", web::get().to(counter))
                .route("/put/{key}/{value}", web::get().to(put))
                .route("/get/{key}", web::get().to(get))
                .route("/login/{user}", web::get().to(login))
                .route("/logout", web::get().to(logout)),
        )
        .await
    };
}

/// A memory store behind a `FlakyStore`, saved with `auto_save`.
fn flaky_config() -> (Config, Arc<FlakyStore>) {
    let store = FlakyStore::new(Arc::new(MemoryStore::new()));
    let config = builder()
        .shared_store(store.clone())
        .auto_save(true)
        .build()
        .expect("config");
    (config, store)
}

/// One answer: status, body and the Set-Cookie header values.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: String,
    set_cookies: Vec<String>,
}

/// A browser-like client: keeps the `vishnu` cookie between requests.
#[derive(Clone, Default)]
struct Jar {
    cookie: Option<String>,
}

impl Jar {
    async fn get<S, B>(&mut self, app: &S, path: &str) -> Answer
    where
        S: Service<Request, Response = ServiceResponse<B>, Error = Error>,
        B: MessageBody,
    {
        let mut req = test::TestRequest::get().uri(path);
        if let Some(cookie) = &self.cookie {
            req = req.insert_header((COOKIE, format!("vishnu={cookie}")));
        }
        let res = test::call_service(app, req.to_request()).await;
        let status = res.status();
        let set_cookies: Vec<String> = res
            .headers()
            .get_all(SET_COOKIE)
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect();
        for c in &set_cookies {
            if attr(c, "Max-Age") == Some("0") {
                self.cookie = None;
            } else {
                self.cookie = Some(value(c).to_owned());
            }
        }
        let body = test::read_body(res).await;
        Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            set_cookies,
        }
    }
}

/// What `tracing` logs on this thread while the guard lives.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish()
            .set_default()
    }
    /// The ERROR lines logged since the last call.
    fn take_errors(&self) -> Vec<String> {
        let text =
            String::from_utf8(std::mem::take(&mut *self.0.lock().expect("logs"))).expect("utf-8");
        text.lines()
            .filter(|l| l.contains("ERROR"))
            .map(str::to_owned)
            .collect()
    }
}

// ---- requests that do not use the session ----------------------------------------------

#[actix_web::test]
async fn an_unused_session_sends_no_cookie_and_costs_no_store_io() {
    let (config, store) = flaky_config();
    let app = app!(config);
    for path in ["/public", "/unused"] {
        let a = Jar::default().get(&app, path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert!(a.set_cookies.is_empty(), "{path}: {:?}", a.set_cookies);
    }
    let mut garbage = Jar {
        cookie: Some("%%%garbage%%%".into()),
    };
    assert!(garbage.get(&app, "/unused").await.set_cookies.is_empty());
    assert_eq!(
        store.io(),
        0,
        "a request that never used the session touched the store"
    );
}

// ---- the session across requests -------------------------------------------------------

#[actix_web::test]
async fn the_counter_increments_across_requests() {
    let app = app!(builder().build().expect("config"));
    let mut jar = Jar::default();
    let first = jar.get(&app, "/counter").await;
    assert_eq!((first.status, first.body.as_str()), (StatusCode::OK, "1"));
    let cookie = first
        .set_cookies
        .first()
        .expect("a new session sets a cookie");
    assert!(cookie.starts_with("vishnu="));
    assert_eq!(attr(cookie, "HttpOnly"), Some(""));
    for expected in ["2", "3"] {
        assert_eq!(jar.get(&app, "/counter").await.body, expected);
    }
}

#[actix_web::test]
async fn login_cycles_the_id_and_logout_removes_the_cookie() {
    let app = app!(builder().build().expect("config"));
    let mut jar = Jar::default();
    jar.get(&app, "/counter").await;
    let before = jar.clone();
    let a = jar.get(&app, "/login/ada").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "welcome"));
    assert!(
        jar.cookie.is_some() && jar.cookie != before.cookie,
        "login keeps the id"
    );
    assert_eq!(jar.get(&app, "/get/user").await.body, "ada");
    assert_eq!(
        jar.get(&app, "/counter").await.body,
        "2",
        "the data survives the login"
    );
    assert_eq!(before.clone().get(&app, "/get/user").await.body, "none");

    let logged_in = jar.clone();
    let a = jar.get(&app, "/logout").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(attr(&a.set_cookies[0], "Max-Age"), Some("0"));
    assert_eq!(jar.cookie, None);
    assert_eq!(logged_in.clone().get(&app, "/get/user").await.body, "none");
}

// ---- errors ------------------------------------------------------------------------------

#[actix_web::test]
async fn a_superseded_write_is_409_without_set_cookie() {
    let app = app!(builder().auto_save(true).build().expect("config"));
    let mut jar = Jar::default();
    jar.get(&app, "/counter").await;
    let stale = jar.clone();
    jar.get(&app, "/login/ada").await;

    // In the handler, through `?` (SessionError as a ResponseError).
    let a = stale.clone().get(&app, "/counter").await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::CONFLICT, "Conflict: the session changed; retry")
    );
    assert!(a.set_cookies.is_empty(), "{:?}", a.set_cookies);
    // In the middleware, when the end of the request saves.
    let a = stale.clone().get(&app, "/put/user/mallory").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::CONFLICT, ""));
    assert!(a.set_cookies.is_empty(), "{:?}", a.set_cookies);

    assert_eq!(jar.get(&app, "/get/user").await.body, "ada");
    assert_eq!(jar.get(&app, "/counter").await.body, "2");
}

#[actix_web::test]
async fn a_store_error_is_an_opaque_500_logged_once() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let (config, store) = flaky_config();
    let app = app!(config);
    let mut jar = Jar::default();
    jar.get(&app, "/put/user/ada").await;
    assert!(jar.cookie.is_some());
    assert_eq!(logs.take_errors(), Vec::<String>::new());

    // The save at the end of the request fails: an empty 500, no cookie.
    store.fail_writes.store(true, Ordering::SeqCst);
    let a = jar.get(&app, "/put/user/bob").await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "")
    );
    assert!(a.set_cookies.is_empty(), "{:?}", a.set_cookies);
    let errors = logs.take_errors();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("injected write failure"), "{errors:#?}");
    store.fail_writes.store(false, Ordering::SeqCst);

    // A load fails in the handler, `?` answers: a 500 that reveals nothing.
    store.fail_reads.store(true, Ordering::SeqCst);
    let a = jar.get(&app, "/get/user").await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    );
    assert!(
        a.set_cookies.is_empty(),
        "a store outage must not log the user out"
    );
    let errors = logs.take_errors();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("injected read failure"), "{errors:#?}");
    store.fail_reads.store(false, Ordering::SeqCst);

    assert_eq!(jar.get(&app, "/get/user").await.body, "ada");
}

#[actix_web::test]
async fn without_the_middleware_the_extractor_error_explains_the_fix() {
    let app = test::init_service(App::new().route("/counter", web::get().to(counter))).await;
    let a = Jar::default().get(&app, "/counter").await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        a.body.contains("vishnu::actix::SessionMiddleware") && a.body.contains("App::wrap"),
        "{}",
        a.body
    );
}

#[actix_web::test]
async fn session_error_maps_like_the_axum_front() {
    use actix_web::ResponseError;
    let superseded = SessionError::Superseded.error_response();
    assert_eq!(superseded.status(), StatusCode::CONFLICT);
    let failed = SessionError::TooManyConflicts.error_response();
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
