//! What an [`Engine`](crate::Engine) runs with: the validated [`Config`],
//! where sessions persist, the cookie codec, the clock and this process's
//! write locks; and the rules of a session's lifetime (idle and absolute
//! timeouts), shared by the engine and the user index.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::codec::Codec;
use crate::config::{Config, Settings, Timeout};
use crate::error::SessionError;
use crate::record::{Millis, Record};
use crate::store::metered::Metered;
use crate::turns::Turns;

/// Where sessions persist. The cookie mode has no store to call.
// One per engine, behind its `Arc`: a boxed store would only add a pointer to follow.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Persistence {
    /// Records in a server-side store; the cookie carries the id.
    Server(Metered),
    /// The whole record sealed in the cookie ([`CookieStore`](crate::CookieStore)).
    Cookie,
}

/// The engine's runtime, built once per [`Engine`](crate::Engine).
pub(crate) struct Runtime {
    pub(crate) config: Config,
    pub(crate) persistence: Persistence,
    pub(crate) codec: Codec,
    pub(crate) clock: Arc<dyn Clock>,
    /// Writes to one session from this process take turns (see `engine::persist`).
    pub(crate) turns: Turns,
}

impl Deref for Runtime {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.config.inner
    }
}

impl Runtime {
    pub(crate) fn new(config: Config) -> Self {
        let s = &config.inner;
        let secrets: Vec<&[u8]> = s.secrets.iter().map(Vec::as_slice).collect();
        let keys: Vec<&[u8]> = s.encrypt_keys.iter().map(Vec::as_slice).collect();
        let codec = Codec::new(&s.cookie.name, &secrets, &keys);
        let store = config.store();
        let persistence = if store.client_side() {
            Persistence::Cookie
        } else {
            Persistence::Server(Metered::new(
                store.clone(),
                s.memory.clone(),
                s.system_clock,
            ))
        };
        Self {
            codec,
            persistence,
            clock: s.clock.clone(),
            turns: Turns::default(),
            config,
        }
    }

    /// The server-side store, or `None` in cookie mode.
    pub(crate) fn server(&self) -> Option<&Metered> {
        match &self.persistence {
            Persistence::Server(store) => Some(store),
            Persistence::Cookie => None,
        }
    }

    /// Whether the record travels in the cookie.
    pub(crate) fn client_side(&self) -> bool {
        matches!(self.persistence, Persistence::Cookie)
    }

    /// The current time from the configured clock.
    pub(crate) fn now(&self) -> Millis {
        self.clock.now_millis()
    }

    /// The server-side store, or [`SessionError::Unsupported`] with the cookie store.
    pub(crate) fn server_store(&self) -> Result<&Metered, SessionError> {
        self.server().ok_or(SessionError::Unsupported(
            "the cookie store keeps no server state: a user's sessions cannot be listed or revoked",
        ))
    }

    /// Whether a record is past its idle or absolute timeout.
    pub(crate) fn is_expired(&self, record: &Record, now: Millis) -> bool {
        self.absolute_ends(record.created_at)
            .map_or(record.is_expired(now), |end| {
                record.is_expired(now) || now >= end
            })
    }

    /// When a session created at `created_at` ends whatever its use (absolute timeout).
    fn absolute_ends(&self, created_at: Millis) -> Option<Millis> {
        self.absolute_timeout
            .map(|abs| created_at.saturating_add(millis(abs)))
    }

    /// How long a session with `timeout` lives after its last use.
    pub(crate) fn idle_millis(&self, timeout: Timeout) -> Millis {
        match timeout {
            Timeout::Seconds(s) => s.saturating_mul(1000),
            Timeout::BrowserSession => millis(self.browser_session_ttl),
        }
    }

    /// When a session created at `created_at` and used at `now` expires.
    pub(crate) fn expires_at(&self, created_at: Millis, now: Millis, timeout: Timeout) -> Millis {
        let idle = now.saturating_add(self.idle_millis(timeout));
        self.absolute_ends(created_at)
            .map_or(idle, |end| idle.min(end))
    }
}

/// A duration in milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
