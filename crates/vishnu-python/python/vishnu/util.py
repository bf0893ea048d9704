"""Cleanup helpers (the original's ``vishnu.util``). Each returns True when nothing more is left,
so that ``while not gae_ndb_delete_expired_sessions(): pass`` ends.

The Google helpers run without an engine: each reads the system clock once, on entry, and its
store judges every session by that one ``now``. The engine's own cleanups pass theirs instead."""
from vishnu.backend.client import _common

DEFAULT_DORMANT_FOR = 86400
DEFAULT_LIMIT = 500


def delete_expired_sessions(config, dormant_for=DEFAULT_DORMANT_FOR, limit=DEFAULT_LIMIT):
    """Removes expired sessions, and sessions unused for ``dormant_for`` seconds, at most ``limit``,
    from ``config``'s store (SQL and memory stores; Redis and memcached expire records themselves).
    Returns True when nothing more is left."""
    # The engine's clock judges what has expired (the same clock its sessions use).
    removed, more = config._get_engine().delete_expired(int(dormant_for), int(limit))
    return not more


def google_app_engine_ndb_delete_expired_sessions(dormant_for=DEFAULT_DORMANT_FOR, limit=DEFAULT_LIMIT):
    """Removes expired or dormant NDB sessions, at most ``limit``; True when nothing more is left."""
    from vishnu.backend.client.google_app_engine_ndb import delete_expired
    return delete_expired(dormant_for, limit, now_ms=_common.now_ms())[1]


def gae_ndb_delete_expired_sessions(dormant_for=DEFAULT_DORMANT_FOR, limit=DEFAULT_LIMIT):
    """Short name of :func:`google_app_engine_ndb_delete_expired_sessions`."""
    return google_app_engine_ndb_delete_expired_sessions(dormant_for, limit)


def google_cloud_datastore_delete_expired_sessions(dormant_for=DEFAULT_DORMANT_FOR, limit=DEFAULT_LIMIT):
    """Removes expired or dormant Cloud Datastore sessions, at most ``limit``; True when nothing more is left."""
    from vishnu.backend.client.google_cloud_datastore import delete_expired
    return delete_expired(dormant_for, limit, now_ms=_common.now_ms())[1]
