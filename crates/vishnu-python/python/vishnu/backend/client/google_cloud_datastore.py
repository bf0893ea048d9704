"""Sessions in Google Cloud Datastore (google-cloud-datastore), kind ``VishnuSession``.

One client per process (created on first use, reused), the JSON record in an
unindexed ``data`` property, ``version`` for the compare-and-set, done in a
transaction; ``expires`` and ``last_accessed`` are indexed for cleanup.
"""
import threading

from vishnu.backend.client import _common

TABLE_NAME = "VishnuSession"
_client = None
_client_lock = threading.Lock()


def client():
    """The process-wide datastore client (needs GOOGLE_CLOUD_PROJECT and credentials, or the emulator)."""
    global _client
    with _client_lock:
        if _client is None:
            from google.cloud import datastore  # lazy: vishnu[datastore]
            _client = datastore.Client()
        return _client


def _put(c, key, record, expires_at):
    import json
    from google.cloud import datastore
    parsed = json.loads(record)
    entity = datastore.Entity(key=c.key(TABLE_NAME, key), exclude_from_indexes=("data",))
    entity.update({
        "data": record,
        "version": parsed["version"],
        "last_accessed": _common.to_datetime(parsed["last_access"]),
        "expires": _common.to_datetime(expires_at),
    })
    c.put(entity)


class Store(object):
    """The PythonStore protocol over Cloud Datastore."""

    def load(self, key):
        c = client()
        entity = c.get(c.key(TABLE_NAME, key))
        if entity is None or _common.expired(entity["data"]):
            return None
        return entity["data"]

    def create(self, key, record, expires_at):
        c = client()
        with c.transaction():
            current = c.get(c.key(TABLE_NAME, key))
            if current is not None and not _common.expired(current["data"]):
                return False
            _put(c, key, record, expires_at)
            return True

    def save(self, key, record, expected_version, expires_at):
        c = client()
        with c.transaction():
            current = c.get(c.key(TABLE_NAME, key))
            if current is None or _common.expired(current["data"]):
                return "missing"
            if current["version"] != expected_version:
                return "conflict"
            _put(c, key, record, expires_at)
            return "saved"

    def delete(self, key):
        c = client()
        c.delete(c.key(TABLE_NAME, key))

    def touch(self, key, last_access, expires_at):
        c = client()
        with c.transaction():
            current = c.get(c.key(TABLE_NAME, key))
            if current is None or _common.expired(current["data"]):
                return False
            data, expires = _common.touched(current["data"], last_access, expires_at)
            _put(c, key, data, expires)
            return True

    def delete_expired(self, now, dormant_for, limit):
        removed, done = delete_expired(dormant_for, limit, now_ms=now)
        return (removed, not done)


def delete_expired(dormant_for=86400, limit=500, now_ms=None):
    """Deletes sessions that expired, or were not used for ``dormant_for`` seconds, at ``now_ms``
    (the engine's clock; the system clock, read once, when not given), at most ``limit`` in all.
    Returns ``(removed, done)``; ``done`` is True when nothing more is left.

    The index queries only propose: each candidate is deleted in a transaction of its own that
    re-reads it and spares it if a request refreshed it since the query."""
    c = client()
    now_ms = _common.now_ms() if now_ms is None else now_ms
    keys = _candidates(c, now_ms, now_ms - int(dormant_for) * 1000, limit + 1)
    removed = sum(1 for key in keys[:limit] if _delete_if_doomed(c, key, now_ms, dormant_for))
    return removed, len(keys) <= limit


def _candidates(c, now_ms, cutoff_ms, limit):
    """Keys of at most ``limit`` sessions, from each index, that the indexes say were last accessed
    at ``cutoff_ms`` or before, or expired by ``now_ms`` (Datastore has no OR across properties)."""
    from google.cloud.datastore.query import PropertyFilter
    keys = []
    for prop, bound in (("last_accessed", cutoff_ms), ("expires", now_ms)):
        q = c.query(kind=TABLE_NAME)
        q.add_filter(filter=PropertyFilter(prop, "<=", _common.to_datetime(bound)))
        q.keys_only()
        keys.extend(e.key for e in q.fetch(limit=limit))
    return list({k.id_or_name: k for k in keys}.values())


def _delete_if_doomed(c, key, now_ms, dormant_for):
    """Deletes the session at ``key`` if it is still expired or dormant at ``now_ms``; True if it did."""
    from google.api_core import exceptions
    try:
        with c.transaction():
            entity = c.get(key)
            if entity is None or not _common.doomed(entity.get("data"), now_ms, dormant_for):
                return False
            c.delete(key)
            return True
    except (exceptions.Aborted, exceptions.Conflict):
        return False  # written to since the read: in use, so not ours to delete
