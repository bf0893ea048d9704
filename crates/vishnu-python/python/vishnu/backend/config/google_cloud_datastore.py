"""Google Cloud Datastore (google-cloud-datastore), kind ``VishnuSession``."""
from vishnu.backend.config import Base


class Config(Base):
    """Sessions in Cloud Datastore. Needs ``vishnu[datastore]``."""

    def client_from_config(self, sid):
        """The original's per-session client for ``sid`` (see ``Client``)."""
        from vishnu.backend.client.google_cloud_datastore import Client
        return Client(sid)

    def _open_store(self):
        from vishnu import _vishnu
        from vishnu.backend.client.google_cloud_datastore import Store
        return _vishnu.Store.python(Store())
