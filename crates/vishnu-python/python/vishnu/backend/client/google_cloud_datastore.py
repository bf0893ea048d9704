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


class Client(object):
    """The original's per-session client (``Config().client_from_config(sid)``): one record,
    under the store key ``sid``, read and written whole, in the store's own record format.

    Kept so that code written against vishnu 3.1.1 (maintenance scripts, tests) still runs.
    The engine does not use it: sessions go through ``Store`` with compare-and-set. ``load()``
    returns exactly True or False; ``save()`` writes the values, ``expires`` and
    ``last_accessed`` (naive UTC datetimes, as the original's); ``clear()`` forgets the values
    and deletes the record.
    """

    def __init__(self, sid):
        if not isinstance(sid, str) or not sid:
            raise TypeError("sid must be a non-empty string")
        self._sid = sid
        self._reset()

    def _reset(self):
        self._loaded = False
        self._expires = None
        self._last_accessed = None
        self._data = {}
        self._record = None

    sid = property(lambda self: self._sid, doc="The store key this client reads and writes.")

    @property
    def expires(self):
        """When the session expires (naive UTC datetime), or None."""
        return self._expires

    @expires.setter
    def expires(self, value):
        self._expires = value

    @property
    def last_accessed(self):
        """When the session was last used (naive UTC datetime), or None."""
        return self._last_accessed

    @last_accessed.setter
    def last_accessed(self, value):
        self._last_accessed = value

    def get(self, key):
        self._last_accessed = _utcnow()
        return self._data.get(key)

    def __setitem__(self, key, value):
        self._last_accessed = _utcnow()
        self._data[key] = value

    def load(self):
        """Reads the record; True if there is a live one, else False."""
        import json
        data = Store().load(self._sid)
        if data is None:
            return False
        record = json.loads(data)
        self._record = record
        self._data = dict(record.get("data", {}))
        self._expires = _common.to_datetime(record["expires_at"])
        self._last_accessed = _common.to_datetime(record["last_access"])
        self._loaded = True
        return True

    def save(self, sync_only=False):
        """Writes the record (``sync_only`` is accepted for compatibility; the
        record is always written whole). Without ``expires`` it lives 30 days."""
        import json
        now = _common.now_ms()
        record = dict(self._record or {"v": 1, "created_at": now, "version": 0})
        record["data"] = self._data
        record["last_access"] = _to_ms(self._last_accessed) if self._last_accessed else now
        record["expires_at"] = (_to_ms(self._expires) if self._expires
                                else now + _common.THIRTY_DAYS * 1000)
        record["version"] = int(record.get("version", 0)) + 1
        self._record = record
        c = client()
        text = json.dumps(record, separators=(",", ":"))
        with c.transaction():
            _put(c, self._sid, text, record["expires_at"])

    def clear(self):
        """Forgets the values and deletes the record."""
        self._reset()
        Store().delete(self._sid)


def _utcnow():
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _to_ms(dt):
    import datetime
    return int((dt - datetime.datetime(1970, 1, 1)).total_seconds() * 1000)
