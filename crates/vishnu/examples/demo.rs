//! The vishnu demo: a visit counter, login and logout over sessions.
//!
//! ```text
//! cargo run --example demo -- [--port 3000] [--store memory] [--timeout SECONDS]
//!     [--tls-cert FILE --tls-key FILE] [--cookie-name NAME] [--same-site strict|lax|none]
//!     [--renew-every SECONDS] [--grace SECONDS] [--partitioned]
//! ```
//!
//! Plain HTTP by default, with a non-`Secure` cookie (browsers drop `Secure`
//! cookies on plain http). With `--tls-cert` and `--tls-key` (PEM files) it
//! serves HTTPS (rustls) and the cookie is `Secure`, which `--cookie-name
//! __Host-…` and `--same-site none` require.
//!
//! Routes: `GET /` (page), `GET /public` (never touches the session),
//! `GET /counter`, `POST /login` (form field `user`: binds the session to the
//! user, labels it with the `User-Agent`, cycles the id), `GET /whoami`,
//! `POST /logout`, and a user's sessions: `GET /sessions` (JSON; 401 when not
//! logged in), `POST /sessions/revoke` (form field `handle`),
//! `POST /sessions/revoke-others`, `POST /sessions/revoke-all` (each 303).
//! A write with an id that a login cycled away, inside the grace window,
//! answers 409 with no cookie. `GET /metrics` serves the session metrics in
//! Prometheus' text format.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::Form;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use vishnu::{Config, SameSite, Session, SessionError, SessionLayer};

const USAGE: &str = "usage: demo [--port N] [--store URL] [--timeout SECONDS] \
[--tls-cert FILE --tls-key FILE] [--cookie-name NAME] [--same-site strict|lax|none] \
[--renew-every SECONDS] [--grace SECONDS] [--partitioned]";

struct Args {
    port: u16,
    store: String,
    timeout: Option<u64>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    cookie_name: Option<String>,
    same_site: Option<SameSite>,
    renew_every: Option<u64>,
    grace: Option<u64>,
    partitioned: bool,
}

fn seconds(flag: &str, v: &str) -> Result<u64, String> {
    v.parse()
        .map_err(|_| format!("{flag}: {v:?} is not a number of seconds"))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        port: 3000,
        store: "memory".into(),
        timeout: None,
        tls_cert: None,
        tls_key: None,
        cookie_name: None,
        same_site: None,
        renew_every: None,
        grace: None,
        partitioned: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--port" => {
                let v = value("--port")?;
                args.port = v
                    .parse()
                    .map_err(|_| format!("--port: {v:?} is not a port number"))?;
            }
            "--store" => args.store = value("--store")?,
            "--timeout" => args.timeout = Some(seconds("--timeout", &value("--timeout")?)?),
            "--renew-every" => {
                args.renew_every = Some(seconds("--renew-every", &value("--renew-every")?)?)
            }
            "--grace" => args.grace = Some(seconds("--grace", &value("--grace")?)?),
            "--partitioned" => args.partitioned = true,
            "--tls-cert" => args.tls_cert = Some(value("--tls-cert")?.into()),
            "--tls-key" => args.tls_key = Some(value("--tls-key")?.into()),
            "--cookie-name" => args.cookie_name = Some(value("--cookie-name")?),
            "--same-site" => {
                let v = value("--same-site")?;
                args.same_site = Some(match v.to_ascii_lowercase().as_str() {
                    "strict" => SameSite::Strict,
                    "lax" => SameSite::Lax,
                    "none" => SameSite::None,
                    _ => return Err(format!("--same-site: {v:?} is not strict, lax or none")),
                });
            }
            "-h" | "--help" => {
                println!(
                    "{USAGE}\n  --store: {} (default memory)\n  \
                     --tls-cert, --tls-key: PEM certificate chain and private key; serve HTTPS \
                     with a Secure cookie (default: plain HTTP, cookie not Secure)\n  \
                     --cookie-name: default {}\n  --same-site: default lax\n  \
                     --renew-every: give a used session a new id at most this often (default off)\n  \
                     --grace: the cycle and renewal grace windows (default 10)\n  \
                     --partitioned: a Partitioned (CHIPS) cookie; needs HTTPS",
                    vishnu::store::supported().join(", "),
                    vishnu::DEFAULT_COOKIE_NAME,
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,vishnu=info".into()),
        )
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::exit(2);
        }
    };
    let store = match vishnu::store::open(&args.store).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::exit(2);
        }
    };
    let secret = std::env::var("VISHNU_SECRET")
        .unwrap_or_else(|_| "demo secret: change me, at least 32 bytes long".into());
    let tls = args.tls_cert.is_some();
    let mut builder = Config::builder()
        .secret(secret)
        .shared_store(store)
        .auto_save(true)
        // Without TLS the demo serves plain http on localhost, where browsers
        // drop Secure cookies; the library default (secure = true) stays on for
        // real apps, and here whenever the demo serves HTTPS.
        .secure(tls);
    if let Some(t) = args.timeout {
        builder = builder.timeout(Duration::from_secs(t));
    }
    if let Some(name) = &args.cookie_name {
        builder = builder.cookie_name(name.clone());
    }
    if let Some(same_site) = args.same_site {
        builder = builder.same_site(same_site);
    }
    if let Some(every) = args.renew_every {
        builder = builder.renew_every(Duration::from_secs(every));
    }
    if args.partitioned {
        builder = builder.partitioned(true);
    }
    if let Some(grace) = args.grace {
        builder = builder
            .cycle_grace(Duration::from_secs(grace))
            .renew_grace(Duration::from_secs(grace));
    }
    // The metrics of every session (see vishnu's `metrics` feature), for GET /metrics.
    let metrics = match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("demo: cannot install the metrics recorder: {e}");
            std::process::exit(1);
        }
    };
    let config = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("demo: configuration: {e}");
            std::process::exit(2);
        }
    };
    let app = Router::new()
        .route("/", get(index))
        .route("/public", get(|| async { "public" }))
        .route("/counter", get(counter))
        .route("/login", post(login))
        .route("/whoami", get(whoami))
        .route("/logout", post(logout))
        .route("/sessions", get(sessions))
        .route("/sessions/revoke", post(revoke))
        .route("/sessions/revoke-others", post(revoke_others))
        .route("/sessions/revoke-all", post(revoke_all))
        .layer(SessionLayer::new(config))
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        );
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        serve_tls(addr, cert, key, app, &args.store).await;
        return;
    }
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("vishnu demo on http://{addr} (store: {})", args.store);
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("demo: server error: {e}");
        std::process::exit(1);
    }
}

async fn serve_tls(addr: SocketAddr, cert: &Path, key: &Path, app: Router, store: &str) {
    // One crypto provider for the process, chosen here rather than by feature unification.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = match axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "demo: cannot load the TLS certificate {} and key {}: {e}",
                cert.display(),
                key.display()
            );
            std::process::exit(2);
        }
    };
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("demo: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let server = match axum_server::from_tcp_rustls(listener, tls) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("demo: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    println!("vishnu demo on https://{addr} (store: {store})");
    if let Err(e) = server.serve(app.into_make_service()).await {
        eprintln!("demo: server error: {e}");
        std::process::exit(1);
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn index(session: Session) -> Result<Html<String>, SessionError> {
    let visits: u64 = session.get("counter").await?.unwrap_or(0);
    let user: Option<String> = session.get("user").await?;
    let who = match &user {
        Some(u) => format!("<p>Logged in as <b id=\"user\">{}</b></p>", escape(u)),
        None => "<p id=\"user\">Not logged in</p>".to_owned(),
    };
    Ok(Html(format!(
        "<!doctype html><html><head><title>vishnu demo</title></head><body>\
         <h1>vishnu demo</h1><p>Visits: <span id=\"counter\">{visits}</span> \
         (<a href=\"/counter\">count one more</a>)</p>{who}\
         <form method=\"post\" action=\"/login\"><input name=\"user\" placeholder=\"user name\">\
         <button type=\"submit\">Log in</button></form>\
         <form method=\"post\" action=\"/logout\"><button id=\"logout\" type=\"submit\">Log out</button></form>\
         </body></html>"
    )))
}

async fn counter(session: Session) -> Result<String, SessionError> {
    let n: u64 = session
        .update("counter", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    Ok(n.to_string())
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
}

async fn login(session: Session, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let user = form.user.trim();
    if user.is_empty() || user.chars().count() > 64 {
        return (StatusCode::BAD_REQUEST, "user: 1 to 64 characters").into_response();
    }
    if let Err(e) = session.set("user", user) {
        return e.into_response();
    }
    let agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    session.set_label(&agent.chars().take(200).collect::<String>());
    // Bind to the user and take a new id: an id known before (fixation) is worthless after.
    if let Err(e) = session.login(user).await {
        return e.into_response();
    }
    Redirect::to("/").into_response()
}

/// The cookie store keeps no server state: a user's sessions cannot be listed.
fn user_error(e: SessionError) -> Response {
    match e {
        SessionError::Unsupported(what) => (StatusCode::NOT_IMPLEMENTED, what).into_response(),
        e => e.into_response(),
    }
}

async fn sessions(session: Session) -> Response {
    if let Err(r) = logged_in(&session).await {
        return r;
    }
    match session.sessions().await {
        Ok(list) => {
            let list: Vec<serde_json::Value> = list
                .into_iter()
                .map(|s| {
                    serde_json::json!({
                        "handle": s.handle,
                        "current": s.current,
                        "created_at": s.created_at,
                        "last_access": s.last_access,
                        "label": s.label,
                    })
                })
                .collect();
            axum::Json(list).into_response()
        }
        Err(e) => user_error(e),
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    handle: String,
}

async fn logged_in(session: &Session) -> Result<(), Response> {
    match session.user().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err((StatusCode::UNAUTHORIZED, "not logged in").into_response()),
        Err(e) => Err(user_error(e)),
    }
}

/// A revocation by a logged-in user, then 303 to `/`.
async fn revocation<F: Future<Output = Result<(), SessionError>>>(
    session: &Session,
    revoke: F,
) -> Response {
    if let Err(r) = logged_in(session).await {
        return r;
    }
    match revoke.await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => user_error(e),
    }
}

async fn revoke(session: Session, Form(form): Form<RevokeForm>) -> Response {
    revocation(&session, async {
        session.revoke(&form.handle).await.map(drop)
    })
    .await
}

async fn revoke_others(session: Session) -> Response {
    revocation(&session, async { session.revoke_others().await.map(drop) }).await
}

async fn revoke_all(session: Session) -> Response {
    revocation(&session, async { session.revoke_all().await.map(drop) }).await
}

async fn whoami(session: Session) -> Result<Response, SessionError> {
    Ok(match session.get::<String>("user").await? {
        Some(user) => user.into_response(),
        None => (StatusCode::UNAUTHORIZED, "not logged in").into_response(),
    })
}

async fn logout(session: Session) -> Result<Redirect, SessionError> {
    session.terminate().await?;
    Ok(Redirect::to("/"))
}
