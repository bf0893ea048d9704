use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};

use actix_web::body::EitherBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{HeaderValue, SET_COOKIE};
use actix_web::http::StatusCode;
use actix_web::{Error, HttpResponse};
use pin_project_lite::pin_project;

use crate::engine::{Ending, Engine};
use crate::error::SessionError;
use crate::Session;

type Finish = Pin<Box<dyn Future<Output = Result<Option<String>, SessionError>>>>;

pin_project! {
    /// The response future of [`SessionService`](crate::actix::SessionService).
    ///
    /// A request that never used its session completes without allocating:
    /// the engine is only called (and boxed) when there is something to do.
    pub struct ResponseFuture<F, B> {
        #[pin]
        inner: F,
        session: Session,
        finishing: Option<(Finish, ServiceResponse<B>)>,
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(inner: F, session: Session) -> Self {
        Self {
            inner,
            session,
            finishing: None,
        }
    }
}

impl<F, B> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = Result<ServiceResponse<EitherBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some((mut finish, response)) = this.finishing.take() {
                let Poll::Ready(outcome) = finish.as_mut().poll(cx) else {
                    *this.finishing = Some((finish, response));
                    return Poll::Pending;
                };
                return Poll::Ready(Ok(answer(response, outcome)));
            }
            let response = ready!(this.inner.as_mut().poll(cx))?;
            if !this.session.inner.used.load(Ordering::Relaxed) {
                return Poll::Ready(Ok(response.map_into_left_body()));
            }
            let status = response.status().as_u16();
            // A read (or nothing to write) ends here, with no future to box.
            if let Some(outcome) = Engine::ready(this.session, status) {
                return Poll::Ready(Ok(answer(response, outcome)));
            }
            let engine = Engine::of(this.session);
            let session = this.session.clone();
            let finish: Finish = Box::pin(async move { engine.finish(&session, status).await });
            *this.finishing = Some((finish, response));
        }
    }
}

/// The handler's response with the engine's `Set-Cookie`, or the refusal that replaces it.
fn answer<B>(
    mut response: ServiceResponse<B>,
    outcome: Result<Option<String>, SessionError>,
) -> ServiceResponse<EitherBody<B>> {
    match Ending::of(outcome) {
        Ending::Send(cookie) => {
            if let Some(cookie) = cookie {
                match HeaderValue::try_from(cookie) {
                    Ok(value) => response.headers_mut().append(SET_COOKIE, value),
                    Err(_) => tracing::error!("session cookie is not a valid header value"),
                }
            }
            response.map_into_left_body()
        }
        // actix-web 4 has http 0.2's StatusCode: the same numbers.
        Ending::Refuse(status) => refuse(
            response,
            StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        ),
    }
}

/// The handler's answer replaced by an empty one with `status`.
fn refuse<B>(response: ServiceResponse<B>, status: StatusCode) -> ServiceResponse<EitherBody<B>> {
    response
        .into_response(HttpResponse::new(status))
        .map_into_right_body()
}
