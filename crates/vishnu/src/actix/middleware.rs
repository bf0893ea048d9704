use std::future::{ready, Ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::COOKIE;
use actix_web::{Error, HttpMessage};

use crate::actix::ResponseFuture;
use crate::engine::Engine;
use crate::Config;

/// Adds sessions to every request of the wrapped `App`, `Scope` or resource.
///
/// Make it once and clone it into each worker's `App` (clones share one engine).
#[derive(Clone, Debug)]
pub struct SessionMiddleware {
    engine: Engine,
}

impl SessionMiddleware {
    /// A middleware for this configuration.
    pub fn new(config: Config) -> Self {
        Self {
            engine: Engine::new(config),
        }
    }

    /// The engine behind the middleware (for cleanup calls such as `delete_expired`).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = SessionService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, inner: S) -> Self::Future {
        ready(Ok(SessionService {
            inner,
            engine: self.engine.clone(),
        }))
    }
}

/// The service made by [`SessionMiddleware`].
#[derive(Debug)]
pub struct SessionService<S> {
    inner: S,
    engine: Engine,
}

impl<S, B> Service<ServiceRequest> for SessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = ResponseFuture<S::Future, B>;

    forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        // actix-web speaks `http` 0.2, the engine `http` 1: the same bytes.
        let cookies = req
            .headers()
            .get_all(COOKIE)
            .filter_map(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok());
        let session = self.engine.begin(cookies);
        req.extensions_mut().insert(session.clone());
        ResponseFuture::new(self.inner.call(req), session)
    }
}
