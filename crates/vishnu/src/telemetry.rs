//! Metrics through the [`metrics`](https://docs.rs/metrics) facade: plug in any
//! exporter (Prometheus, OpenTelemetry, ...) and these appear. With the
//! `metrics` feature off, or no recorder installed, they cost (next to) nothing.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `vishnu_sessions_created_total` | counter | |
//! | `vishnu_sessions_terminated_total` | counter | (`terminate`, and each revoked session) |
//! | `vishnu_session_ids_changed_total` | counter | `reason` = `cycle` \| `renew` |
//! | `vishnu_cookies_rejected_total` | counter | `reason` = `signature` \| `malformed` \| `expired` \| `unknown_id` \| `superseded` |
//! | `vishnu_save_conflicts_total` | counter | |
//! | `vishnu_store_seconds` | histogram | `op` (`load`, `create`, `save`, `delete`, `touch`, `delete_expired`), `store` |

/// Why a request's cookie named no session.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rejected {
    /// It did not authenticate (wrong key, tampered).
    Signature,
    /// It is not a cookie value of ours at all.
    Malformed,
    /// It named a session that has expired.
    Expired,
    /// It named a session the store does not know (or that ended).
    UnknownId,
    /// It named an id that a login cycled away, inside the grace window.
    Superseded,
}

#[cfg(feature = "metrics")]
mod on {
    use super::Rejected;

    pub(crate) fn created() {
        metrics::counter!("vishnu_sessions_created_total").increment(1);
    }
    pub(crate) fn terminated(n: u64) {
        metrics::counter!("vishnu_sessions_terminated_total").increment(n);
    }
    pub(crate) fn id_changed(renew: bool) {
        let reason = if renew { "renew" } else { "cycle" };
        metrics::counter!("vishnu_session_ids_changed_total", "reason" => reason).increment(1);
    }
    pub(crate) fn rejected(why: Rejected) {
        let reason = match why {
            Rejected::Signature => "signature",
            Rejected::Malformed => "malformed",
            Rejected::Expired => "expired",
            Rejected::UnknownId => "unknown_id",
            Rejected::Superseded => "superseded",
        };
        metrics::counter!("vishnu_cookies_rejected_total", "reason" => reason).increment(1);
    }
    pub(crate) fn save_conflict() {
        metrics::counter!("vishnu_save_conflicts_total").increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
mod on {
    use super::Rejected;

    pub(crate) fn created() {}
    pub(crate) fn terminated(_: u64) {}
    pub(crate) fn id_changed(_: bool) {}
    pub(crate) fn rejected(_: Rejected) {}
    pub(crate) fn save_conflict() {}
}

pub(crate) use on::*;
