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

A user's sessions: ``session.login(user_id)`` binds the session to a user
(and cycles its id); ``session.sessions()``, ``session.revoke(handle)``,
``session.revoke_others()`` and ``session.revoke_all()`` list and end them, as
do ``vishnu.sessions_of(config, user)``, ``vishnu.revoke(config, user, handle)``
and ``vishnu.revoke_all(config, user)`` outside a request.
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


def _check_str(name, value):
    if not isinstance(value, str):
        raise TypeError("%s must be str, got %s" % (name, type(value).__name__))
    return value


def sessions_of(config, user):
    """``user``'s live sessions in ``config``'s store, most recently used first:
    dicts with ``handle``, ``created_at``, ``last_access``, ``expires_at`` (ms since
    the epoch), ``label`` and ``current`` (always False here; see ``Session.sessions()``).

    Raises ``vishnu.session.Unsupported`` with the cookie store.
    """
    return config._get_engine().sessions_of(_check_str("user", user))


def revoke(config, user, handle):
    """Ends ``user``'s session with ``handle``; False when the user has none with it
    (a handle of another user's session is refused the same way).

    Raises ``vishnu.session.Unsupported`` with the cookie store.
    """
    return config._get_engine().revoke(_check_str("user", user), _check_str("handle", handle))


def revoke_all(config, user):
    """Ends every session of ``user`` ("log out everywhere"); returns how many.

    Raises ``vishnu.session.Unsupported`` with the cookie store.
    """
    return config._get_engine().revoke_all(_check_str("user", user))


def set_spin_wait(microseconds):
    """How long a synchronous store call (WSGI, Flask, Django) polls for the
    store's reply before its thread sleeps; 0 never polls. The default is 200
    (``VISHNU_SPIN_WAIT_US`` in the environment sets it at start).

    On many virtual machines waking a sleeping thread costs more than a
    loopback or same-zone round trip to Redis; polling saves that wake-up and
    costs CPU time for at most the window. After 8 waits in a row that
    outlast the window (a slower store), calls sleep at once, and one call in
    32 polls again to notice when replies come fast again. A process that
    also awaits the engine from asyncio never polls (its I/O thread sees the
    replies first).
    """
    from vishnu import _vishnu

    _vishnu.set_spin_wait(microseconds)


__all__ = ["get_session", "sessions_of", "revoke", "revoke_all", "set_spin_wait",
           "__version__", "__version_info__"]
