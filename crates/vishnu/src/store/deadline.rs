//! The per-call deadline every networked store puts on its calls.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::StoreError;

/// Runs one store call with a deadline: the per-call timeout every store
/// shares. Dropping the call on timeout drops whatever connection it held,
/// so a half-finished exchange is never reused.
pub(crate) fn bounded<T, F>(timeout: Duration, call: F) -> Bounded<F>
where
    F: Future<Output = Result<T, StoreError>>,
{
    Bounded {
        call: tokio::time::timeout(timeout, call),
        timeout,
    }
}

pin_project_lite::pin_project! {
    /// The future of [`bounded`]: the call and its timer, and nothing else. (An
    /// `async fn` would keep the call twice over: once as its argument, once
    /// inside the timer, and every store call's future would be that much larger.)
    pub(crate) struct Bounded<F> {
        #[pin]
        call: tokio::time::Timeout<F>,
        timeout: Duration,
    }
}

impl<T, F> Future for Bounded<F>
where
    F: Future<Output = Result<T, StoreError>>,
{
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let timeout = *this.timeout;
        this.call
            .poll(cx)
            .map(|done| done.unwrap_or(Err(StoreError::Timeout(timeout))))
    }
}
