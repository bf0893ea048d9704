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
            current.data, expires = _common.touched(current.data, last_access, expires_at)
            current.last_accessed = _common.to_datetime(last_access)
            current.expires = _common.to_datetime(expires)
            current.put()
            return True
        return txn()

    def delete_expired(self, now, dormant_for, limit):
        removed, more = delete_expired(dormant_for, limit, now_ms=now)
        return (removed, not more)


def delete_expired(dormant_for=86400, limit=500, now_ms=None):
    """Deletes sessions that expired, or were not used for ``dormant_for`` seconds, at most
    ``limit``. Returns ``(removed, done)``; ``done`` is True when nothing more is left."""
    ndb = _ndb()
    now_ms = _common.now_ms() if now_ms is None else now_ms
    now = _common.to_datetime(now_ms)
    cutoff = _common.to_datetime(now_ms - int(dormant_for) * 1000)
    m = model()
    query = m.query(ndb.OR(ndb.AND(m.expires <= now, m.expires != None),  # noqa: E711 (NDB syntax)
                           m.last_accessed <= cutoff))
    keys = query.fetch(limit + 1, keys_only=True)
    doomed = keys[:limit]
    ndb.delete_multi(doomed)
    return len(doomed), len(keys) <= limit
