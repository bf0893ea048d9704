"""Sessions in Google App Engine's datastore through NDB (appengine-python-standard).

The model keeps the original's name and fields (``VishnuSession`` with
``expires``, ``last_accessed``, ``data``); ``data`` now holds the JSON record
instead of a pickle, and ``version`` backs the compare-and-set, done in a
transaction.
"""
from vishnu.backend.client import _common

_model = None


def _ndb():
    from google.appengine.ext import ndb  # lazy: vishnu[gae]
    return ndb


def model():
    """The ``VishnuSession`` NDB model (defined on first use, so the SDK is only needed then)."""
    global _model
    if _model is None:
        ndb = _ndb()

        class VishnuSession(ndb.Model):
            expires = ndb.DateTimeProperty(required=False)
            last_accessed = ndb.DateTimeProperty(required=True)
            data = ndb.TextProperty(required=True)
            version = ndb.IntegerProperty(required=True, indexed=False)

        _model = VishnuSession
    return _model


def _entity(key, record, expires_at):
    import json
    parsed = json.loads(record)
    return model()(
        key=_ndb().Key(model(), key),
        expires=_common.to_datetime(expires_at),
        last_accessed=_common.to_datetime(parsed["last_access"]),
        data=record,
        version=parsed["version"],
    )


class Store(object):
    """The PythonStore protocol over NDB."""

    def load(self, key):
        entity = _ndb().Key(model(), key).get()
        if entity is None or _common.expired(entity.data):
            return None
        return entity.data

    def create(self, key, record, expires_at):
        ndb = _ndb()

        @ndb.transactional
        def txn():
            current = ndb.Key(model(), key).get()
            if current is not None and not _common.expired(current.data):
                return False
            _entity(key, record, expires_at).put()
            return True
        return txn()

    def save(self, key, record, expected_version, expires_at):
        ndb = _ndb()

        @ndb.transactional
        def txn():
            current = ndb.Key(model(), key).get()
            if current is None or _common.expired(current.data):
                return "missing"
            if current.version != expected_version:
                return "conflict"
            _entity(key, record, expires_at).put()
            return "saved"
        return txn()

    def delete(self, key):
        _ndb().Key(model(), key).delete()

    def touch(self, key, last_access, expires_at):
        ndb = _ndb()

        @ndb.transactional
        def txn():
            current = ndb.Key(model(), key).get()
            if current is None or _common.expired(current.data):
                return False
            data, expires = _common.touched(current.data, last_access, expires_at)
            _entity(key, data, expires).put()  # the indexed times as the record has them
            return True
        return txn()

    def delete_expired(self, now, dormant_for, limit):
        removed, done = delete_expired(dormant_for, limit, now_ms=now)
        return (removed, not done)


def delete_expired(dormant_for=86400, limit=500, now_ms=None):
    """Deletes sessions that expired, or were not used for ``dormant_for`` seconds, at ``now_ms``
    (the engine's clock; the system clock, read once, when not given), at most ``limit``.
    Returns ``(removed, done)``; ``done`` is True when nothing more is left.

    The index query only proposes: each candidate is deleted in a transaction of its own that
    re-reads it and spares it if a request refreshed it since the query."""
    now_ms = _common.now_ms() if now_ms is None else now_ms
    keys = _candidates(now_ms, now_ms - int(dormant_for) * 1000, limit + 1)
    removed = sum(1 for key in keys[:limit] if _delete_if_doomed(key, now_ms, dormant_for))
    return removed, len(keys) <= limit


def _candidates(now_ms, cutoff_ms, limit):
    """Keys of at most ``limit`` sessions that the indexes say expired by ``now_ms``, or were last
    accessed at ``cutoff_ms`` or before."""
    ndb = _ndb()
    m = model()
    query = m.query(ndb.OR(ndb.AND(m.expires <= _common.to_datetime(now_ms),
                                   m.expires != None),  # noqa: E711 (NDB syntax)
                           m.last_accessed <= _common.to_datetime(cutoff_ms)))
    return query.fetch(limit, keys_only=True)


def _delete_if_doomed(key, now_ms, dormant_for):
    """Deletes the session at ``key`` if it is still expired or dormant at ``now_ms``; True if it did."""
    ndb = _ndb()
    from google.appengine.api import datastore_errors

    @ndb.transactional
    def txn():
        entity = key.get()
        if entity is None or not _common.doomed(entity.data, now_ms, dormant_for):
            return False
        key.delete()
        return True
    try:
        return txn()
    except datastore_errors.TransactionFailedError:
        return False  # written to throughout the retries: in use, so not ours to delete
