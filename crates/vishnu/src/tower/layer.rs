use tower_layer::Layer;

use crate::engine::Engine;
use crate::tower::SessionService;
use crate::Config;

/// Adds sessions to every request of the wrapped service.
#[derive(Clone, Debug)]
pub struct SessionLayer {
    engine: Engine,
}

impl SessionLayer {
    /// A layer for this configuration.
    pub fn new(config: Config) -> Self {
        Self {
            engine: Engine::new(config),
        }
    }

    /// The engine behind the layer (for cleanup calls such as `delete_expired`).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService::new(inner, self.engine.clone())
    }
}
