"""Google App Engine memcache (appengine-python-standard), namespace ``vishnu``."""
from vishnu.backend.config import Base


class Config(Base):
    """Sessions in App Engine's memcache service. Needs ``vishnu[gae]``."""

    def _open_store(self):
        from vishnu import _vishnu
        from vishnu.backend.client.google_app_engine_memcache import Store
        return _vishnu.Store.python(Store())
