"""Sessions and their configuration (the original's ``vishnu.session``).

Exceptions, all subclasses of :class:`SessionError`:

- :class:`StoreError`: the store failed (unreachable, timed out, corrupt data).
- :class:`SessionTerminated`: another request terminated the session; nothing was saved.
- :class:`Superseded`: another request (a login) cycled the session's id while
  this request still carried the old one; nothing was saved. The WSGI
  middleware answers such a request 409, without a cookie.
- :class:`Unsupported`: the operation needs a server-side store; with the
  cookie store (``Url("cookie")``) a user's sessions cannot be listed or revoked.
"""
import json
import math
import numbers
import threading

from vishnu import _vishnu
from vishnu._vishnu import SessionError, SessionTerminated, StoreError, Superseded, Unsupported

TIMEOUT_SESSION = "timeout_session"
SECRET_MIN_LEN = 32
ENCRYPT_KEY_MIN_LEN = 32
DEFAULT_COOKIE_NAME = "vishnu"
DEFAULT_PATH = "/"
#: The default of ``cycle_grace`` and ``renew_grace``, in seconds.
DEFAULT_GRACE = 10
#: The longest grace window accepted, in seconds.
MAX_GRACE = 3600
#: Kept for compatibility: the original's signature length in hex characters.
SIG_LENGTH = 128
#: Kept for compatibility: the original's session id length; ids are now 128 random bits.
SID_LENGTH = 32
EXPIRES_FORMAT = "%a, %d-%b-%Y %H:%M:%S GMT"
SAME_SITE_VALUES = ("Strict", "Lax", "None")

_MISSING = object()

__all__ = [
    "Config",
    "Session",
    "SessionError",
    "SessionTerminated",
    "StoreError",
    "Superseded",
    "Unsupported",
    "TIMEOUT_SESSION",
    "DEFAULT_COOKIE_NAME",
    "DEFAULT_PATH",
]


def _as_bytes(value):
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _check_timeout(timeout, name="timeout"):
    """The original's rule: int() of the value, non-negative; 0 means none."""
    if timeout is None:
        return None
    try:
        timeout = int(timeout)
    except ValueError:
        raise TypeError("%s must be a non-negative integer" % name)
    if timeout < 0:
        raise TypeError("%s must be a non-negative integer" % name)
    return timeout or None


def _check_renew_every(value):
    """None (no renewal) or a whole number of seconds, at least 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("renew_every must be a whole number of seconds or None, got %r" % (value,))
    if not math.isfinite(value) or value != int(value):
        raise ValueError("renew_every must be a whole number of seconds, got %r" % (value,))
    if value < 1:
        raise ValueError("renew_every must be at least 1 second, got %r" % (value,))
    return int(value)


def _check_grace(value, name):
    """A number of seconds from 0 to MAX_GRACE (fractions allowed)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError("%s must be a number of seconds, got %r" % (name, value))
    if not (math.isfinite(value) and 0 <= value <= MAX_GRACE):
        raise ValueError("%s must be from 0 to %d seconds, got %r" % (name, MAX_GRACE, value))
    return value


class Config(object):
    """Session configuration, validated as the original validated it.

    Arguments beyond the original's: ``same_site`` ("Strict", "Lax" or "None"),
    ``fallback_secrets`` and ``fallback_encrypt_keys`` (older keys still
    accepted, with cookies re-issued under the current ones), and
    ``absolute_timeout`` (seconds from creation that activity never extends),
    ``renew_every`` (give a used session a new id at most once per this many
    whole seconds; None, the default, never renews), ``cycle_grace`` (after
    ``cycle_id()`` or ``login()``, how long a request with the old id gets no
    cookie at all and has its writes refused with :class:`Superseded`; default
    10 seconds) and ``renew_grace`` (after a renewal, how long the old id is
    still served the session and sent the new id; default 10 seconds). Grace
    windows are 0 to 3600 seconds, fractions allowed. ``partitioned`` marks
    the cookie Partitioned (CHIPS) and requires ``secure``.
    The store connection is opened on first use, not here.
    """

    def __init__(self, secret, cookie_name=None, encrypt_key=None, secure=True, domain=None,
                 path=None, http_only=True, auto_save=False, timeout=None, backend=None,
                 same_site="Lax", fallback_secrets=(), fallback_encrypt_keys=(),
                 absolute_timeout=None, renew_every=None, cycle_grace=DEFAULT_GRACE,
                 renew_grace=DEFAULT_GRACE, partitioned=False):
        from vishnu.backend.config import Base

        if secret is None or len(secret) < SECRET_MIN_LEN:
            raise ValueError("Secret should be at least %s characters" % SECRET_MIN_LEN)
        self._secret = secret
        self._cookie_name = DEFAULT_COOKIE_NAME if cookie_name is None else cookie_name
        if encrypt_key is not None and len(encrypt_key) < ENCRYPT_KEY_MIN_LEN:
            raise ValueError("Encrypt key should be at least %s characters" % ENCRYPT_KEY_MIN_LEN)
        self._encrypt_key = encrypt_key
        for s in fallback_secrets:
            if len(s) < SECRET_MIN_LEN:
                raise ValueError("Fallback secrets should be at least %s characters" % SECRET_MIN_LEN)
        for k in fallback_encrypt_keys:
            if len(k) < ENCRYPT_KEY_MIN_LEN:
                raise ValueError("Fallback encrypt keys should be at least %s characters" % ENCRYPT_KEY_MIN_LEN)
        self._fallback_secrets = tuple(fallback_secrets)
        self._fallback_encrypt_keys = tuple(fallback_encrypt_keys)
        self._secure = secure
        self._domain = domain
        self._path = DEFAULT_PATH if path is None else path
        self._http_only = http_only
        self._auto_save = auto_save
        self._timeout = _check_timeout(timeout)
        self._absolute_timeout = _check_timeout(absolute_timeout, "absolute_timeout")
        self._renew_every = _check_renew_every(renew_every)
        self._cycle_grace = _check_grace(cycle_grace, "cycle_grace")
        self._renew_grace = _check_grace(renew_grace, "renew_grace")
        if same_site not in SAME_SITE_VALUES:
            raise ValueError("same_site must be one of %s" % ", ".join(SAME_SITE_VALUES))
        self._same_site = same_site
        if partitioned and not secure:
            raise ValueError("partitioned requires secure=True")
        self._partitioned = bool(partitioned)
        if backend is None or not isinstance(backend, Base):
            raise TypeError("unknown backend configuration received %s" % backend)
        self._backend = backend
        self._lock = threading.Lock()
        self._store = None
        self._engine = None
        # Tests set a _vishnu.ManualClock here, before first use, to move time forward.
        self._clock = None

    secret = property(lambda self: self._secret, doc="The signing secret.")
    cookie_name = property(lambda self: self._cookie_name, doc="The cookie name.")
    encrypt_key = property(lambda self: self._encrypt_key, doc="The encryption key, or None.")
    secure = property(lambda self: self._secure, doc="Whether the cookie is Secure.")
    domain = property(lambda self: self._domain, doc="The cookie Domain, or None.")
    path = property(lambda self: self._path, doc="The cookie Path.")
    http_only = property(lambda self: self._http_only, doc="Whether the cookie is HttpOnly.")
    auto_save = property(lambda self: self._auto_save, doc="Whether changes save without save().")
    backend = property(lambda self: self._backend, doc="The backend configuration.")
    same_site = property(lambda self: self._same_site, doc="The cookie SameSite attribute.")
    absolute_timeout = property(lambda self: self._absolute_timeout, doc="The absolute timeout in seconds, or None.")
    fallback_secrets = property(lambda self: self._fallback_secrets, doc="Older secrets still accepted.")
    renew_every = property(lambda self: self._renew_every, doc="The renewal period in seconds, or None.")
    cycle_grace = property(lambda self: self._cycle_grace, doc="The grace window after cycle_id() in seconds.")
    renew_grace = property(lambda self: self._renew_grace, doc="The grace window after a renewal in seconds.")
    partitioned = property(lambda self: self._partitioned, doc="Whether the cookie is Partitioned (CHIPS).")

    @property
    def timeout(self):
        """The default idle timeout of new sessions in seconds, or None."""
        return self._timeout

    @timeout.setter
    def timeout(self, value):
        # Changes the default for sessions started afterwards; a single
        # session's timeout is set with ``session.timeout = ...`` instead.
        with self._lock:
            self._timeout = _check_timeout(value)
            self._engine = None

    def _get_store(self):
        with self._lock:
            if self._store is None:
                self._store = self._backend._shared_store()
            return self._store

    def _get_engine(self):
        engine = self._engine
        if engine is not None:
            return engine
        store = self._get_store()
        with self._lock:
            if self._engine is None:
                self._engine = _vishnu.Engine(
                    secret=_as_bytes(self._secret),
                    store=store,
                    fallback_secrets=[_as_bytes(s) for s in self._fallback_secrets],
                    cookie_name=self._cookie_name,
                    encrypt_key=None if self._encrypt_key is None else _as_bytes(self._encrypt_key),
                    fallback_encrypt_keys=[_as_bytes(k) for k in self._fallback_encrypt_keys],
                    secure=bool(self._secure),
                    http_only=bool(self._http_only),
                    same_site=self._same_site,
                    domain=self._domain,
                    path=self._path,
                    auto_save=bool(self._auto_save),
                    timeout=self._timeout,
                    absolute_timeout=self._absolute_timeout,
                    renew_every=self._renew_every,
                    cycle_grace=float(self._cycle_grace),
                    renew_grace=float(self._renew_grace),
                    partitioned=self._partitioned,
                    clock=self._clock,
                )
            return self._engine


def _dumps(key, value):
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError("session value %r is not JSON-serializable: %s" % (key, e)) from None


def _check_user(user):
    if not isinstance(user, str):
        raise TypeError("user must be str, got %s" % type(user).__name__)
    return user


def _check_key(key):
    if not isinstance(key, str):
        raise TypeError("session keys must be str, got %s" % type(key).__name__)
    return key


class Session(object):
    """One request's session. Values are stored as JSON.

    The stored session is loaded on first use; ``session[key] = value`` is
    recorded and written by ``save()`` (or at the end of the request with
    ``auto_save``). ``save()`` never wipes data this request did not change.
    """

    def __init__(self, environ, config, _native=None):
        self._config = config
        if _native is None:
            _native = config._get_engine().begin(environ.get("HTTP_COOKIE"))
        self._native = _native

    # -- values ---------------------------------------------------------------
    def get(self, key, default=None):
        """The value under ``key``, or ``default`` (None) when missing."""
        text = self._native.get(_check_key(key))
        return default if text is None else json.loads(text)

    def __getitem__(self, key):
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key, value):
        self._native.set(_check_key(key), _dumps(key, value))

    def __delitem__(self, key):
        if self._native.remove(_check_key(key)) is None:
            raise KeyError(key)

    def __contains__(self, key):
        return isinstance(key, str) and self._native.contains(key)

    def pop(self, key, default=_MISSING):
        """Removes ``key`` and returns its value (or ``default``; KeyError without one)."""
        text = self._native.remove(_check_key(key))
        if text is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return json.loads(text)

    def keys(self):
        """The keys that have values, sorted."""
        return self._native.keys()

    def clear(self):
        """Removes every value (written by the next save)."""
        self._native.clear()

    def update(self, key, fn):
        """Atomically sets ``key`` to ``fn(current value or None)`` and saves at once.

        ``fn`` may run more than once when concurrent requests change the
        session; it must not have side effects. Returns the committed value.
        """
        _check_key(key)

        def apply(old):
            return _dumps(key, fn(None if old is None else json.loads(old)))

        return json.loads(self._native.update(key, apply))

    # -- lifecycle -------------------------------------------------------------
    def save(self, sync_only=False):
        """Writes this request's changes now (``sync_only`` is accepted and ignored)."""
        self._native.save()

    def terminate(self):
        """Deletes the session server-side and sends a cookie that removes it."""
        self._native.terminate()

    def cycle_id(self):
        """Gives the session a new id (call after login); the old id stops working. Saves.

        For the configured ``cycle_grace`` a request that still carries the old
        id gets no cookie at all and its writes raise :class:`Superseded`.
        Raises :class:`Superseded` when another request cycled the id first.
        """
        self._native.cycle_id()

    # -- identity ----------------------------------------------------------------
    def login(self, user):
        """Binds the session to ``user`` (a user id, str) and cycles its id: what a login handler calls. Saves."""
        self._native.login(_check_user(user))

    def set_user(self, user):
        """Binds the session to ``user`` (written by the next save); call ``cycle_id()`` too, or use ``login()``."""
        self._native.set_user(_check_user(user))

    @property
    def user(self):
        """The user the session is bound to, or None. Loads the session."""
        return self._native.user()

    def set_label(self, label):
        """Sets the label shown when the user's sessions are listed (say, the User-Agent). Written by the next save."""
        if not isinstance(label, str):
            raise TypeError("label must be str, got %s" % type(label).__name__)
        self._native.set_label(label)

    @property
    def handle(self):
        """The session's handle: opaque, stable across id changes, never an id.
        None until the session is bound to a user and saved."""
        return self._native.handle()

    def sessions(self):
        """The sessions of this session's user, most recently used first: dicts with
        ``handle``, ``created_at``, ``last_access``, ``expires_at`` (ms since the epoch),
        ``label`` and ``current`` (this session). Empty when no user is bound.
        Raises :class:`Unsupported` with the cookie store."""
        return self._native.sessions()

    def revoke(self, handle):
        """Ends this session's user's session with ``handle``; False when the user has
        none with it. Raises :class:`Unsupported` with the cookie store."""
        if not isinstance(handle, str):
            raise TypeError("handle must be str, got %s" % type(handle).__name__)
        return self._native.revoke(handle)

    def revoke_others(self):
        """Ends every other session of this session's user ("log out my other devices");
        returns how many. Raises :class:`Unsupported` with the cookie store."""
        return self._native.revoke_others()

    def revoke_all(self):
        """Ends every session of this session's user, this one included, and removes
        this request's cookie ("log out everywhere"); returns how many.
        Raises :class:`Unsupported` with the cookie store."""
        return self._native.revoke_all()

    @property
    def timeout(self):
        """This session's idle timeout in seconds, or None for a browser-session cookie."""
        return self._native.timeout()

    @timeout.setter
    def timeout(self, value):
        # Unlike the original, this changes this session only, never the shared Config.
        if value == TIMEOUT_SESSION or value is None:
            self._native.set_timeout(None)
        else:
            seconds = _check_timeout(value)
            self._native.set_timeout(seconds)

    @property
    def started(self):
        """Whether the session exists in the store."""
        return self._native.is_stored()

    @property
    def needs_save(self):
        """Whether there are unsaved changes."""
        return self._native.has_pending_changes()

    @property
    def auto_save(self):
        """Whether changes are saved at the end of the request without save()."""
        return self._config.auto_save

    def header(self):
        """The Set-Cookie value this session needs now, or None."""
        return self._native.header()
