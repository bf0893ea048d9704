"""Starlette and FastAPI sessions on the vishnu engine (ASGI).

Starlette's ``SessionMiddleware`` with the same signature, plus ``store``:

    from vishnu.starlette import SessionMiddleware

    app.add_middleware(SessionMiddleware, secret_key=SECRET_KEY, store="redis://localhost:6379/0")

``request.session`` works unchanged: a dict the app reads and changes. When
the request carries the session cookie, the session is loaded before the app
runs (awaited on the event loop; no thread is blocked on the store); at the
response, only the keys the request changed are handed to the engine, which
merges them into the stored session under compare-and-set, so concurrent
requests that change different keys both keep their change. The default
store, ``"cookie"``, keeps the whole session sealed in the cookie, as
Starlette does; any store URL of ``vishnu.backend.Url`` works.

Beyond Starlette's session: ``await request.session.cycle_id()`` (a new id
for the same data; call it at login) and ``await request.session.terminate()``
(end the session in the store and remove the cookie). A store failure answers
an empty 500 (logged once), never a traceback.
"""
import asyncio
import json
import logging
import time


from vishnu._framework import make_engine, record_changes
from vishnu._vishnu import SessionError, Superseded

__all__ = ["Session", "SessionMiddleware"]

log = logging.getLogger("vishnu")


#: One encoder for every value (json.dumps with options builds one per call).
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode


class Session(dict):
    """``request.session``: a dict that records whether it was accessed and
    modified, as Starlette's ``Session`` does."""

    accessed = False
    modified = False
    _begin = None
    _engine_session_ = None

    @property
    def _native(self):
        native = self._engine_session_
        if native is None:
            if self._begin is None:
                raise RuntimeError("this session is not served by vishnu.starlette.SessionMiddleware")
            native = self._engine_session_ = self._begin()
        return native

    def mark_accessed(self):
        self.accessed = True

    def mark_modified(self):
        self.accessed = True
        self.modified = True

    def __setitem__(self, key, value):
        self.mark_modified()
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self.mark_modified()
        super().__delitem__(key)

    def clear(self):
        self.mark_modified()
        super().clear()

    def pop(self, key, *args):
        if key in self:
            self.mark_modified()
        return super().pop(key, *args)

    def popitem(self):
        item = super().popitem()
        self.mark_modified()
        return item

    def setdefault(self, key, default=None):
        if key not in self:
            self.mark_modified()
        return super().setdefault(key, default)

    def update(self, *args, **kwargs):
        self.mark_modified()
        super().update(*args, **kwargs)

    def __ior__(self, other):
        self.mark_modified()
        return super().__ior__(other)

    async def cycle_id(self):
        """Gives the session a new id for the same data (call it at login,
        against session fixation); the old id stops working."""
        native = self._native
        self._used = True
        await _run(native.cycle_id, native.acycle_id)

    async def update_value(self, key, func):
        """Atomically replaces ``key``'s value with ``func(current value or
        None)`` and saves it at once, merged under compare-and-set: parallel
        requests that each add one to a counter all count (``session[key] =
        session.get(key, 0) + 1`` loses some). ``func`` may run more than once
        (on a conflict) and must have no side effects. Returns the new value.
        Raises ``vishnu.session.Superseded`` when a login cycled this
        request's id away meanwhile: nothing was saved. Not in Starlette's
        own session."""
        native = self._native
        self._used = True
        self.accessed = True
        text = await _run(native.update, native.aupdate, key,
                          lambda old: _dumps(func(None if old is None else json.loads(old))))
        value = json.loads(text)
        dict.__setitem__(self, key, value)
        self._original[key] = text  # saved: not a change for the end of the request
        return value

    async def terminate(self):
        """Ends the session in the store and removes the cookie."""
        native = self._native
        self._used = True
        await _run(native.terminate, native.aterminate)
        super().clear()
        self.mark_modified()
        self._original = {}


async def _run(blocking, awaitable, *args):
    """Awaits the engine's asyncio awaitable; under another event loop
    (trio), runs the blocking call in a worker thread instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(blocking, *args)
    return await awaitable(*args)


def _add_headers(message, vary, set_cookie):
    """Adds ``Vary: Cookie`` (merged into a Vary the app sent) and the
    Set-Cookie to an ``http.response.start`` message."""
    headers = message.setdefault("headers", [])
    if vary:
        for i, (name, value) in enumerate(headers):
            if name.lower() == b"vary":
                headers = list(headers)
                headers[i] = (name, value + b", Cookie")
                message["headers"] = headers
                break
        else:
            headers = list(headers) + [(b"vary", b"Cookie")]
            message["headers"] = headers
    if set_cookie:
        message["headers"] = list(headers) + [(b"set-cookie", set_cookie.encode("latin-1"))]


def _cookie_header(scope):
    values = [v.decode("latin-1") for k, v in scope["headers"] if k == b"cookie"]
    return "; ".join(values) if values else None


class SessionMiddleware(object):
    """Starlette's ``SessionMiddleware`` over the vishnu engine.

    The arguments are Starlette's (``max_age`` in seconds, None for a
    browser-session cookie; a ``max_age`` of 0 or less makes cookies that are
    never accepted back, as with Starlette) plus ``store``, a store URL
    (``"cookie"``, the default, ``"memory"``, ``"redis://…"``, …) or a
    ``vishnu.backend`` configuration, and ``fallback_secret_keys``, older
    keys whose cookies are still accepted and re-issued under ``secret_key``
    (key rotation). ``secret_key`` may be any length (vishnu derives its
    secret from it with HKDF); the same key and cookie name share sessions
    with the Flask and Django fronts and with Rust services on the same store.

    The store is opened when the middleware is built; if it cannot be, it is
    opened again by the first request that uses its session, and until then
    such requests answer 500.
    """

    def __init__(self, app, secret_key, session_cookie="session", max_age=14 * 24 * 60 * 60,
                 path="/", same_site="lax", https_only=False, domain=None, partitioned=False,
                 store="cookie", fallback_secret_keys=()):
        self.app = app
        self.session_cookie = session_cookie
        self.max_age = max_age
        self.path = path
        # A cookie with Max-Age <= 0 is dead on arrival: never read back.
        self._expired_on_arrival = max_age is not None and max_age <= 0
        self._timeout = None if max_age is None else (1 if self._expired_on_arrival else int(max_age))
        self._store = store
        self._secrets = (str(secret_key), [str(k) for k in fallback_secret_keys])
        self._engine = None
        try:
            self._engine_now()
        except SessionError as e:  # opened again when a request uses its session
            log.error("vishnu: the session store cannot be opened now: %s", e)
        self.security_flags = "httponly; samesite=" + same_site
        if https_only:  # Secure flag can be used with HTTPS only
            self.security_flags += "; secure"
        if domain is not None:
            self.security_flags += "; domain=%s" % domain
        if partitioned:
            self.security_flags += "; partitioned"

    def _engine_now(self):
        """The engine, built on first use (its store opened); raises the
        store's error while the store cannot be opened."""
        if self._engine is None:
            store = self._store
            if hasattr(store, "_shared_store"):  # a vishnu.backend configuration
                store = store._shared_store()
            secret, fallbacks = self._secrets
            self._engine = make_engine(secret, store=store, cookie_name=self.session_cookie,
                                       fallback_secrets=fallbacks, timeout=self._timeout,
                                       auto_save=True)
        return self._engine

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = None if self._expired_on_arrival else _cookie_header(scope)
        original = {}
        has_cookie = header is not None and self.session_cookie + "=" in header
        if has_cookie:
            try:
                native = self._engine_now().begin(header)
                original = await _run(native.entries, native.aentries)
            except SessionError as e:
                log.error("vishnu: the session could not be loaded, answering 500: %s", e)
                await _refuse(scope, send, 500)
                return
            begin = lambda: native  # noqa: E731
        else:
            # Begun on first use: a request without a cookie that never
            # changes its session never needs the store.
            begin = lambda: self._engine_now().begin(None)  # noqa: E731
        session = Session({key: json.loads(text) for key, text in original.items()})
        session._begin = begin
        session._original = original
        session._used = has_cookie  # a cookie the engine judges (refresh, renewal, re-issue)
        scope["session"] = session

        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            await self._save_after_websocket(scope, session)
            return

        failed = started = False

        async def send_wrapper(message):
            nonlocal failed, started
            if failed:
                return
            if message["type"] == "http.response.start":
                started = True
                try:
                    cookie = await self._finish(scope, session, message["status"])
                except Superseded:
                    log.info("vishnu: a write with a session id cycled away by another request: answering 409")
                    failed = True
                    await _refuse(scope, send, 409)
                    return
                except SessionError as e:
                    log.error("vishnu: the session could not be saved, answering 500: %s", e)
                    failed = True
                    await _refuse(scope, send, 500)
                    return
                vary, set_cookie = cookie
                if vary or set_cookie:
                    _add_headers(message, vary, set_cookie)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Superseded:  # from cycle_id() or terminate() in the app
            if started:
                raise
            log.info("vishnu: a write with a session id cycled away by another request: answering 409")
            await _refuse(scope, send, 409)

    async def _finish(self, scope, ours, status):
        """Saves the request's changes; returns (add Vary: Cookie, Set-Cookie value or None).
        ``ours`` is the session the middleware made; the app may have put
        another dict in the scope."""
        session = scope["session"]
        modified = getattr(session, "modified", True)
        if not (modified or ours._original or ours._used):
            # Nothing loaded, changed, or asked of the engine: it has nothing to do.
            return getattr(session, "accessed", True), None
        native = ours._native
        if modified:
            if session:
                record_changes(native, session.items(), ours._original, _dumps, json.loads)
            elif status < 500:  # as for any change, none from a failed request
                await _run(native.terminate, native.aterminate)
        parts = await _run(native.finish_cookie, native.afinish_cookie, status)
        vary = getattr(session, "accessed", True)
        if parts is None:
            return vary, None
        kind, value, expires = parts
        if kind == "remove":
            # Only a session the app emptied or ended loses its cookie, as
            # with Starlette: a cookie this app cannot read is left alone.
            if not modified:
                return vary, None
            return True, "%s=null; path=%s; expires=Thu, 01 Jan 1970 00:00:00 GMT; %s" % (
                self.session_cookie, self.path, self.security_flags)
        if expires is None:
            max_age = ""
        elif native.timeout() == self._timeout:
            max_age = "Max-Age=%d; " % self.max_age
        else:  # a session whose own timeout differs (set by another front)
            max_age = "Max-Age=%d; " % max(0, round(expires - time.time()))
        return True, "%s=%s; path=%s; %s%s" % (self.session_cookie, value, self.path, max_age,
                                               self.security_flags)

    async def _save_after_websocket(self, scope, ours):
        # A websocket cannot set a cookie once accepted: changes are saved
        # only for a session the store already holds (its cookie stays valid).
        session = scope["session"]
        if not getattr(session, "modified", False) or not ours._original:
            return
        try:
            native = ours._native
            if session:
                record_changes(native, session.items(), ours._original, _dumps, json.loads)
                await _run(native.save, native.asave)
            else:
                await _run(native.terminate, native.aterminate)
        except SessionError as e:
            log.error("vishnu: the websocket's session changes could not be saved: %s", e)


async def _refuse(scope, send, status):
    """An empty response with this status (a websocket is closed instead)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1011})
        return
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
