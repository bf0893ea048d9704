"""Django sessions on the vishnu engine: one setting to switch, the app unchanged.

    # settings.py
    SESSION_ENGINE = "vishnu.django"
    VISHNU_STORE = "redis://localhost:6379/0"     # default "memory"

Settings, read whenever a ``SessionStore`` is made (so ``override_settings``
works in tests):

- ``VISHNU_STORE``: the store URL (default ``"memory"``; ``"redis://…"``,
  ``"memcache://…"``, ``"sqlite://…"``, ``"postgres://…"``, ``"mysql://…"``),
  opened once per process and URL and then reused.
- ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS``: the signing secret, derived with
  HKDF; a session key signed under a fallback still loads.
- ``SESSION_COOKIE_AGE``, ``SESSION_EXPIRE_AT_BROWSER_CLOSE`` and
  ``set_expiry()``: every save gives the session ``get_expiry_age()`` seconds
  in the store, as Django's database backend stores ``expire_date``.

Django's ``SessionMiddleware`` still writes the cookie; the session key is the
signed session id. What Django's own backends do not do:

- A save writes only the keys this request changed, merged by the engine
  under compare-and-set: two requests that change different keys of one
  session both keep theirs (Django ticket 21608).
- ``cycle_key()`` (login) is one atomic id change; the old key never again
  reads or writes the session. A request that still carries it during the
  engine's cycle grace (10 s; one that was in flight during the login) does
  not log the browser out of its new session: it sees no session, leaves the
  cookie alone, and a write is refused (its save raises ``UpdateError`` and
  its ``cycle_key()`` ``SessionInterrupted``: Django answers 400, without a
  cookie).
- A session deleted by another request is never brought back by a save.

``manage.py clearsessions`` removes expired sessions (``clear_expired``; the
SQL stores need it, Redis and memcached expire sessions themselves). Values
are what Django's ``SESSION_SERIALIZER`` (JSON by default) makes of them: the
serializer must produce JSON. The async API (``aget``, ``asave``,
``acycle_key``, …) waits for the store without blocking the event loop;
``aclear_expired`` runs the cleanup in a thread. With ``VISHNU_STORE =
"cookie"`` the whole session travels sealed in the session key, and, as with
Django's signed-cookie backend, deleting it cannot revoke a copy.
"""
import contextlib
import json
import threading

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted

from vishnu import _framework
from vishnu._vishnu import SessionTerminated, Superseded

__all__ = ["SessionStore"]

#: ``clear_expired`` removes expired sessions only, never an idle live one:
#: no session is "dormant" before its own expiry.
NEVER_DORMANT = 2**62
#: How many records one cleanup call removes at most.
CLEANUP_BATCH = 500

_engines = {}
_engines_lock = threading.Lock()


def _settings():
    """The settings an engine is built from, as a hashable key."""
    return (
        settings.SECRET_KEY,
        tuple(settings.SECRET_KEY_FALLBACKS),
        getattr(settings, "VISHNU_STORE", "memory"),
        settings.SESSION_COOKIE_AGE,
    )


def _engine_for(config):
    """One engine per settings (its write locks are shared by the process's requests)."""
    engine = _engines.get(config)
    if engine is None:
        with _engines_lock:
            engine = _engines.get(config)
            if engine is None:
                secret, fallbacks, store, age = config
                # SessionMiddleware decides when to save, and writes the cookie itself.
                engine = _framework.make_engine(
                    secret, fallback_secrets=fallbacks, store=store, timeout=age, auto_save=False)
                _engines[config] = engine
    return engine


def _canonical(value):
    """A JSON value as text that is equal for equal values: what a save compares."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class SessionStore(SessionBase):
    """A Django session backed by a vishnu engine session.

    ``_session_cache`` is Django's dict; the engine session that loaded it
    (``_native``) is told, at save time, which keys differ from what was
    loaded (``_stored``), and merges that delta into what the store holds.
    """

    def __init__(self, session_key=None):
        super().__init__(session_key)
        self._config = _settings()
        self._native = None
        self._native_key = None
        self._stored = {}
        self._cleared = False
        self._superseded = False

    @property
    def _engine(self):
        return _engine_for(self._config)

    @classmethod
    def clear_expired(cls):
        engine = _engine_for(_settings())
        more = True
        while more:
            _, more = engine.delete_expired(NEVER_DORMANT, CLEANUP_BATCH)

    def clear(self):
        super().clear()
        self._cleared = True

    def is_empty(self):
        # SessionMiddleware deletes the cookie of an empty session; a request
        # whose id a login cycled away must leave the browser's new cookie alone.
        return super().is_empty() and not self._superseded

    # -- without I/O: what the methods below share -------------------------------

    def _begin(self, session_key):
        return self._engine.begin_value(session_key)

    def _loaded(self, native, entries):
        """What ``load()`` returns, from the engine session that loaded it.

        When it fills the cache (not an explicit re-read) the engine session
        is kept, also when nothing is stored: a save through it then starts a
        new session, or is refused when its id was cycled away meanwhile.
        """
        data = _values(entries)
        if native is None or not native.is_stored():
            self._session_key = None
            # The engine sends no cookie at all for an id that another
            # request (a login) cycled away within its grace window.
            self._superseded = native is not None and native.header() is None
        if not hasattr(self, "_session_cache"):
            self._adopt(native, data)
        return data

    def _adopt(self, native, data):
        self._native = native
        self._stored = {key: _canonical(v) for key, v in data.items()}
        if native is not None and native.is_stored():
            self._session_key = native.cookie_value()
        self._native_key = self.session_key

    def _current(self):
        """The kept engine session for ``session_key``, or None when it must be loaded."""
        if self._native is not None and self._native_key == self.session_key:
            return self._native
        return None

    def _for_create(self):
        """The engine session a new session is saved through: the kept one if
        it holds no stored session (the engine then draws a new id, or refuses
        a cycled-away one), else a fresh one."""
        native = self._native
        if native is not None and not native.is_stored():
            return native
        return self._begin(None)

    def _stage(self, native, data, age, fresh):
        """Records on ``native`` what differs from what was loaded, and the
        expiry; returns what the store will hold. No I/O."""
        values = json.loads(self.serializer().dumps(data))
        if self._cleared:
            native.clear()
        stored = {} if (fresh or self._cleared) else self._stored
        staged = {}
        for key, value in values.items():
            text = staged[key] = _canonical(value)
            if stored.get(key) != text:
                native.set(key, text)
        for key in stored.keys() - values.keys():
            native.delete(key)
        native.set_timeout(max(1, age))
        return staged

    def _committed(self, native, staged):
        self._native = native
        self._stored = staged
        self._cleared = False
        self._session_key = native.cookie_value()
        self._native_key = self.session_key

    # -- sync ---------------------------------------------------------------------

    def load(self):
        if self.session_key is None:
            return self._loaded(None, {})
        native = self._begin(self.session_key)
        return self._loaded(native, native.entries())

    def exists(self, session_key):
        if not session_key:
            return False
        native = self._begin(session_key)
        native.entries()
        return native.is_stored()

    def create(self):
        data, age = self._session, self.get_expiry_age()
        with _refused_as_update_error():
            self._write(self._for_create(), data, age, fresh=True)
        self.modified = True

    def save(self, must_create=False):
        data, age = self._session, self.get_expiry_age()
        if self.session_key is None or must_create:
            return self.create()
        native = self._current() or self._attach()
        if not native.is_stored():
            raise UpdateError
        with _refused_as_update_error():
            self._write(native, data, age, fresh=False)

    def cycle_key(self):
        data, age = self._session, self.get_expiry_age()
        native = None if self.session_key is None else (self._current() or self._attach())
        with _interrupted_when_refused():
            if native is None or not native.is_stored():
                return self.create()
            try:
                self._write(native, data, age, fresh=False, write=native.cycle_id)
            except SessionTerminated:
                # Ended by another request meanwhile: as with Django's own
                # backends, the data goes on in a new session.
                return self.create()
        self.modified = True

    def delete(self, session_key=None):
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        native = self._current() if session_key == self.session_key else None
        try:
            (native or self._begin(session_key)).terminate()
        except Superseded:
            pass  # a cycled-away id names no session any more

    def _attach(self):
        native = self._begin(self.session_key)
        self._adopt(native, _values(native.entries()))
        return native

    def update_value(self, key, func):
        """Atomically replaces ``key``'s value with ``func(current value or
        None)`` and saves it at once, merged under compare-and-set: parallel
        requests that each add one to a counter all count. ``func`` may run
        more than once (on a conflict) and must have no side effects. Returns
        the new value. A session the store does not hold yet is created (and
        its cookie set by ``SessionMiddleware``). Raises
        ``vishnu.session.Superseded`` when a login cycled this request's key
        away meanwhile: nothing was saved.
        """
        native = self._for_update()
        text = native.update(key, _json_func(func))
        return self._updated(native, key, text)

    async def aupdate_value(self, key, func):
        """``update_value`` without blocking the event loop."""
        native = self._current()
        if native is None and self.session_key is not None:
            native = await self._aattach()
        native = self._for_update(native)
        text = await native.aupdate(key, _json_func(func))
        return self._updated(native, key, text)

    def _for_update(self, native=None):
        native = native or self._current()
        if native is None and self.session_key is not None:
            native = self._attach()
        if not hasattr(self, "_session_cache"):
            self._session_cache = _values(self._stored)
        return native if native is not None else self._for_create()

    def _updated(self, native, key, text):
        value = json.loads(text)
        self._session_cache[key] = value
        self._stored[key] = _canonical(value)
        self.accessed = True
        key_now = native.cookie_value()
        if key_now != self.session_key:
            # A new session (or one renewed): SessionMiddleware sends its cookie.
            self._native = native
            self._session_key = key_now
            self._native_key = key_now
            self.modified = True
        return value

    def _write(self, native, data, age, fresh, write=None):
        staged = self._stage(native, data, age, fresh)
        (write or native.save)()
        self._committed(native, staged)
        if age <= 0:
            # Already expired: Django's backends store it expired, and a load then finds nothing.
            native.terminate()

    # -- async: the same, without blocking the event loop ----------------------------

    async def aload(self):
        if self.session_key is None:
            return self._loaded(None, {})
        native = self._begin(self.session_key)
        return self._loaded(native, await native.aentries())

    async def aexists(self, session_key):
        if not session_key:
            return False
        native = self._begin(session_key)
        await native.aentries()
        return native.is_stored()

    async def acreate(self):
        data, age = await self._aget_session(), await self.aget_expiry_age()
        with _refused_as_update_error():
            await self._awrite(self._for_create(), data, age, fresh=True)
        self.modified = True

    async def asave(self, must_create=False):
        data, age = await self._aget_session(), await self.aget_expiry_age()
        if self.session_key is None or must_create:
            return await self.acreate()
        native = self._current() or await self._aattach()
        if not native.is_stored():
            raise UpdateError
        with _refused_as_update_error():
            await self._awrite(native, data, age, fresh=False)

    async def acycle_key(self):
        data, age = await self._aget_session(), await self.aget_expiry_age()
        native = None if self.session_key is None else (self._current() or await self._aattach())
        with _interrupted_when_refused():
            if native is None or not native.is_stored():
                return await self.acreate()
            try:
                await self._awrite(native, data, age, fresh=False, write=native.acycle_id)
            except SessionTerminated:
                return await self.acreate()
        self.modified = True

    async def adelete(self, session_key=None):
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        native = self._current() if session_key == self.session_key else None
        try:
            await (native or self._begin(session_key)).aterminate()
        except Superseded:
            pass

    async def _aattach(self):
        native = self._begin(self.session_key)
        self._adopt(native, _values(await native.aentries()))
        return native

    async def _awrite(self, native, data, age, fresh, write=None):
        staged = self._stage(native, data, age, fresh)
        await (write or native.asave)()
        self._committed(native, staged)
        if age <= 0:
            await native.aterminate()


def _json_func(func):
    """``func`` over values as the engine's update over JSON texts."""
    def update(old):
        return _canonical(func(None if old is None else json.loads(old)))
    return update


def _values(entries):
    """The engine's JSON texts as values."""
    return {key: json.loads(text) for key, text in entries.items()}


@contextlib.contextmanager
def _refused_as_update_error():
    """The engine refusing a save becomes Django's ``UpdateError``, which
    ``SessionMiddleware`` answers 400 without a cookie: the session ended in
    another request, or this request's id was cycled away (a login)."""
    try:
        yield
    except (SessionTerminated, Superseded):
        raise UpdateError from None


@contextlib.contextmanager
def _interrupted_when_refused():
    """A ``cycle_key()`` the engine refuses (this request's id was cycled away
    by another request, a login) is Django's ``SessionInterrupted``: a 400,
    as ``SessionMiddleware`` answers a refused save, not a 500."""
    try:
        yield
    except (Superseded, UpdateError):
        raise SessionInterrupted(
            "The request's session was changed by a concurrent request (a login, "
            "for example) before the request completed."
        ) from None
