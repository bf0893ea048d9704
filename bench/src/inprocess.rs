//! In-process, no network: an app driven through its service in a loop, single-threaded.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, Request};
use serde_json::Value;
use tower::{Service, ServiceExt};

use crate::{median_us, row, time_loop};

const SUITE: &str = "rust-inprocess";
const SCENARIOS: [&str; 3] = ["untouched", "read", "write"];

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Drives an axum app: `/untouched`, `/read`, `/write`, with `cookie` on every request.
fn drive_axum(
    rt: &tokio::runtime::Runtime,
    app: Router,
    path: &'static str,
    cookie: Option<HeaderValue>,
    rounds: usize,
    iters: u64,
) -> f64 {
    rt.block_on(async move {
        let mut svc = app;
        let mut timings = Vec::new();
        for _ in 0..rounds {
            let start = Instant::now();
            for _ in 0..iters {
                let mut req = Request::get(path);
                if let Some(c) = &cookie {
                    req = req.header(header::COOKIE, c.clone());
                }
                let req = req.body(Body::empty()).expect("request");
                let svc = ServiceExt::<Request<Body>>::ready(&mut svc)
                    .await
                    .expect("ready");
                let res = svc.call(req).await.expect("infallible");
                assert!(res.status().is_success(), "{path}: {}", res.status());
                std::hint::black_box(res);
            }
            timings.push(start.elapsed().as_secs_f64() * 1e6 / iters as f64);
        }
        timings.sort_by(|a, b| a.total_cmp(b));
        timings[timings.len() / 2]
    })
}

/// The cookie a first request to `/write` sets, as a `Cookie` header value.
fn first_cookie(rt: &tokio::runtime::Runtime, app: &Router) -> HeaderValue {
    rt.block_on(async {
        let res = app
            .clone()
            .oneshot(Request::get("/write").body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let set = res.headers()[header::SET_COOKIE].to_str().expect("ascii");
        HeaderValue::from_str(set.split(';').next().expect("pair")).expect("header")
    })
}

/// The configuration of every vishnu row: memory store, saved at the end of the request.
fn vishnu_config(encrypted: bool) -> vishnu::Config {
    use vishnu::{Config, MemoryStore};
    let mut b = Config::builder()
        .secret("benchmark secret of at least 32 bytes")
        .store(MemoryStore::new())
        .auto_save(true)
        .secure(false);
    if encrypted {
        b = b.encrypt_key("benchmark encryption key, 32 bytes+");
    }
    b.build().expect("config")
}

fn vishnu_app(encrypted: bool) -> Router {
    use vishnu::{Session, SessionLayer};
    let config = vishnu_config(encrypted);
    Router::new()
        .route("/untouched", get(|| async { "ok" }))
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

fn floor_app() -> Router {
    Router::new()
        .route("/untouched", get(|| async { "ok" }))
        .route("/read", get(|| async { 0u64.to_string() }))
        .route("/write", get(|| async { 1u64.to_string() }))
}

fn tower_sessions_app() -> Router {
    use tower_sessions::{MemoryStore, Session, SessionManagerLayer};
    Router::new()
        .route("/untouched", get(|| async { "ok" }))
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
        .layer(SessionManagerLayer::new(MemoryStore::default()).with_secure(false))
}

/// The apps of the actix rows: the same routes, under no session library, actix-session, or vishnu.
#[derive(Clone, Copy)]
enum ActixApp {
    Floor,
    ActixSession,
    Vishnu,
}

fn actix(rounds: usize, iters: u64, app: ActixApp) -> Vec<(&'static str, f64)> {
    use actix_session::storage::CookieSessionStore;
    use actix_session::{Session, SessionMiddleware};
    use actix_web::cookie::Key;
    use actix_web::{test, web, App, HttpResponse};

    async fn untouched() -> HttpResponse {
        HttpResponse::Ok().body("ok")
    }
    async fn read(s: Session) -> HttpResponse {
        HttpResponse::Ok().body(s.get::<u64>("n").ok().flatten().unwrap_or(0).to_string())
    }
    async fn write(s: Session) -> HttpResponse {
        let n = s.get::<u64>("n").ok().flatten().unwrap_or(0);
        let _ = s.insert("n", n + 1);
        HttpResponse::Ok().body((n + 1).to_string())
    }
    async fn plain() -> HttpResponse {
        HttpResponse::Ok().body("0")
    }
    async fn vishnu_read(s: vishnu::Session) -> HttpResponse {
        HttpResponse::Ok().body(
            s.get::<u64>("n")
                .await
                .ok()
                .flatten()
                .unwrap_or(0)
                .to_string(),
        )
    }
    async fn vishnu_write(s: vishnu::Session) -> HttpResponse {
        let n = s.get::<u64>("n").await.ok().flatten().unwrap_or(0);
        let _ = s.set("n", &(n + 1));
        HttpResponse::Ok().body((n + 1).to_string())
    }

    // The same timing loop for every app, whose service types differ.
    macro_rules! time_scenarios {
        ($app:ident, $cookie:ident, $out:ident) => {
            for scenario in SCENARIOS {
                let uri = format!("/{scenario}");
                let mut samples = Vec::new();
                for _ in 0..rounds {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let req = test::TestRequest::get()
                            .uri(&uri)
                            .cookie($cookie.clone())
                            .to_request();
                        let res = test::call_service(&$app, req).await;
                        assert!(res.status().is_success());
                    }
                    samples.push(start.elapsed().as_secs_f64() * 1e6 / iters as f64);
                }
                samples.sort_by(|a, b| a.total_cmp(b));
                $out.push((scenario, samples[samples.len() / 2]));
            }
        };
    }

    // The cookie the first answer to /write sets.
    macro_rules! first_cookie {
        ($app:ident) => {{
            let res =
                test::call_service(&$app, test::TestRequest::get().uri("/write").to_request())
                    .await;
            res.response()
                .cookies()
                .next()
                .expect("session cookie")
                .into_owned()
        }};
    }

    actix_web::rt::System::new().block_on(async move {
        let mut out = Vec::new();
        match app {
            ActixApp::Floor => {
                let app = test::init_service(
                    App::new()
                        .route("/untouched", web::get().to(untouched))
                        .route("/read", web::get().to(plain))
                        .route("/write", web::get().to(plain)),
                )
                .await;
                let cookie = actix_web::cookie::Cookie::new("id", "x".repeat(120));
                time_scenarios!(app, cookie, out);
            }
            ActixApp::ActixSession => {
                let app = test::init_service(
                    App::new()
                        .wrap(
                            SessionMiddleware::builder(
                                CookieSessionStore::default(),
                                Key::from(&[7u8; 64]),
                            )
                            .cookie_secure(false)
                            .build(),
                        )
                        .route("/untouched", web::get().to(untouched))
                        .route("/read", web::get().to(read))
                        .route("/write", web::get().to(write)),
                )
                .await;
                let cookie = first_cookie!(app);
                time_scenarios!(app, cookie, out);
            }
            ActixApp::Vishnu => {
                let app = test::init_service(
                    App::new()
                        .wrap(vishnu::actix::SessionMiddleware::new(vishnu_config(false)))
                        .route("/untouched", web::get().to(untouched))
                        .route("/read", web::get().to(vishnu_read))
                        .route("/write", web::get().to(vishnu_write)),
                )
                .await;
                let cookie = first_cookie!(app);
                time_scenarios!(app, cookie, out);
            }
        }
        out
    })
}

fn codec(rows: &mut Vec<Value>, rounds: usize, iters: u64) {
    use vishnu::codec::Codec;
    let id = [42u8; 16];
    let signed = Codec::new("vishnu", &[b"benchmark secret of at least 32 bytes"], &[]);
    let sealed = Codec::new(
        "vishnu",
        &[b"benchmark secret of at least 32 bytes"],
        &[b"benchmark encryption key, 32 bytes+"],
    );
    let s_value = signed.encode(&id).expect("sign");
    let e_value = sealed.encode(&id).expect("seal");
    let cases: [(&str, Box<dyn Fn()>); 4] = [
        (
            "sign",
            Box::new(|| drop(std::hint::black_box(signed.encode(&id)))),
        ),
        (
            "verify",
            Box::new(|| drop(std::hint::black_box(signed.decode(s_value.as_bytes())))),
        ),
        (
            "seal",
            Box::new(|| drop(std::hint::black_box(sealed.encode(&id)))),
        ),
        (
            "open",
            Box::new(|| drop(std::hint::black_box(sealed.decode(e_value.as_bytes())))),
        ),
    ];
    for (name, f) in cases {
        let us = median_us(rounds, iters, |n| time_loop(n, &f));
        rows.push(row(
            SUITE,
            &format!("codec-{name}"),
            "vishnu",
            "us_per_request",
            us,
            "us",
        ));
    }
}

/// Runs one library's scenario alone (for profilers: `--profile LIB SCENARIO ITERS`).
pub fn profile(library: &str, scenario: &str, iters: u64) {
    let rt = current_thread();
    let app = match library {
        "floor" => floor_app(),
        "vishnu" => vishnu_app(false),
        "vishnu-encrypted" => vishnu_app(true),
        "tower-sessions" => tower_sessions_app(),
        other => panic!("unknown library {other}"),
    };
    let cookie = if library == "floor" {
        HeaderValue::from_static(
            "vishnu=AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ",
        )
    } else {
        first_cookie(&rt, &app)
    };
    let us = drive_axum(&rt, app, leak(scenario), Some(cookie), 1, iters);
    eprintln!("{library} {scenario}: {us:.3} us/request");
}

/// Runs the suite.
pub fn run(quick: bool) -> Vec<Value> {
    let (rounds, iters) = if quick { (5, 20_000) } else { (9, 200_000) };
    let rt = current_thread();
    let mut rows = Vec::new();
    let floor = floor_app();
    let floor_cookie = HeaderValue::from_static(
        "vishnu=AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQ",
    );
    let mut floor_us = std::collections::HashMap::new();
    for scenario in SCENARIOS {
        let path = leak(scenario);
        let us = drive_axum(
            &rt,
            floor.clone(),
            path,
            Some(floor_cookie.clone()),
            rounds,
            iters,
        );
        floor_us.insert(scenario, us);
        rows.push(row(SUITE, scenario, "floor", "us_per_request", us, "us"));
    }
    let libs: [(&str, Router, &str); 3] = [
        ("vishnu", vishnu_app(false), "vishnu"),
        ("vishnu-encrypted", vishnu_app(true), "vishnu"),
        ("tower-sessions", tower_sessions_app(), "id"),
    ];
    for (name, app, _) in libs {
        let cookie = first_cookie(&rt, &app);
        for scenario in SCENARIOS {
            let path = leak(scenario);
            let us = drive_axum(&rt, app.clone(), path, Some(cookie.clone()), rounds, iters);
            rows.push(row(SUITE, scenario, name, "us_per_request", us, "us"));
            rows.push(row(
                SUITE,
                scenario,
                name,
                "overhead_us",
                us - floor_us[scenario],
                "us",
            ));
        }
    }
    let actix_floor = actix(rounds, iters / 2, ActixApp::Floor);
    for (scenario, floor) in &actix_floor {
        rows.push(row(
            SUITE,
            scenario,
            "actix-floor",
            "us_per_request",
            *floor,
            "us",
        ));
    }
    for (name, app) in [
        ("actix-session", ActixApp::ActixSession),
        ("actix-vishnu", ActixApp::Vishnu),
    ] {
        for ((scenario, floor), (_, lib)) in actix_floor.iter().zip(actix(rounds, iters / 2, app)) {
            rows.push(row(SUITE, scenario, name, "us_per_request", lib, "us"));
            rows.push(row(SUITE, scenario, name, "overhead_us", lib - floor, "us"));
        }
    }
    codec(&mut rows, rounds, iters);
    let _ = Duration::ZERO;
    rows
}

fn leak(s: &str) -> &'static str {
    match s {
        "untouched" => "/untouched",
        "read" => "/read",
        _ => "/write",
    }
}
