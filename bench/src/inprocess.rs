//! In-process, no network: an app driven through its service in a loop, single-threaded.

use std::time::Instant;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, Request};
use serde_json::Value;
use tower::{Service, ServiceExt};

use crate::{median, median_us, row, time_loop};

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
        // As `axum::serve` runs it: `with_state` turns every handler into a
        // route (and applies the layers) once, not on every request.
        let mut svc = app.with_state(());
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

/// Per scenario, the per-round times of the actix floor, actix-session and actix-vishnu.
type ActixTimes = Vec<(&'static str, [Vec<f64>; 3])>;

/// The actix rows: the same routes under no session library (the floor),
/// actix-session, and vishnu's actix-web middleware, in one actix system.
fn actix(rounds: usize, iters: u64) -> ActixTimes {
    use crate::actix_handlers::{plain, read, untouched, vishnu_read, vishnu_write, write};
    use actix_session::storage::CookieSessionStore;
    use actix_session::SessionMiddleware;
    use actix_web::cookie::Key;
    use actix_web::{test, web, App};

    // The same timing loop for every app, whose service types differ: one batch.
    macro_rules! time_batch {
        ($app:ident, $cookie:ident, $uri:ident) => {{
            let start = Instant::now();
            for _ in 0..iters {
                let req = test::TestRequest::get()
                    .uri(&$uri)
                    .cookie($cookie.clone())
                    .to_request();
                let res = test::call_service(&$app, req).await;
                assert!(res.status().is_success());
            }
            start.elapsed().as_secs_f64() * 1e6 / iters as f64
        }};
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
        let floor = test::init_service(
            App::new()
                .route("/untouched", web::get().to(untouched))
                .route("/read", web::get().to(plain))
                .route("/write", web::get().to(plain)),
        )
        .await;
        let floor_cookie = actix_web::cookie::Cookie::new("id", "x".repeat(120));
        let session = test::init_service(
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
        let session_cookie = first_cookie!(session);
        let ours = test::init_service(
            App::new()
                .wrap(vishnu::actix::SessionMiddleware::new(vishnu_config(false)))
                .route("/untouched", web::get().to(untouched))
                .route("/read", web::get().to(vishnu_read))
                .route("/write", web::get().to(vishnu_write)),
        )
        .await;
        let ours_cookie = first_cookie!(ours);
        // Interleaved rounds, as for the axum apps: (floor, actix-session, actix-vishnu).
        let mut out = Vec::new();
        for scenario in SCENARIOS {
            let uri = format!("/{scenario}");
            let mut times = [Vec::new(), Vec::new(), Vec::new()];
            for _ in 0..rounds {
                times[0].push(time_batch!(floor, floor_cookie, uri));
                times[1].push(time_batch!(session, session_cookie, uri));
                times[2].push(time_batch!(ours, ours_cookie, uri));
            }
            out.push((scenario, times));
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
    type Case<'a> = (&'static str, Box<dyn Fn() + 'a>);
    let cases: [Case; 4] = [
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

/// Runs one library's scenario alone (for profilers: `--profile LIB SCENARIO
/// ITERS`, LIB one of `floor`, `noop-layer`, `vishnu`, `vishnu-encrypted`,
/// `tower-sessions`) and prints its time per request.
pub fn profile(library: &str, scenario: &str, iters: u64) {
    let rt = current_thread();
    let app = match library {
        "floor" => floor_app(),
        "vishnu" => vishnu_app(false),
        "vishnu-encrypted" => vishnu_app(true),
        "tower-sessions" => tower_sessions_app(),
        // The floor behind a layer that does nothing: what any layer added
        // with `Router::layer` costs (axum boxes each route's service again).
        "noop-layer" => floor_app().layer(tower::util::MapRequestLayer::new(|r: Request<Body>| r)),
        other => panic!("unknown library {other}"),
    };
    let cookie = if library == "floor" || library == "noop-layer" {
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
    let libs: [(&str, Router); 4] = [
        ("floor", floor),
        ("vishnu", vishnu_app(false)),
        ("vishnu-encrypted", vishnu_app(true)),
        ("tower-sessions", tower_sessions_app()),
    ];
    let cookies: Vec<HeaderValue> = libs
        .iter()
        .map(|(name, app)| {
            if *name == "floor" {
                floor_cookie.clone()
            } else {
                first_cookie(&rt, app)
            }
        })
        .collect();
    // Interleaved: every round times each library once, so that a burst of
    // other work on the machine hits all of them alike. A library's overhead
    // is the median over the rounds of its time minus the floor's in that round.
    for scenario in SCENARIOS {
        let path = leak(scenario);
        let mut times: Vec<Vec<f64>> = libs.iter().map(|_| Vec::new()).collect();
        for _ in 0..rounds {
            for (i, (_, app)) in libs.iter().enumerate() {
                let us = drive_axum(&rt, app.clone(), path, Some(cookies[i].clone()), 1, iters);
                times[i].push(us);
            }
        }
        for (i, (name, _)) in libs.iter().enumerate() {
            let floor = (i > 0).then(|| times[0].as_slice());
            library_rows(&mut rows, scenario, name, &times[i], floor);
        }
    }
    for (scenario, times) in actix(rounds, iters / 2) {
        let [floor, session, ours] = times;
        library_rows(&mut rows, scenario, "actix-floor", &floor, None);
        library_rows(&mut rows, scenario, "actix-session", &session, Some(&floor));
        library_rows(&mut rows, scenario, "actix-vishnu", &ours, Some(&floor));
    }
    codec(&mut rows, rounds, iters);
    rows
}

/// One library's rows in one scenario: the median time per request over the
/// rounds and, beside a floor, the median of its per-round difference to it.
fn library_rows(
    rows: &mut Vec<Value>,
    scenario: &str,
    name: &str,
    times: &[f64],
    floor: Option<&[f64]>,
) {
    rows.push(row(
        SUITE,
        scenario,
        name,
        "us_per_request",
        median(times.to_vec()),
        "us",
    ));
    if let Some(floor) = floor {
        let overheads = times.iter().zip(floor).map(|(l, f)| l - f).collect();
        rows.push(row(
            SUITE,
            scenario,
            name,
            "overhead_us",
            median(overheads),
            "us",
        ));
    }
}

fn leak(s: &str) -> &'static str {
    match s {
        "untouched" => "/untouched",
        "read" => "/read",
        _ => "/write",
    }
}
