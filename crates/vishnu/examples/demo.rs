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
//!
//! The secret is `VISHNU_SECRET` (32+ bytes), or `VISHNU_FRAMEWORK_SECRET`: a
//! Flask, Django or Starlette `SECRET_KEY`, derived as vishnu's framework
//! fronts derive it, so that the demo shares their sessions (with
//! `--cookie-name session`, their default, and the same store).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;

use axum::extract::Form;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use vishnu::{Session, SessionError, SessionLayer};

#[path = "shared/demo_setup.rs"]
mod setup;

#[tokio::main]
async fn main() {
    let setup::Started {
        args,
        config,
        metrics,
    } = setup::start("demo").await;
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

async fn index(session: Session) -> Result<Html<String>, SessionError> {
    let visits: u64 = session.get("counter").await?.unwrap_or(0);
    let user: Option<String> = session.get("user").await?;
    Ok(Html(setup::page(visits, user.as_deref())))
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
    let Some(user) = setup::user_name(&form.user) else {
        return (StatusCode::BAD_REQUEST, "user: 1 to 64 characters").into_response();
    };
    if let Err(e) = session.set("user", user) {
        return e.into_response();
    }
    let agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    session.set_label(&setup::label(agent));
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
        Ok(list) => axum::Json(setup::sessions_json(list)).into_response(),
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
