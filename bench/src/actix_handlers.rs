//! The actix-web handlers of every actix row (in-process and on Redis): the
//! same work under actix-session and under vishnu's actix-web middleware.

use actix_web::HttpResponse;

/// `/untouched`: the session is never looked at.
pub async fn untouched() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// `/read` and `/write` of the floor: no session.
pub async fn plain() -> HttpResponse {
    HttpResponse::Ok().body("0")
}

/// `/read` with actix-session.
pub async fn read(s: actix_session::Session) -> HttpResponse {
    HttpResponse::Ok().body(s.get::<u64>("n").ok().flatten().unwrap_or(0).to_string())
}

/// `/write` with actix-session.
pub async fn write(s: actix_session::Session) -> HttpResponse {
    let n = s.get::<u64>("n").ok().flatten().unwrap_or(0);
    let _ = s.insert("n", n + 1);
    HttpResponse::Ok().body((n + 1).to_string())
}

/// `/read` with vishnu.
pub async fn vishnu_read(s: vishnu::Session) -> HttpResponse {
    HttpResponse::Ok().body(
        s.get::<u64>("n")
            .await
            .ok()
            .flatten()
            .unwrap_or(0)
            .to_string(),
    )
}

/// `/write` with vishnu.
pub async fn vishnu_write(s: vishnu::Session) -> HttpResponse {
    let n = s.get::<u64>("n").await.ok().flatten().unwrap_or(0);
    let _ = s.set("n", &(n + 1));
    HttpResponse::Ok().body((n + 1).to_string())
}
