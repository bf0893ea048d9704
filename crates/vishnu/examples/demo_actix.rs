//! The vishnu demo on actix-web: the same routes, flags and answers as `demo.rs`.
//!
//! ```text
//! cargo run --example demo_actix --features actix -- [--port 3000] [--store memory]
//!     [--timeout SECONDS] [--tls-cert FILE --tls-key FILE] [--cookie-name NAME]
//!     [--same-site strict|lax|none] [--renew-every SECONDS] [--grace SECONDS] [--partitioned]
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

use actix_web::http::header::{LOCATION, USER_AGENT};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpResponseBuilder, HttpServer};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use vishnu::actix::SessionMiddleware;
use vishnu::{Config, SameSite, Session, SessionError};

const USAGE: &str = "usage: demo_actix [--port N] [--store URL] [--timeout SECONDS] \
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

/// Prints `demo_actix: {message}` and exits with `code`.
fn fail(code: i32, message: impl std::fmt::Display) -> ! {
    eprintln!("demo_actix: {message}");
    std::process::exit(code)
}

#[actix_web::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,vishnu=info".into()),
        )
        .init();
    let args = parse_args().unwrap_or_else(|e| fail(2, e));
    let store = vishnu::store::open(&args.store)
        .await
        .unwrap_or_else(|e| fail(2, e));
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
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap_or_else(|e| fail(1, format!("cannot install the metrics recorder: {e}")));
    let config = builder
        .build()
        .unwrap_or_else(|e| fail(2, format!("configuration: {e}")));
    // One middleware, cloned into every worker: the workers share one engine.
    let sessions = SessionMiddleware::new(config);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(metrics.clone()))
            .route("/metrics", web::get().to(render_metrics))
            .service(
                web::scope("")
                    .wrap(sessions.clone())
                    .route("/", web::get().to(index))
                    .route("/public", web::get().to(|| async { "public" }))
                    .route("/counter", web::get().to(counter))
                    .route("/login", web::post().to(login))
                    .route("/whoami", web::get().to(whoami))
                    .route("/logout", web::post().to(logout))
                    .route("/sessions", web::get().to(sessions_list))
                    .route("/sessions/revoke", web::post().to(revoke))
                    .route("/sessions/revoke-others", web::post().to(revoke_others))
                    .route("/sessions/revoke-all", web::post().to(revoke_all)),
            )
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let (server, scheme) = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => (
            server.bind_rustls_0_23(addr, tls_config(cert, key)),
            "https",
        ),
        _ => (server.bind(addr), "http"),
    };
    let server = server.unwrap_or_else(|e| fail(1, format!("cannot listen on {addr}: {e}")));
    println!(
        "vishnu demo (actix-web) on {scheme}://{addr} (store: {})",
        args.store
    );
    if let Err(e) = server.run().await {
        fail(1, format!("server error: {e}"));
    }
}

/// The rustls configuration for a PEM certificate chain and private key.
fn tls_config(cert: &Path, key: &Path) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    // One crypto provider for the process, chosen here rather than by feature unification.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cannot_load = |e: &dyn std::fmt::Display| -> ! {
        fail(
            2,
            format!(
                "cannot load the TLS certificate {} and key {}: {e}",
                cert.display(),
                key.display()
            ),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| cannot_load(&e));
    let key = PrivateKeyDer::from_pem_file(key).unwrap_or_else(|e| cannot_load(&e));
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap_or_else(|e| cannot_load(&e))
}

async fn render_metrics(metrics: web::Data<PrometheusHandle>) -> String {
    metrics.render()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn see_other() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, "/"))
        .finish()
}

fn text(mut response: HttpResponseBuilder, body: &'static str) -> HttpResponse {
    response
        .content_type("text/plain; charset=utf-8")
        .body(body)
}

async fn index(session: Session) -> Result<HttpResponse, SessionError> {
    let visits: u64 = session.get("counter").await?.unwrap_or(0);
    let user: Option<String> = session.get("user").await?;
    let who = match &user {
        Some(u) => format!("<p>Logged in as <b id=\"user\">{}</b></p>", escape(u)),
        None => "<p id=\"user\">Not logged in</p>".to_owned(),
    };
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
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

async fn login(
    session: Session,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, SessionError> {
    let user = form.user.trim();
    if user.is_empty() || user.chars().count() > 64 {
        return Ok(text(HttpResponse::BadRequest(), "user: 1 to 64 characters"));
    }
    session.set("user", user)?;
    let agent = req
        .headers()
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    session.set_label(&agent.chars().take(200).collect::<String>());
    // Bind to the user and take a new id: an id known before (fixation) is worthless after.
    session.login(user).await?;
    Ok(see_other())
}

/// The cookie store keeps no server state: a user's sessions cannot be listed.
fn user_error(e: SessionError) -> Result<HttpResponse, SessionError> {
    match e {
        SessionError::Unsupported(what) => Ok(text(HttpResponse::NotImplemented(), what)),
        e => Err(e),
    }
}

async fn logged_in(session: &Session) -> Result<Option<HttpResponse>, SessionError> {
    match session.user().await {
        Ok(Some(_)) => Ok(None),
        Ok(None) => Ok(Some(text(HttpResponse::Unauthorized(), "not logged in"))),
        Err(e) => user_error(e).map(Some),
    }
}

async fn sessions_list(session: Session) -> Result<HttpResponse, SessionError> {
    if let Some(refused) = logged_in(&session).await? {
        return Ok(refused);
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
            Ok(HttpResponse::Ok().json(list))
        }
        Err(e) => user_error(e),
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    handle: String,
}

/// A revocation by a logged-in user, then 303 to `/`.
async fn revocation<F: Future<Output = Result<(), SessionError>>>(
    session: &Session,
    revoke: F,
) -> Result<HttpResponse, SessionError> {
    if let Some(refused) = logged_in(session).await? {
        return Ok(refused);
    }
    match revoke.await {
        Ok(()) => Ok(see_other()),
        Err(e) => user_error(e),
    }
}

async fn revoke(
    session: Session,
    form: web::Form<RevokeForm>,
) -> Result<HttpResponse, SessionError> {
    revocation(&session, async {
        session.revoke(&form.handle).await.map(drop)
    })
    .await
}

async fn revoke_others(session: Session) -> Result<HttpResponse, SessionError> {
    revocation(&session, async { session.revoke_others().await.map(drop) }).await
}

async fn revoke_all(session: Session) -> Result<HttpResponse, SessionError> {
    revocation(&session, async { session.revoke_all().await.map(drop) }).await
}

async fn whoami(session: Session) -> Result<HttpResponse, SessionError> {
    Ok(match session.get::<String>("user").await? {
        Some(user) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(user),
        None => text(HttpResponse::Unauthorized(), "not logged in"),
    })
}

async fn logout(session: Session) -> Result<HttpResponse, SessionError> {
    session.terminate().await?;
    Ok(see_other())
}
