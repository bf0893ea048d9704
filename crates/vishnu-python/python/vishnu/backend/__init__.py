"""Backend shortcuts (the original's ``vishnu.backend``), plus vishnu 4's own stores."""
from vishnu.backend.config import Base, _check_host, _check_non_negative_int
from vishnu.backend.config.google_app_engine_memcache import Config as GoogleAppEngineMemcache
from vishnu.backend.config.google_app_engine_ndb import Config as GoogleAppEngineNDB
from vishnu.backend.config.google_cloud_datastore import Config as GoogleCloudDatastore
from vishnu.backend.config.memcache.pylibmc import Config as Pylibmc
from vishnu.backend.config.memcache.pymemcache import Config as PyMemcache
from vishnu.backend.config.memcache.pythonmemcached import Config as PythonMemcached
from vishnu.backend.config.redis.redis_py import Config as Redis

__all__ = [
    "Base", "Cookie", "GoogleAppEngineMemcache", "GoogleAppEngineNDB", "GoogleCloudDatastore",
    "Memory", "MySQL", "Postgres", "PythonStore", "PyMemcache", "PythonMemcached", "Pylibmc",
    "Redis", "RedisCluster", "SQLite", "Url",
]


class Url(Base):
    """Any store by URL: ``memory``, ``cookie``, ``redis://…``, ``memcache://…``, ``sqlite://…``, …"""

    def __init__(self, url):
        if not isinstance(url, str):
            raise TypeError("url must be a string")
        self._url_value = url

    url = property(lambda self: self._url_value, doc="The store URL.")

    def _url(self):
        return self._url_value


class Memory(Url):
    """An in-process store: for development, tests and single-process servers."""

    def __init__(self):
        Url.__init__(self, "memory")


class Cookie(Url):
    """The whole session in the encrypted, signed cookie; no server state.

    terminate() cannot revoke a copied cookie before it expires.
    """

    def __init__(self):
        Url.__init__(self, "cookie")


class SQLite(Url):
    """SQLite at ``path`` (created, with its table, if missing)."""

    def __init__(self, path):
        if not isinstance(path, str):
            raise TypeError("path must be a string")
        Url.__init__(self, path if path.startswith("sqlite:") else "sqlite://" + path)


class Postgres(Url):
    """PostgreSQL at ``url`` (``postgres://user:password@host:port/db``)."""


class MySQL(Url):
    """MySQL or MariaDB at ``url`` (``mysql://user:password@host:port/db``)."""


class RedisCluster(Url):
    """A Redis Cluster: ``nodes`` is a list of ``"host:port"`` strings (or one comma-separated string)."""

    def __init__(self, nodes):
        if isinstance(nodes, str):
            nodes = [n for n in nodes.split(",") if n]
        nodes = list(nodes)
        if not nodes or not all(isinstance(n, str) for n in nodes):
            raise TypeError("nodes must be a non-empty list of 'host:port' strings")
        self._nodes = tuple(nodes)
        Url.__init__(self, "redis+cluster://" + ",".join(nodes))

    nodes = property(lambda self: self._nodes, doc="The cluster's seed nodes.")


class PythonStore(Base):
    """A store written in Python. Subclass it and implement, over JSON text records:

    - ``load(key) -> str | None``
    - ``create(key, record_json, expires_at_ms) -> bool`` (insert if absent)
    - ``save(key, record_json, expected_version, expires_at_ms) -> "saved" | "conflict" | "missing"``
      (write only if the stored record's ``version`` equals ``expected_version``)
    - ``delete(key) -> None``
    - ``touch(key, last_access_ms, expires_at_ms) -> bool`` (update those two fields; never create)
    - ``delete_expired(now_ms, dormant_for_s, limit) -> (removed, more)``

    Records are JSON objects with ``data``, ``created_at``, ``last_access``,
    ``expires_at`` (ms since the epoch) and ``version``. Methods run on a
    worker thread; they must be thread-safe.
    """

    def _open_store(self):
        from vishnu import _vishnu
        return _vishnu.Store.python(self)
