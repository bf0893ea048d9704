"""memcached backend configurations. All three client names run on vishnu's memcached store."""
from vishnu.backend.config import Base, _check_host, _check_non_negative_int

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 11211


class _MemcacheConfig(Base):
    def __init__(self, host=DEFAULT_HOST, port=DEFAULT_PORT):
        _check_host(host)
        _check_non_negative_int(port, "port")
        self._host = host
        self._port = port

    host = property(lambda self: self._host, doc="The memcached host.")
    port = property(lambda self: self._port, doc="The memcached port.")

    def _url(self):
        return "memcache://%s:%d" % (self._host, self._port)
