"""The original's pythonmemcached configuration; runs on vishnu's memcached store (no pythonmemcached needed)."""
from vishnu.backend.config.memcache import DEFAULT_HOST, DEFAULT_PORT, _MemcacheConfig


class Config(_MemcacheConfig):
    """memcached at host:port."""
