//! Shared fixtures for the HTTP-level tests: a test app, a cookie-jar client,
//! a controllable clock and a store that fails on demand.
#![allow(dead_code)]

pub mod conformance;
pub mod identity;
#[path = "../server_env/mod.rs"]
pub mod server_env;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;
use vishnu::id::StoreKey;
use vishnu::record::{Millis, Record};
use vishnu::{
    Cleanup, Clock, Config, ConfigBuilder, MemoryStore, SaveOutcome, Session, SessionError,
    SessionLayer, SessionStore, StoreError, SystemClock, Timeout,
};

pub const SECRET: &str = "test secret that is at least 32 bytes long";
pub const OLD_SECRET: &str = "an older secret, also at least 32 bytes";
pub const ENCRYPT_KEY: &str = "test encryption key of 32 bytes or more";

/// A clock the test moves by hand.
#[derive(Debug)]
pub struct MockClock(AtomicU64);

impl MockClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self(AtomicU64::new(SystemClock.now_millis())))
    }
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for MockClock {
    fn now_millis(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// A store that delegates to another and fails on demand.
pub struct FlakyStore {
    pub inner: Arc<dyn SessionStore>,
    pub fail_reads: AtomicBool,
    pub fail_writes: AtomicBool,
    pub writes: AtomicU64,
    pub reads: AtomicU64,
    /// When set, every save takes this long on this clock.
    pub slow_saves: std::sync::Mutex<Option<(Arc<MockClock>, Duration)>>,
}

impl FlakyStore {
    pub fn new(inner: Arc<dyn SessionStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fail_reads: AtomicBool::new(false),
            fail_writes: AtomicBool::new(false),
            writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            slow_saves: std::sync::Mutex::new(None),
        })
    }
    fn read(&self) -> Result<(), StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "injected read failure at 10.0.0.1".into(),
            ));
        }
        Ok(())
    }
    fn write(&self) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "injected write failure at 10.0.0.1".into(),
            ));
        }
        Ok(())
    }
    pub fn io(&self) -> u64 {
        self.reads.load(Ordering::SeqCst) + self.writes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl SessionStore for FlakyStore {
    async fn load(&self, key: &StoreKey) -> Result<Option<Record>, StoreError> {
        self.read()?;
        self.inner.load(key).await
    }
    async fn create(&self, key: &StoreKey, record: &Record) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.create(key, record).await
    }
    async fn save(
        &self,
        key: &StoreKey,
        record: &Record,
        v: u64,
    ) -> Result<SaveOutcome, StoreError> {
        self.write()?;
        let outcome = self.inner.save(key, record, v).await;
        let slow = self.slow_saves.lock().ok().and_then(|s| s.clone());
        if let Some((clock, takes)) = slow {
            clock.advance(takes);
        }
        outcome
    }
    async fn delete(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.write()?;
        self.inner.delete(key).await
    }
    async fn touch(&self, key: &StoreKey, a: Millis, e: Millis) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.touch(key, a, e).await
    }
    async fn delete_expired(
        &self,
        now: Millis,
        d: Duration,
        l: usize,
    ) -> Result<Cleanup, StoreError> {
        self.write()?;
        self.inner.delete_expired(now, d, l).await
    }
}

/// The default builder for tests: memory store, known secret.
pub fn builder() -> ConfigBuilder {
    Config::builder().secret(SECRET).store(MemoryStore::new())
}

fn text(r: Result<impl IntoResponse, SessionError>) -> Response {
    match r {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

/// The routes the tests drive.
pub fn app(config: Config) -> Router {
    Router::new()
        .route("/public", get(|| async { "public" }))
        .route(
            "/get/{key}",
            get(|s: Session, Path(key): Path<String>| async move {
                text(s.get_value(&key).await.map(|v| match v {
                    Some(serde_json::Value::String(s)) => s,
                    Some(v) => v.to_string(),
                    None => "none".to_owned(),
                }))
            }),
        )
        .route(
            "/set/{key}/{value}",
            get(
                |s: Session, Path((k, v)): Path<(String, String)>| async move {
                    text(
                        async {
                            s.set(&k, &v)?;
                            s.save().await.map(|()| "saved")
                        }
                        .await,
                    )
                },
            ),
        )
        .route(
            "/put/{key}/{value}",
            get(
                |s: Session, Path((k, v)): Path<(String, String)>| async move {
                    text(s.set(&k, &v).map(|()| "put"))
                },
            ),
        )
        .route(
            "/remove/{key}",
            get(|s: Session, Path(k): Path<String>| async move {
                text(
                    async {
                        s.remove::<serde_json::Value>(&k).await?;
                        s.save().await.map(|()| "removed")
                    }
                    .await,
                )
            }),
        )
        .route(
            "/incr",
            get(|s: Session| async move {
                text(
                    s.update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
                        .await
                        .map(|n| n.to_string()),
                )
            }),
        )
        .route(
            "/keys",
            get(|s: Session| async move { text(s.keys().await.map(|k| k.join(","))) }),
        )
        .route(
            "/save",
            get(|s: Session| async move { text(s.save().await.map(|()| "saved")) }),
        )
        .route(
            "/terminate",
            get(|s: Session| async move { text(s.terminate().await.map(|()| "bye")) }),
        )
        .route(
            "/terminate-then-set",
            get(|s: Session| async move {
                text(
                    async {
                        s.terminate().await?;
                        s.set("user", "bob")?;
                        s.save().await.map(|()| "again")
                    }
                    .await,
                )
            }),
        )
        .route(
            "/login/{user}",
            get(|s: Session, Path(user): Path<String>| async move {
                text(
                    async {
                        s.set("user", &user)?;
                        s.cycle_id().await.map(|()| "welcome")
                    }
                    .await,
                )
            }),
        )
        .route(
            "/fail/{key}/{value}",
            get(
                |s: Session, Path((k, v)): Path<(String, String)>| async move {
                    let _ = s.set(&k, &v);
                    (StatusCode::SERVICE_UNAVAILABLE, "failed")
                },
            ),
        )
        .route(
            "/fail-after-save/{key}/{value}",
            get(
                |s: Session, Path((k, v)): Path<(String, String)>| async move {
                    let _ = s.set(&k, &v);
                    let _ = s.save().await;
                    (StatusCode::INTERNAL_SERVER_ERROR, "failed")
                },
            ),
        )
        .route(
            "/timeout/{secs}",
            get(|s: Session, Path(secs): Path<String>| async move {
                let t = match secs.parse::<u64>() {
                    Ok(n) => Timeout::Seconds(n),
                    Err(_) => Timeout::BrowserSession,
                };
                s.set_timeout(t);
                text(s.save().await.map(|()| "timeout set"))
            }),
        )
        .layer(SessionLayer::new(config))
}

/// One answer: status, body and the Set-Cookie header values.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
    pub set_cookies: Vec<String>,
}

impl Answer {
    /// The single Set-Cookie header, if there is exactly one.
    pub fn set_cookie(&self) -> Option<&str> {
        assert!(
            self.set_cookies.len() <= 1,
            "more than one Set-Cookie: {:?}",
            self.set_cookies
        );
        self.set_cookies.first().map(String::as_str)
    }
}

/// Sends one request with the given raw Cookie headers.
pub async fn send(app: &Router, path: &str, cookies: &[&str]) -> Answer {
    let mut req = Request::get(path);
    for c in cookies {
        req = req.header("cookie", *c);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = res.status();
    let set_cookies = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        set_cookies,
    }
}

/// A browser-like client: keeps the session cookie between requests.
#[derive(Clone)]
pub struct Client {
    pub app: Router,
    pub name: String,
    pub cookie: Option<String>,
}

impl Client {
    pub fn new(app: Router) -> Self {
        Self {
            app,
            name: "vishnu".into(),
            cookie: None,
        }
    }
    pub fn named(app: Router, name: &str) -> Self {
        Self {
            app,
            name: name.into(),
            cookie: None,
        }
    }
    /// The `name=value` pair the browser would send.
    pub fn pair(&self) -> Option<String> {
        self.cookie.as_ref().map(|v| format!("{}={v}", self.name))
    }
    pub async fn get(&mut self, path: &str) -> Answer {
        let pair = self.pair();
        let cookies: Vec<&str> = pair.iter().map(String::as_str).collect();
        let answer = send(&self.app, path, &cookies).await;
        for c in &answer.set_cookies {
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if name != self.name {
                continue;
            }
            if value.is_empty() || attrs.contains("Max-Age=0") {
                self.cookie = None;
            } else {
                self.cookie = Some(value.to_owned());
            }
        }
        answer
    }
}

/// The value of one attribute in a Set-Cookie header, e.g. `Max-Age`.
pub fn attr<'a>(set_cookie: &'a str, name: &str) -> Option<&'a str> {
    set_cookie.split(';').skip(1).map(str::trim).find_map(|a| {
        let (k, v) = a.split_once('=').unwrap_or((a, ""));
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// The cookie value in a Set-Cookie header.
pub fn value(set_cookie: &str) -> &str {
    let pair = set_cookie.split(';').next().expect("pair");
    pair.split_once('=').expect("name=value").1
}

/// A server URL from the environment (set by scripts/test.sh). Outside CI a
/// missing server skips with a message; under CI it fails the test.
pub fn server_url(var: &str) -> Option<String> {
    server_env::required_env(var, "scripts/test.sh starts the servers the tests need")
}

/// A table name unique to this test process, so runs never see each other's rows.
pub fn unique_table(prefix: &str) -> String {
    let id = vishnu::id::SessionId::generate().expect("rng").store_key();
    format!("{prefix}_{}", &id.as_str()[..12])
}
