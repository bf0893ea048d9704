//! With a real Redis on loopback: 64 requests in flight, read and write, per library.
//! Round trips per request are counted on the server (INFO commandstats before and after).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, Request};
use serde_json::Value;
use tower::ServiceExt;

use crate::row;

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

struct Outcome {
    requests: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    calls: u64,
}

fn report(rows: &mut Vec<Value>, scenario: &str, library: &str, o: Outcome) {
    let mut lat = o.latencies;
    lat.sort();
    let p = |q: usize| lat[(lat.len() * q / 100).min(lat.len() - 1)].as_secs_f64() * 1e6;
    rows.push(row(
        SUITE,
        scenario,
        library,
        "requests_per_s",
        o.requests as f64 / o.elapsed.as_secs_f64(),
        "1/s",
    ));
    rows.push(row(SUITE, scenario, library, "p50_us", p(50), "us"));
    rows.push(row(SUITE, scenario, library, "p99_us", p(99), "us"));
    rows.push(row(
        SUITE,
        scenario,
        library,
        "round_trips",
        o.calls as f64 / o.requests as f64,
        "1/request",
    ));
}

/// Runs `per_task` requests on each of 64 concurrent loops, one session (cookie) each.
async fn axum_load(
    proxy: Option<&Proxy>,
    app: Router,
    path: &'static str,
    per_task: usize,
) -> Outcome {
    // One session per in-flight loop, created before measuring.
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
    let before = proxy.map_or(0, Proxy::count);
    let start = Instant::now();
    let loops = cookies.into_iter().map(|cookie| {
        let app = app.clone();
        async move {
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let req = Request::get(path)
                    .header(header::COOKIE, cookie.clone())
                    .body(Body::empty())
                    .expect("req");
                let t = Instant::now();
                let res = app.clone().oneshot(req).await.expect("infallible");
                assert!(res.status().is_success(), "{}", res.status());
                lat.push(t.elapsed());
            }
            lat
        }
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

fn vishnu_app(store: vishnu::RedisStore) -> Router {
    use vishnu::{Config, Session, SessionLayer};
    let config = Config::builder()
        .secret("benchmark secret of at least 32 bytes")
        .store(store)
        .auto_save(true)
        .secure(false)
        .build()
        .expect("config");
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

fn actix(url: &str, path: &'static str, per_task: usize, counting: bool) -> Outcome {
    use actix_session::storage::RedisSessionStore;
    use actix_session::{Session, SessionMiddleware};
    use actix_web::cookie::Key;
    use actix_web::{test, web, App, HttpResponse};

    async fn read(s: Session) -> HttpResponse {
        HttpResponse::Ok().body(s.get::<u64>("n").ok().flatten().unwrap_or(0).to_string())
    }
    async fn write(s: Session) -> HttpResponse {
        let n = s.get::<u64>("n").ok().flatten().unwrap_or(0);
        let _ = s.insert("n", n + 1);
        HttpResponse::Ok().body((n + 1).to_string())
    }
    let url = url.to_owned();
    actix_web::rt::System::new().block_on(async move {
        let proxy = if counting {
            Some(Proxy::start(&url).await)
        } else {
            None
        };
        let target = proxy.as_ref().map_or(url.clone(), |p| p.url.clone());
        let store = RedisSessionStore::new(target).await.expect("actix redis");
        let app = test::init_service(
            App::new()
                .wrap(
                    SessionMiddleware::builder(store, Key::from(&[7u8; 64]))
                        .cookie_secure(false)
                        .build(),
                )
                .route("/read", web::get().to(read))
                .route("/write", web::get().to(write)),
        )
        .await;
        let mut cookies = Vec::new();
        for _ in 0..IN_FLIGHT {
            let res =
                test::call_service(&app, test::TestRequest::get().uri("/write").to_request()).await;
            cookies.push(
                res.response()
                    .cookies()
                    .next()
                    .expect("cookie")
                    .into_owned(),
            );
        }
        let before = proxy.as_ref().map_or(0, Proxy::count);
        let start = Instant::now();
        let loops = cookies.into_iter().map(|cookie| {
            let app = &app;
            async move {
                let mut lat = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let req = test::TestRequest::get()
                        .uri(path)
                        .cookie(cookie.clone())
                        .to_request();
                    let t = Instant::now();
                    let res = test::call_service(app, req).await;
                    assert!(res.status().is_success());
                    lat.push(t.elapsed());
                }
                lat
            }
        });
        let latencies: Vec<Duration> = futures::future::join_all(loops)
            .await
            .into_iter()
            .flatten()
            .collect();
        let elapsed = start.elapsed();
        let calls = proxy.as_ref().map_or(0, Proxy::count) - before;
        Outcome {
            requests: latencies.len() as u64,
            elapsed,
            latencies,
            calls,
        }
    })
}

/// Runs the suite against the Redis at VISHNU_REDIS_URL.
pub fn run(quick: bool) -> Vec<Value> {
    let Ok(url) = std::env::var("VISHNU_REDIS_URL") else {
        eprintln!("rust-redis: VISHNU_REDIS_URL not set; skipped");
        return Vec::new();
    };
    let per_task = if quick { 50 } else { 500 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();
    // Throughput and latency straight to Redis; round trips in a separate,
    // shorter run through the counting proxy (which would otherwise be the bottleneck).
    for (scenario, path) in [("read", "/read"), ("write", "/write")] {
        for library in ["vishnu", "tower-sessions", "actix-session"] {
            let run_once = |counting: bool, per_task: usize| -> Outcome {
                if library == "actix-session" {
                    return actix(&url, path, per_task, counting);
                }
                rt.block_on(async {
                    let proxy = if counting {
                        Some(Proxy::start(&url).await)
                    } else {
                        None
                    };
                    let target = proxy.as_ref().map_or(url.clone(), |p| p.url.clone());
                    let app = if library == "vishnu" {
                        vishnu_app(
                            vishnu::RedisStore::from_url(&target)
                                .await
                                .expect("vishnu redis"),
                        )
                    } else {
                        tower_sessions_app(&target).await
                    };
                    axum_load(proxy.as_ref(), app, path, per_task).await
                })
            };
            let timed = run_once(false, per_task);
            let counted = run_once(true, 10);
            report(
                &mut rows,
                scenario,
                library,
                Outcome {
                    calls: counted.calls * timed.requests / counted.requests.max(1),
                    ..timed
                },
            );
        }
    }
    rows
}
