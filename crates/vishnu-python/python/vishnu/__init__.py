"""vishnu: web sessions done right, on a Rust engine.

A drop-in replacement for vishnu 3.1.1 (WSGI): the same modules, names and
configuration, with a signed (optionally AES-256-GCM encrypted) cookie that
carries only a random session id, and the data, as JSON, in a store.

    from vishnu.session import Config
    from vishnu.middleware import SessionMiddleware
    from vishnu.backend import Redis

    app = SessionMiddleware(app, Config(secret=SECRET, backend=Redis()))

    def handler():
        session = vishnu.get_session()
        session["user"] = "ada"
        session.save()
"""
import contextvars

__version_info__ = (4, 0, 0)
__version__ = "4.0.0"

_current = contextvars.ContextVar("vishnu_session", default=None)


def get_session():
    """The current request's session, or None outside a request.

    Safe with threads and with contextvars-based async code; cleared at the
    end of every request.
    """
    return _current.get()


__all__ = ["get_session", "__version__", "__version_info__"]
