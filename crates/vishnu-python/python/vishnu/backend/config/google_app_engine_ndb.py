"""Google App Engine NDB (appengine-python-standard), model ``VishnuSession``."""
from vishnu.backend.config import Base


class Config(Base):
    """Sessions in App Engine's datastore through NDB. Needs ``vishnu[gae]``."""

    def _open_store(self):
        from vishnu import _vishnu
        from vishnu.backend.client.google_app_engine_ndb import Store
        return _vishnu.Store.python(Store())
