"""Backend configurations (the original's ``vishnu.backend.config``).

A configuration only names a store; the connection is opened on first use.
"""
import abc
import threading

_open_lock = threading.Lock()

DEFAULT_REDIS_HOST = "localhost"
DEFAULT_REDIS_PORT = 6379


class Base(object):
    """The base of every backend configuration."""

    __metaclass__ = abc.ABCMeta

    def client_from_config(self, sid):
        """Kept for compatibility with the original; stores are opened by the engine."""
        raise NotImplementedError("vishnu 4 opens stores in its engine; see _open_store()")

    def _url(self):
        raise NotImplementedError

    def _shared_store(self):
        """The store this backend names, opened once and shared by every Config using it."""
        with _open_lock:
            store = self.__dict__.get("_vishnu_store")
            if store is None:
                store = self._open_store()
                self.__dict__["_vishnu_store"] = store
            return store

    def _open_store(self):
        """Opens this backend's store (called once per Config, on first use)."""
        from vishnu import _vishnu
        return _vishnu.Store.open(self._url())


def _check_host(host):
    if not isinstance(host, str):
        raise TypeError("host must be a string")


def _check_non_negative_int(value, name):
    if not isinstance(value, int) or value < 0:
        raise TypeError("%s must be a non-negative integer" % name)
