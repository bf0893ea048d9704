"""The original's redis-py configuration; runs on vishnu's Redis store (no redis-py needed)."""
from vishnu.backend.config import Base, _check_host, _check_non_negative_int
from vishnu.backend.config.redis import DEFAULT_DB, DEFAULT_HOST, DEFAULT_PORT


class Config(Base):
    """Redis at ``host:port``, database ``db``."""

    def __init__(self, host=DEFAULT_HOST, port=DEFAULT_PORT, db=DEFAULT_DB):
        _check_host(host)
        _check_non_negative_int(port, "port")
        _check_non_negative_int(db, "db")
        self._host = host
        self._port = port
        self._db = db

    host = property(lambda self: self._host, doc="The Redis host.")
    port = property(lambda self: self._port, doc="The Redis port.")
    db = property(lambda self: self._db, doc="The Redis database number.")

    def _url(self):
        return "redis://%s:%d/%d" % (self._host, self._port, self._db)
