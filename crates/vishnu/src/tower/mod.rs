//! The tower front: [`SessionLayer`] and [`SessionService`].
//!
//! The service only translates: it hands the request's `Cookie` headers to the
//! engine, puts the [`Session`](crate::Session) into the request extensions,
//! and after the inner service answers, asks the engine for the `Set-Cookie`
//! header. A store failure while saving becomes an empty 500.
//!
//! ```
//! use tower::ServiceBuilder;
//! use vishnu::{Config, MemoryStore, SessionLayer};
//!
//! let config = Config::builder()
//!     .secret("a secret of at least thirty-two bytes!!")
//!     .store(MemoryStore::new())
//!     .build()
//!     .expect("valid config");
//! let layer = ServiceBuilder::new().layer(SessionLayer::new(config));
//! # let _ = layer;
//! ```

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::SessionLayer;
pub use service::SessionService;
