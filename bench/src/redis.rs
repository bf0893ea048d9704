//! With a real Redis on loopback: 64 requests in flight, read and write, per library.
//!
//! Suites: `rust-redis` (VISHNU_REDIS_URL: `floor`, vishnu and tower-sessions
//! on axum, actix-vishnu and actix-session on actix-web) and `rust-redis-cluster` (VISHNU_REDIS_CLUSTER_URL: `floor`
//! and vishnu on the 3-master cluster). The `floor` drives the same client as
//! vishnu (the store's own connection: vishnu's pipelined connection to a
//! standalone server, redis-rs's cluster connection for the cluster) through the same axum app
//! shape with the same round trips and no session logic: `read` is one `GET`
//! of a record-sized value, `write` a `GET` then a `SET`. `floor-cas` (in
//! `rust-redis`, `write` only) is the floor with vishnu's compare-and-set
//! script in place of the `SET`.
//!
//! The libraries run in interleaved rounds (every library once per round), so
//! that a burst of other work on the machine hits all of them alike; a row is
//! the median over the rounds. Round trips per request are counted by a proxy
//! in a separate, shorter run. `VISHNU_BENCH_ONLY=LIBRARY` runs one library
//! alone, `VISHNU_BENCH_SCENARIO=read|write` one scenario, and
//! `VISHNU_BENCH_ROUNDS` / `VISHNU_BENCH_PER_TASK` override the counts (for a profiler).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, Request};
use serde_json::Value;
use tower::ServiceExt;

use crate::{median, row};

const SUITE: &str = "rust-redis";
const IN_FLIGHT: usize = 64;

/// A counting proxy in front of Redis: forwards bytes both ways and counts the
/// commands clients send (top-level RESP arrays), so that commands run inside
/// Lua scripts are not counted as round trips (INFO commandstats counts them).
struct Proxy {
    url: String,
    commands: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    async fn start(url: &str) -> Proxy {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = url
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap_or("127.0.0.1:6379")
            .to_owned();
        let db = url.rsplit('/').next().unwrap_or("0").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let commands = Arc::new(AtomicU64::new(0));
        let counter = commands.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    break;
                };
                let counter = counter.clone();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let mut parser = RespCounter::default();
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        counter.fetch_add(parser.feed(&buf[..n]), Ordering::Relaxed);
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
            }
        });
        Proxy {
            url: format!("redis://127.0.0.1:{port}/{db}"),
            commands,
        }
    }

    fn count(&self) -> u64 {
        self.commands.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Counts complete top-level RESP commands in a client's byte stream.
#[derive(Default)]
struct RespCounter {
    pending: Vec<u8>,
}

impl RespCounter {
    fn feed(&mut self, bytes: &[u8]) -> u64 {
        self.pending.extend_from_slice(bytes);
        let mut count = 0;
        let mut pos = 0;
        while let Some(end) = Self::command_end(&self.pending[pos..]) {
            pos += end;
            count += 1;
        }
        self.pending.drain(..pos);
        count
    }

    fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
        let i = buf.windows(2).position(|w| w == b"\r\n")?;
        Some((&buf[..i], i + 2))
    }

    /// The length of the first complete command in `buf`, if complete.
    fn command_end(buf: &[u8]) -> Option<usize> {
        let (head, mut at) = Self::line(buf)?;
        if head.first() != Some(&b'*') {
            return Some(at); // inline command: one line
        }
        let n: usize = std::str::from_utf8(&head[1..]).ok()?.parse().ok()?;
        for _ in 0..n {
            let (h, used) = Self::line(&buf[at..])?;
            at += used;
            let len: usize = std::str::from_utf8(h.get(1..)?).ok()?.parse().ok()?;
            if buf.len() < at + len + 2 {
                return None;
            }
            at += len + 2;
        }
        Some(at)
    }
}

/// One timed run: `requests` in `elapsed`, each request's latency.
struct Outcome {
    requests: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    calls: u64,
}

fn percentile(lat: &mut [Duration], q: usize) -> f64 {
    lat.sort();
    lat[(lat.len() * q / 100).min(lat.len() - 1)].as_secs_f64() * 1e6
}

/// The rows of one library in one scenario: the median over the rounds of
/// each round's requests/s, p50 and p99, and the counted round trips.
fn report(
    suite: &str,
    scenario: &str,
    library: &str,
    rounds: Vec<Outcome>,
    round_trips: Option<f64>,
) -> Vec<Value> {
    let mut rps = Vec::new();
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for mut o in rounds {
        rps.push(o.requests as f64 / o.elapsed.as_secs_f64());
        p50.push(percentile(&mut o.latencies, 50));
        p99.push(percentile(&mut o.latencies, 99));
    }
    let mut rows = vec![
        row(
            suite,
            scenario,
            library,
            "requests_per_s",
            median(rps),
            "1/s",
        ),
        row(suite, scenario, library, "p50_us", median(p50), "us"),
        row(suite, scenario, library, "p99_us", median(p99), "us"),
    ];
    if let Some(rt) = round_trips {
        rows.push(row(
            suite,
            scenario,
            library,
            "round_trips",
            rt,
            "1/request",
        ));
    }
    rows
}

/// Runs `per_task` requests on each of 64 concurrent loops, one cookie each.
async fn axum_load(
    proxy: Option<&Proxy>,
    app: Router,
    cookies: Vec<HeaderValue>,
    path: &'static str,
    per_task: usize,
) -> Outcome {
    // As `axum::serve` runs it: `with_state` turns every handler into a
    // route (and applies the layers) once, not on every request.
    let app = &app.with_state(());
    drive(proxy, cookies, per_task, |cookie| {
        let req = Request::get(path)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .expect("req");
        async move {
            let res = app.clone().oneshot(req).await.expect("infallible");
            assert!(res.status().is_success(), "{}", res.status());
        }
    })
    .await
}

/// The timed part of a load: one loop per cookie, all in flight at once, each
/// making `per_task` requests; a request's latency is the time its future
/// (made by `request` before the clock starts) takes.
async fn drive<C, F, Fut>(
    proxy: Option<&Proxy>,
    cookies: Vec<C>,
    per_task: usize,
    request: F,
) -> Outcome
where
    C: Clone,
    F: Fn(C) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let before = proxy.map_or(0, Proxy::count);
    let start = Instant::now();
    let request = &request;
    let loops = cookies.into_iter().map(|cookie| async move {
        let mut lat = Vec::with_capacity(per_task);
        for _ in 0..per_task {
            let call = request(cookie.clone());
            let t = Instant::now();
            call.await;
            lat.push(t.elapsed());
        }
        lat
    });
    let latencies: Vec<Duration> = futures::future::join_all(loops)
        .await
        .into_iter()
        .flatten()
        .collect();
    let elapsed = start.elapsed();
    let calls = proxy.map_or(0, Proxy::count) - before;
    Outcome {
        requests: latencies.len() as u64,
        elapsed,
        latencies,
        calls,
    }
}

/// One session per in-flight loop, created (by a first `/write`) before measuring.
async fn session_cookies(app: &Router) -> Vec<HeaderValue> {
    let mut cookies = Vec::new();
    for _ in 0..IN_FLIGHT {
        let res = app
            .clone()
            .oneshot(Request::get("/write").body(Body::empty()).expect("req"))
            .await
            .expect("infallible");
        let set = res.headers()[header::SET_COOKIE]
            .to_str()
            .expect("ascii")
            .to_owned();
        cookies.push(HeaderValue::from_str(set.split(';').next().expect("pair")).expect("header"));
    }
    cookies
}

/// The configuration of every vishnu row: saved at the end of the request.
fn vishnu_config(store: vishnu::RedisStore) -> vishnu::Config {
    vishnu::Config::builder()
        .secret("benchmark secret of at least 32 bytes")
        .store(store)
        .auto_save(true)
        .secure(false)
        .build()
        .expect("config")
}

fn vishnu_app(store: vishnu::RedisStore) -> Router {
    use vishnu::{Session, SessionLayer};
    let config = vishnu_config(store);
    Router::new()
        .route(
            "/read",
            get(|s: Session| async move {
                s.get::<u64>("n")
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(0)
                    .to_string()
            }),
        )
        .route(
            "/write",
            get(|s: Session| async move {
                let n = s.get::<u64>("n").await.ok().flatten().unwrap_or(0);
                let _ = s.set("n", &(n + 1));
                (n + 1).to_string()
            }),
        )
        .layer(SessionLayer::new(config))
}

/// A value the size of a small session record (vishnu's record of `{"n": N}`).
const FLOOR_VALUE: &str = r#"{"v":1,"data":{"n":1},"created_at":1764480000000,"last_access":1764480000000,"expires_at":1764566400000,"version":1}"#;

/// A floor's key: `prefix`, then the cookie's value.
fn floor_key(prefix: &str, headers: &http::HeaderMap) -> String {
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("floor=0");
    format!("{prefix}{}", cookie.trim_start_matches("floor="))
}

/// The floor: the same client and round trips, no session logic. The cookie's
/// value names the key.
fn floor_app<C>(connection: C) -> Router
where
    C: ::redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    let key = |headers: &http::HeaderMap| floor_key("floor:", headers);
    let reading = connection.clone();
    Router::new()
        .route(
            "/read",
            get(move |headers: http::HeaderMap| {
                let mut c = reading.clone();
                async move {
                    let value: Option<Vec<u8>> = ::redis::cmd("GET")
                        .arg(key(&headers))
                        .query_async(&mut c)
                        .await
                        .expect("GET");
                    value.map_or(0, |v| v.len()).to_string()
                }
            }),
        )
        .route(
            "/write",
            get(move |headers: http::HeaderMap| {
                let mut c = connection.clone();
                async move {
                    let key = key(&headers);
                    let value: Option<Vec<u8>> = ::redis::cmd("GET")
                        .arg(&key)
                        .query_async(&mut c)
                        .await
                        .expect("GET");
                    let value = value.unwrap_or_else(|| FLOOR_VALUE.as_bytes().to_vec());
                    let () = ::redis::cmd("SET")
                        .arg(&key)
                        .arg(value)
                        .arg("EX")
                        .arg(86_400)
                        .query_async(&mut c)
                        .await
                        .expect("SET");
                    "ok".to_owned()
                }
            }),
        )
}

/// The compare-and-set of `floor-cas`: the successful path of vishnu's save
/// script (the version's 20 digits compared with `ARGV[1]`, then the record
/// written with its expiry), so that Redis does the same work per write.
const FLOOR_CAS_SCRIPT: &str = r"
local current = redis.pcall('GETRANGE', KEYS[1], 0, 19)
if type(current) == 'table' or current == '' then return 0
elseif current ~= ARGV[1] then return 1
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 2
";

/// `floor-cas`: the floor's `write`, with vishnu's compare-and-set in place of
/// the `SET`: a `GET`, then an `EVALSHA` of [`FLOOR_CAS_SCRIPT`] with a
/// record-sized value (vishnu's header, then [`FLOOR_VALUE`]). The version
/// never changes, so every compare-and-set succeeds. No session logic: the
/// limit of any library that keeps compare-and-set on Redis on this client.
async fn floor_cas_router(url: &str) -> Router {
    let store = vishnu::RedisStore::from_url(url).await.expect("redis");
    let mut connection = store.connection();
    let sha: String = ::redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(FLOOR_CAS_SCRIPT)
        .query_async(&mut connection)
        .await
        .expect("SCRIPT LOAD");
    let expires_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        + 86_400_000;
    let version = format!("{:020}", 1);
    let value = format!(
        "{version} {:016} {expires_at:016} {FLOOR_VALUE}",
        expires_at - 86_400_000
    );
    // Shared, so that a request clones one `Arc`, not four strings.
    let args = std::sync::Arc::new((sha, version, value, expires_at.to_string()));
    Router::new().route(
        "/write",
        get(move |headers: http::HeaderMap| {
            let mut c = connection.clone();
            let args = args.clone();
            async move {
                let (sha, version, value, expires_at) = &*args;
                let key = floor_key("floor-cas:", &headers);
                let current: Option<Vec<u8>> = ::redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut c)
                    .await
                    .expect("GET");
                let Some(current) = current else {
                    // Before measuring: the key is created.
                    let () = ::redis::cmd("SET")
                        .arg(&key)
                        .arg(value)
                        .arg("PXAT")
                        .arg(expires_at)
                        .query_async(&mut c)
                        .await
                        .expect("SET");
                    return "created".to_owned();
                };
                let saved: i64 = ::redis::cmd("EVALSHA")
                    .arg(sha)
                    .arg(1)
                    .arg(&key)
                    .arg(version)
                    .arg(current)
                    .arg(expires_at)
                    .query_async(&mut c)
                    .await
                    .expect("EVALSHA");
                assert_eq!(saved, 2, "the floor's compare-and-set failed");
                "ok".to_owned()
            }
        }),
    )
}

fn floor_cookies() -> Vec<HeaderValue> {
    (0..IN_FLIGHT)
        .map(|i| HeaderValue::from_str(&format!("floor={i}")).expect("header"))
        .collect()
}

/// The floor on vishnu's own connection (the store's, without the store), so
/// that it drives the same client as the vishnu rows.
async fn floor_router(url: &str) -> Router {
    let store = vishnu::RedisStore::from_url(url).await.expect("redis");
    floor_app(store.connection())
}

async fn tower_sessions_app(url: &str) -> Router {
    use tower_sessions_14::{Session, SessionManagerLayer};
    use tower_sessions_redis_store::fred::prelude::*;
    use tower_sessions_redis_store::RedisStore;
    let pool = Pool::new(Config::from_url(url).expect("url"), None, None, None, 6).expect("pool");
    pool.connect();
    pool.wait_for_connect().await.expect("connect");
    Router::new()
        .route(
            "/read",
            get(|s: Session| async move {
                s.get::<u64>("n")
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(0)
                    .to_string()
            }),
        )
        .route(
            "/write",
            get(|s: Session| async move {
                let n = s.get::<u64>("n").await.ok().flatten().unwrap_or(0);
                let _ = s.insert("n", n + 1).await;
                (n + 1).to_string()
            }),
        )
        .layer(SessionManagerLayer::new(RedisStore::new(pool)).with_secure(false))
}

/// The actix-web rows: `actix-session` (its Redis store) or `actix-vishnu`
/// (vishnu's actix-web middleware on its Redis store), in one actix system
/// each, driven as the axum rows are: 64 loops, one session cookie each.
fn actix(url: &str, library: &str, path: &'static str, per_task: usize, counting: bool) -> Outcome {
    use crate::actix_handlers::{read, vishnu_read, vishnu_write, write};
    use actix_web::cookie::Key;
    use actix_web::{test, web, App};

    let url = url.to_owned();
    let library = library.to_owned();
    actix_web::rt::System::new().block_on(async move {
        let proxy = if counting {
            Some(Proxy::start(&url).await)
        } else {
            None
        };
        let target = proxy.as_ref().map_or(url.clone(), |p| p.url.clone());
        if library == "actix-session" {
            let store = actix_session::storage::RedisSessionStore::new(target)
                .await
                .expect("actix redis");
            let app = test::init_service(
                App::new()
                    .wrap(
                        actix_session::SessionMiddleware::builder(store, Key::from(&[7u8; 64]))
                            .cookie_secure(false)
                            .build(),
                    )
                    .route("/read", web::get().to(read))
                    .route("/write", web::get().to(write)),
            )
            .await;
            actix_load(&app, proxy.as_ref(), path, per_task).await
        } else {
            let store = vishnu::RedisStore::from_url(&target)
                .await
                .expect("vishnu redis");
            let app = test::init_service(
                App::new()
                    .wrap(vishnu::actix::SessionMiddleware::new(vishnu_config(store)))
                    .route("/read", web::get().to(vishnu_read))
                    .route("/write", web::get().to(vishnu_write)),
            )
            .await;
            actix_load(&app, proxy.as_ref(), path, per_task).await
        }
    })
}

/// [`axum_load`] for an actix-web test service: one session per loop,
/// created (by a first `/write`) before measuring.
async fn actix_load<S, B>(
    app: &S,
    proxy: Option<&Proxy>,
    path: &'static str,
    per_task: usize,
) -> Outcome
where
    S: actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
{
    use actix_web::test;
    let mut cookies = Vec::new();
    for _ in 0..IN_FLIGHT {
        let res =
            test::call_service(app, test::TestRequest::get().uri("/write").to_request()).await;
        cookies.push(
            res.response()
                .cookies()
                .next()
                .expect("cookie")
                .into_owned(),
        );
    }
    drive(proxy, cookies, per_task, |cookie| {
        let req = test::TestRequest::get()
            .uri(path)
            .cookie(cookie)
            .to_request();
        async move {
            let res = test::call_service(app, req).await;
            assert!(res.status().is_success());
        }
    })
    .await
}

/// One run of `library` against `url` (through the counting proxy when `counting`).
fn run_once(
    url: &str,
    library: &str,
    path: &'static str,
    per_task: usize,
    counting: bool,
) -> Outcome {
    if library.starts_with("actix-") {
        return actix(url, library, path, per_task, counting);
    }
    // A fresh runtime for every run, as actix gets its own system: nothing a
    // previous run left behind (idle connections, a client's timers) runs here.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let proxy = if counting {
            Some(Proxy::start(url).await)
        } else {
            None
        };
        let target = proxy.as_ref().map_or(url.to_owned(), |p| p.url.clone());
        let (app, cookies) = match library {
            "floor" => {
                let app = floor_router(&target).await;
                (app, floor_cookies())
            }
            "floor-cas" => {
                let app = floor_cas_router(&target).await;
                (app, floor_cookies())
            }
            "vishnu" => {
                let store = vishnu::RedisStore::from_url(&target)
                    .await
                    .expect("vishnu redis");
                let app = vishnu_app(store);
                let cookies = session_cookies(&app).await;
                (app, cookies)
            }
            _ => {
                let app = tower_sessions_app(&target).await;
                let cookies = session_cookies(&app).await;
                (app, cookies)
            }
        };
        if library.starts_with("floor") {
            // The floor's keys exist before measuring, as the sessions do.
            for cookie in &cookies {
                let res = app
                    .clone()
                    .oneshot(
                        Request::get("/write")
                            .header(header::COOKIE, cookie.clone())
                            .body(Body::empty())
                            .expect("req"),
                    )
                    .await
                    .expect("infallible");
                assert!(res.status().is_success());
            }
        }
        axum_load(proxy.as_ref(), app, cookies, path, per_task).await
    })
}

fn suite(suite: &str, url: &str, libraries: &[&str], quick: bool) -> Vec<Value> {
    let (rounds, per_task) = if quick { (5, 200) } else { (9, 500) };
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (rounds, per_task) = (
        env("VISHNU_BENCH_ROUNDS", rounds),
        env("VISHNU_BENCH_PER_TASK", per_task),
    );
    let only = std::env::var("VISHNU_BENCH_ONLY").ok();
    let only_scenario = std::env::var("VISHNU_BENCH_SCENARIO").ok();
    let libraries: Vec<&str> = libraries
        .iter()
        .copied()
        .filter(|l| only.as_deref().is_none_or(|o| o == *l))
        .collect();
    let mut rows = Vec::new();
    for (scenario, path) in [("read", "/read"), ("write", "/write")] {
        if only_scenario.as_deref().is_some_and(|o| o != scenario) {
            continue;
        }
        // `floor-cas` differs from the floor only in its write.
        let libraries: Vec<&str> = libraries
            .iter()
            .copied()
            .filter(|l| scenario == "write" || *l != "floor-cas")
            .collect();
        let mut outcomes: Vec<Vec<Outcome>> = libraries.iter().map(|_| Vec::new()).collect();
        for _ in 0..rounds {
            for (i, library) in libraries.iter().enumerate() {
                outcomes[i].push(run_once(url, library, path, per_task, false));
            }
        }
        for (library, rounds) in libraries.iter().zip(outcomes) {
            // The proxy forwards to one server: the cluster's round trips are not counted.
            let round_trips = (!url.starts_with("redis+cluster://")).then(|| {
                let counted = run_once(url, library, path, 10, true);
                counted.calls as f64 / counted.requests.max(1) as f64
            });
            rows.extend(report(suite, scenario, library, rounds, round_trips));
        }
    }
    rows
}

/// Runs the `rust-redis` suite against the Redis at VISHNU_REDIS_URL.
pub fn run(quick: bool) -> Vec<Value> {
    let Ok(url) = std::env::var("VISHNU_REDIS_URL") else {
        eprintln!("rust-redis: VISHNU_REDIS_URL not set; skipped");
        return Vec::new();
    };
    suite(
        SUITE,
        &url,
        &[
            "floor",
            "floor-cas",
            "vishnu",
            "tower-sessions",
            "actix-vishnu",
            "actix-session",
        ],
        quick,
    )
}

/// Runs the `rust-redis-cluster` suite against the cluster at VISHNU_REDIS_CLUSTER_URL.
pub fn run_cluster(quick: bool) -> Vec<Value> {
    let Ok(url) = std::env::var("VISHNU_REDIS_CLUSTER_URL") else {
        eprintln!("rust-redis-cluster: VISHNU_REDIS_CLUSTER_URL not set; skipped");
        return Vec::new();
    };
    suite("rust-redis-cluster", &url, &["floor", "vishnu"], quick)
}
