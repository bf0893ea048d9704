use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};

use http::header::SET_COOKIE;
use http::{HeaderValue, Response};
use pin_project_lite::pin_project;

use crate::engine::{Ending, Engine};
use crate::error::SessionError;
use crate::Session;

type Finish = Pin<Box<dyn Future<Output = Result<Option<String>, SessionError>> + Send>>;

pin_project! {
    /// The response future of [`SessionService`](crate::SessionService).
    ///
    /// A request that never used its session completes without allocating:
    /// the engine is only called (and boxed) when there is something to do.
    pub struct ResponseFuture<F, B> {
        #[pin]
        inner: F,
        session: Session,
        finishing: Option<(Finish, Response<B>)>,
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

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some((finish, _)) = this.finishing.as_mut() {
                let outcome = ready!(finish.as_mut().poll(cx));
                let Some((_, response)) = this.finishing.take() else {
                    unreachable!("checked above")
                };
                return Poll::Ready(Ok(respond(response, outcome)));
            }
            let response = ready!(this.inner.as_mut().poll(cx))?;
            if !this.session.inner.used.load(Ordering::Relaxed) {
                return Poll::Ready(Ok(response));
            }
            let status = response.status().as_u16();
            // A read (or nothing to write) ends here, with no future to box.
            if let Some(outcome) = Engine::ready(this.session, status) {
                return Poll::Ready(Ok(respond(response, outcome)));
            }
            let engine = Engine::of(this.session);
            let session = this.session.clone();
            let finish: Finish = Box::pin(async move { engine.finish(&session, status).await });
            *this.finishing = Some((finish, response));
        }
    }
}

/// The handler's response with the engine's `Set-Cookie`, or the refusal that replaces it.
fn respond<B: Default>(
    mut response: Response<B>,
    outcome: Result<Option<String>, SessionError>,
) -> Response<B> {
    match Ending::of(outcome) {
        Ending::Send(Some(cookie)) => match HeaderValue::try_from(cookie) {
            Ok(value) => {
                response.headers_mut().append(SET_COOKIE, value);
            }
            Err(_) => tracing::error!("session cookie is not a valid header value"),
        },
        Ending::Send(None) => {}
        Ending::Refuse(status) => {
            let mut refused = Response::new(B::default());
            *refused.status_mut() = status;
            return refused;
        }
    }
    response
}
