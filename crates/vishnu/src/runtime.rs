//! The runtime behind a configuration: its clock, its store, and the rules
//! of a session's lifetime (idle and absolute timeouts), shared by the engine
//! and the user index.

use std::time::Duration;

pub(crate) use crate::config::ConfigInner as Runtime;
use crate::config::Timeout;
use crate::error::SessionError;
use crate::record::{Millis, Record};
use crate::store::SessionStore;

impl Runtime {
    /// The current time from the configured clock.
    pub(crate) fn now(&self) -> Millis {
        self.clock.now_millis()
    }

    /// The server-side store, or [`SessionError::Unsupported`] with the cookie store.
    pub(crate) fn server_store(&self) -> Result<&dyn SessionStore, SessionError> {
        if self.client_side {
            return Err(SessionError::Unsupported(
                "the cookie store keeps no server state: a user's sessions cannot be listed or revoked",
            ));
        }
        Ok(&*self.store)
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
