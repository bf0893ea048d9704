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
use std::path::Path;

use actix_web::http::header::{LOCATION, USER_AGENT};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpResponseBuilder, HttpServer};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use vishnu::actix::SessionMiddleware;
use vishnu::{Session, SessionError};

#[path = "shared/demo_setup.rs"]
mod setup;

/// Prints `demo_actix: {message}` and exits with `code`.
fn fail(code: i32, message: impl std::fmt::Display) -> ! {
    eprintln!("demo_actix: {message}");
    std::process::exit(code)
}

#[actix_web::main]
async fn main() {
    let setup::Started {
        args,
        config,
        metrics,
    } = setup::start("demo_actix").await;
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
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(setup::page(visits, user.as_deref())))
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
    let Some(user) = setup::user_name(&form.user) else {
        return Ok(text(HttpResponse::BadRequest(), "user: 1 to 64 characters"));
    };
    session.set("user", user)?;
    let agent = req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok());
    session.set_label(&setup::label(agent));
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
        Ok(list) => Ok(HttpResponse::Ok().json(setup::sessions_json(list))),
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
