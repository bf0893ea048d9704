"""Flask sessions on the vishnu engine: one line to switch, the app unchanged.

    import vishnu.flask

    app.session_interface = vishnu.flask.SessionInterface()          # the store: app.config["VISHNU_STORE"], else "cookie"
    app.session_interface = vishnu.flask.SessionInterface("redis://localhost:6379/0")
    vishnu.flask.Session(app)                                        # Flask-Session style; init_app(app) too

``flask.session`` stays what it was: a dict whose values are whatever Flask's
tagged JSON holds (tuples, bytes, datetimes, UUIDs, Markup). The store is
loaded on first access to the session, and only the keys a request changed
are written, merged by the engine under compare-and-set: two concurrent
requests that change different keys both keep their change.

Flask's settings are honoured: ``SECRET_KEY`` (any length; the vishnu secret
is derived from it with HKDF) and ``SECRET_KEY_FALLBACKS``, every
``SESSION_COOKIE_*`` setting, ``SESSION_REFRESH_EACH_REQUEST``,
``PERMANENT_SESSION_LIFETIME`` and ``session.permanent`` (a permanent session
lives that long after its last use; any other one gets a browser-session
cookie), and ``Vary: Cookie`` whenever the session was accessed. Without a
secret key the session is Flask's null session.

Differences from Flask's cookie session, all on purpose: changes made by a
request that ends with a 5xx are not saved; a session emptied by the app is
ended in the store (not just forgotten by the browser). With
``SESSION_REFRESH_EACH_REQUEST`` (Flask's default) a request that carries the
cookie of a session it never touches still reads the store once, to know
whether the session is permanent and its cookie is due again; set it to False
to spare that read.

Added: ``flask.session.cycle_id()`` gives the session a new id (call it at
login, against session fixation). A request whose session id another request
cycled away (a login, in any front sharing the session) is answered 409
without a cookie, its changes not saved.
"""
import json
import logging
import threading
from datetime import datetime, timezone

from flask.json.tag import TaggedJSONSerializer
from flask.sessions import SessionInterface as _FlaskSessionInterface
from flask.sessions import SessionMixin, session_json_serializer

from vishnu._framework import make_engine, record_changes
from vishnu._vishnu import Superseded

__all__ = ["Session", "SessionInterface", "VishnuSession"]

_MISSING = object()

log = logging.getLogger("vishnu")


_encode_ascii = json.encoder.encode_basestring_ascii  # json.dumps of a str, in C

# The tags of Flask's own serializer: with only these, a plain value carries no tag.
_DEFAULT_TAGS = tuple(type(tag) for tag in TaggedJSONSerializer().order)


class _Codec(object):
    """One value to and from Flask's tagged JSON (``serializer``), with a
    shortcut for the plain values most sessions hold: ints, booleans, None
    and ASCII strings carry no tag, so any JSON text of them is the same
    value to Flask and to the engine, and the standard library's C codec
    writes and reads it directly. Only for a ``TaggedJSONSerializer`` with
    Flask's own tags (a tag an app registers could claim such a value)."""

    def __init__(self, serializer):
        self._dumps, self._loads = serializer.dumps, serializer.loads
        plain = (type(serializer) is TaggedJSONSerializer
                 and tuple(type(tag) for tag in serializer.order) == _DEFAULT_TAGS)
        if not plain:
            self.dumps, self.loads = self._dumps, self._loads

    def dumps(self, value):
        kind = type(value)
        if kind is int:
            return int.__repr__(value)  # what json.dumps writes
        if kind is str and value.isascii():
            return _encode_ascii(value)
        if kind is bool:
            return "true" if value else "false"
        if value is None:
            return "null"
        return self._dumps(value)

    def loads(self, text):
        if text.isascii() and (text.isdigit() or (text[:1] == "-" and text[1:].isdigit())):
            return int(text)
        if text[:1] == '"' or text == "true" or text == "false" or text == "null":
            return json.loads(text)
        return self._loads(text)


def _cookie_value(request, name):
    """The request's cookie ``name``, as ``request.cookies.get(name)`` gives
    it, without parsing every cookie when the header holds one plain value
    for it (what vishnu's cookies are); anything else goes to werkzeug."""
    header = request.environ.get("HTTP_COOKIE")
    if not header:
        return None
    key = name + "="
    at = header.find(key)
    if at < 0:
        return None
    before = header[:at].rstrip(" ")
    if (not before or before[-1] == ";") and header.find(key, at + 1) < 0:
        end = header.find(";", at)
        value = (header[at + len(key):] if end < 0 else header[at + len(key):end]).strip()
        if value and not any(c in value for c in '",\\ '):
            return value
    return request.cookies.get(name) or None


class VishnuSession(dict, SessionMixin):
    """The session object behind ``flask.session``: a dict loaded from the
    store on first access, tracking ``accessed`` and ``modified`` as Flask's
    own session does."""

    #: Whether the session was read or written in this request.
    accessed = False
    #: Whether the session was changed in this request; set it to True after
    #: changing a mutable value in place, as with Flask's own session.
    modified = False

    def __init__(self, begin, serializer, had_cookie):
        super().__init__()
        self._begin = begin
        self._engine_session = None
        self._serializer = serializer
        self._had_cookie = had_cookie
        self._loaded = False
        self._original = {}
        self._finished = False

    @property
    def _native(self):
        # Begun on first use: a request that never uses its session never
        # needs the store (not even opened, should it be down).
        native = self._engine_session
        if native is None:
            native = self._engine_session = self._begin()
        return native

    def _load(self, access=True):
        if access:
            self.accessed = True
        if self._loaded:
            return
        if self._had_cookie:
            texts = self._native.entries()  # a store failure leaves the session unloaded
            loads = self._serializer.loads
            for key, text in texts.items():
                dict.__setitem__(self, key, loads(text))
            self._original = texts
        self._loaded = True

    def _changed(self):
        self.accessed = True
        self.modified = True

    # Reads: load first.
    def __getitem__(self, key):
        self._load()
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        self._load()
        return dict.get(self, key, default)

    def __contains__(self, key):
        self._load()
        return dict.__contains__(self, key)

    def __iter__(self):
        self._load()
        return dict.__iter__(self)

    def __len__(self):
        self._load()
        return dict.__len__(self)

    def __eq__(self, other):
        self._load()
        return dict.__eq__(self, other)

    def __ne__(self, other):
        self._load()
        return dict.__ne__(self, other)

    __hash__ = None

    def __repr__(self):
        self._load()
        return "<%s %s>" % (type(self).__name__, dict.__repr__(self))

    def __reversed__(self):
        self._load()
        return dict.__reversed__(self)

    def __or__(self, other):
        self._load()
        return dict(self.items()) | other

    def __ror__(self, other):
        self._load()
        return other | dict(self.items())

    def keys(self):
        self._load()
        return dict.keys(self)

    def values(self):
        self._load()
        return dict.values(self)

    def items(self):
        self._load()
        return dict.items(self)

    def copy(self):
        self._load()
        return dict(dict.items(self))

    # Writes: load first (so that emptiness and the original values are
    # known), then mark, as Werkzeug's CallbackDict does.
    def __setitem__(self, key, value):
        self._load()
        self._changed()
        dict.__setitem__(self, key, value)

    def __delitem__(self, key):
        self._load()
        self._changed()
        dict.__delitem__(self, key)

    def setdefault(self, key, default=None):
        self._load()
        if not dict.__contains__(self, key):
            self._changed()
        return dict.setdefault(self, key, default)

    def pop(self, key, default=_MISSING):
        self._load()
        if dict.__contains__(self, key):
            self._changed()
        if default is _MISSING:
            return dict.pop(self, key)
        return dict.pop(self, key, default)

    def popitem(self):
        self._load()
        item = dict.popitem(self)
        self._changed()
        return item

    def update(self, *args, **kwargs):
        self._load()
        self._changed()
        dict.update(self, *args, **kwargs)

    def __ior__(self, other):
        self.update(other)
        return self

    def clear(self):
        self._load()
        self._changed()
        dict.clear(self)

    def cycle_id(self):
        """Gives the session a new id for the same data, at once (call it at
        login, against session fixation): the old id stops working and the
        response carries the new cookie. Not in Flask's own session."""
        self._load()
        self._native.cycle_id()
        self.modified = True

    def update_value(self, key, func):
        """Atomically replaces ``key``'s value with ``func(current value or
        None)`` and saves it at once, merged under compare-and-set: parallel
        requests that each add one to a counter all count (``session[key] =
        session.get(key, 0) + 1`` loses some). ``func`` may run more than once
        (on a conflict) and must have no side effects. Returns the new value.
        Raises ``vishnu.session.Superseded`` when a login cycled this
        request's id away meanwhile: nothing was saved. Not in Flask's own
        session."""
        self._load()
        dumps, loads = self._serializer.dumps, self._serializer.loads
        text = self._native.update(key, lambda old: dumps(func(None if old is None else loads(old))))
        value = loads(text)
        dict.__setitem__(self, key, value)
        self._original[key] = text  # saved: not a change for the end of the request
        return value

    def _record_changes(self):
        """Hands the engine one set or delete per key this request changed."""
        record_changes(self._native, dict.items(self), self._original,
                       self._serializer.dumps, self._serializer.loads)


class SessionInterface(_FlaskSessionInterface):
    """A Flask session interface over the vishnu engine.

    ``store`` is a store URL (``"memory"``, ``"cookie"``, ``"redis://…"``, … as
    for ``vishnu.backend.Url``) or a ``vishnu.backend`` configuration
    (``Redis(...)``, a ``PythonStore``, …); None (the
    default) takes ``app.config["VISHNU_STORE"]``, else ``"cookie"``: the whole
    session sealed in the cookie, as with Flask's own default.

    One engine per configuration (secret keys, store, cookie name) is built on
    first use and reused; the other cookie settings are read per request, so
    a change to ``app.config`` applies at once.
    """

    #: Each key's value is stored as Flask's tagged JSON.
    serializer = session_json_serializer
    session_class = VishnuSession

    def __init__(self, store=None):
        self.store = store
        self._engines = {}
        self._lock = threading.Lock()
        self._codec = None

    def _codec_of(self, serializer):
        # Rebuilt when the serializer, or the tags registered on it, change.
        codec = self._codec
        key = (serializer, len(getattr(serializer, "order", ())))
        if codec is None or codec[0] != key:
            codec = self._codec = (key, _Codec(serializer))
        return codec[1]

    def _engine(self, app):
        secret = app.secret_key
        if not secret:
            return None
        fallbacks = tuple(app.config.get("SECRET_KEY_FALLBACKS") or ())
        store = self.store
        if store is None:
            store = app.config.get("VISHNU_STORE") or "cookie"
        name = self.get_cookie_name(app)
        key = (secret, fallbacks, store, name)
        engine = self._engines.get(key)
        if engine is None:
            with self._lock:
                engine = self._engines.get(key)
                if engine is None:
                    # New sessions are not permanent: a browser-session cookie
                    # until the app sets session.permanent.
                    if hasattr(store, "_shared_store"):  # a vishnu.backend configuration
                        store = store._shared_store()
                    engine = make_engine(secret, fallback_secrets=fallbacks, store=store,
                                         cookie_name=name, timeout=None, auto_save=True)
                    self._engines[key] = engine
        return engine

    def open_session(self, app, request):
        """The request's session, not loaded yet; None (Flask's null session) without a secret key."""
        if not app.secret_key:
            return None
        value = _cookie_value(request, self.get_cookie_name(app))
        return self.session_class(lambda: self._engine(app).begin_value(value),
                                  self._codec_of(self.serializer), value is not None)

    def save_session(self, app, session, response):
        """Records the request's changes, lets the engine save them, and
        writes the cookie the engine asks for with Flask's cookie settings."""
        if session._finished:  # Flask finalizes again after an error in the first try
            return
        session._finished = True
        cookie_written = self._finish(app, session, response)
        if cookie_written or (cookie_written is not None and session.accessed):
            response.vary.add("Cookie")  # once: each access of response.vary parses the header

    def _finish(self, app, session, response):
        """save_session's work: True when it set or removed the cookie, False
        when not, None when the request was answered 409 (no Vary then)."""
        refresh = app.config["SESSION_REFRESH_EACH_REQUEST"]
        if not (session._loaded or session.modified or (refresh and session._had_cookie)):
            return False  # the session was not used: the engine has nothing to do
        native = session._native
        try:
            if session.modified:
                session._load()  # the app may set modified without touching the session
                if dict.__len__(session):
                    session._record_changes()
                    lifetime = max(1, int(app.permanent_session_lifetime.total_seconds()))
                    timeout = lifetime if dict.get(session, "_permanent") else None
                    if native.timeout() != timeout:
                        native.set_timeout(timeout)
                elif response.status_code < 500:  # as for any change, none from a failed request
                    native.terminate()
            elif refresh and session._had_cookie and not session._loaded:
                # Whether the cookie is due again depends on session.permanent.
                session._load(access=False)
            parts = native.finish_cookie(response.status_code)
        except Superseded:
            # Another request (a login) gave the session a new id: this
            # request's old id grants nothing. 409, and no cookie at all.
            log.info("vishnu: a write with a session id cycled away by another request: answering 409")
            response.status_code = 409
            response.set_data(b"")
            return None

        if parts is None:
            # The engine's cookie stands; Flask sends it again when the
            # session was modified, or is permanent and refreshed each request.
            if not (session._loaded and dict.__len__(session)):
                return False
            permanent = dict.get(session, "_permanent")
            if not (session.modified or (refresh and permanent)):
                return False
            value = native.cookie_value()
            if value is None:
                return False
            expires = datetime.now(timezone.utc) + app.permanent_session_lifetime if permanent else None
        elif parts[0] == "remove":
            # Only a session the app emptied or ended loses its cookie: a
            # cookie this app cannot read (say, signed with a retired key)
            # is left alone, as Flask leaves it.
            if not session.modified:
                return False
            response.delete_cookie(self.get_cookie_name(app), **self._cookie_settings(app))
            return True
        else:
            _, value, expires = parts
        response.set_cookie(self.get_cookie_name(app), value, expires=expires, **self._cookie_settings(app))
        return True

    def _cookie_settings(self, app):
        return dict(domain=self.get_cookie_domain(app), path=self.get_cookie_path(app),
                    secure=self.get_cookie_secure(app), partitioned=self.get_cookie_partitioned(app),
                    samesite=self.get_cookie_samesite(app), httponly=self.get_cookie_httponly(app))


class Session(object):
    """Flask-Session style setup: ``Session(app)`` or ``Session().init_app(app)``
    installs a :class:`SessionInterface` (``store`` as there)."""

    def __init__(self, app=None, store=None):
        self.store = store
        self.app = app
        if app is not None:
            self.init_app(app)

    def init_app(self, app):
        """Makes vishnu the session interface of ``app``."""
        app.session_interface = SessionInterface(self.store)
