"""Sessions in Google App Engine's memcache (appengine-python-standard), namespace ``vishnu``.

Records are JSON text; the version check uses memcache's compare-and-set
(``gets``/``cas``); every write carries the record's expiry, so memcache
forgets sessions by itself.
"""
from vishnu.backend.client import _common

NAMESPACE = "vishnu"


class Store(object):
    """The PythonStore protocol over ``google.appengine.api.memcache``."""

    def __init__(self):
        from google.appengine.api import memcache  # lazy: vishnu[gae]
        self._memcache = memcache

    def load(self, key):
        value = self._memcache.get(key, namespace=NAMESPACE)
        if value is None or _common.expired(value):
            return None
        return value

    def create(self, key, record, expires_at):
        return bool(self._memcache.add(key, record, time=_common.memcache_time(expires_at), namespace=NAMESPACE))

    def save(self, key, record, expected_version, expires_at):
        client = self._memcache.Client()
        current = client.gets(key, namespace=NAMESPACE)
        if current is None or _common.expired(current):
            return "missing"
        if _common.version(current) != expected_version:
            return "conflict"
        ok = client.cas(key, record, time=_common.memcache_time(expires_at), namespace=NAMESPACE)
        return "saved" if ok else "conflict"

    def delete(self, key):
        self._memcache.delete(key, namespace=NAMESPACE)

    def touch(self, key, last_access, expires_at):
        client = self._memcache.Client()
        for _ in range(5):
            current = client.gets(key, namespace=NAMESPACE)
            if current is None or _common.expired(current):
                return False
            updated, expires = _common.touched(current, last_access, expires_at)
            if client.cas(key, updated, time=_common.memcache_time(expires), namespace=NAMESPACE):
                return True
        return True  # others kept writing: the session is alive and was just refreshed by them

    def delete_expired(self, now, dormant_for, limit):
        return (0, False)  # memcache expires entries itself
