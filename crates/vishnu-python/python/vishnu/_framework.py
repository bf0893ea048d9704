"""What the framework fronts (Flask, Django, Starlette) share: stores opened
once per URL, framework secrets turned into vishnu secrets, and engines built
from a framework's settings.

A framework's secret may be any length (its own checks warn about weak
ones); vishnu derives a 32-byte secret from it with HKDF-SHA256, so the same
``SECRET_KEY`` gives the same sessions in every front and process. A Rust
service shares those sessions with ``Config::builder().framework_secret(SECRET_KEY)``.
"""
import threading

from vishnu import _vishnu

__all__ = ["derive_secret", "make_engine", "open_store", "record_changes"]

_stores = {}
_stores_lock = threading.Lock()


def open_store(url):
    """The store a URL names, opened once per process and URL and then reused.

    ``url`` may also be an already opened ``_vishnu.Store``. A failed open is
    not cached: the next call tries again (a store that was down may be back).
    """
    if isinstance(url, _vishnu.Store):
        return url
    if not isinstance(url, str):
        raise TypeError("the store must be a URL string such as 'memory' or 'redis://…', got %r" % (url,))
    store = _stores.get(url)
    if store is not None:
        return store
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _vishnu.Store.open(url)
            _stores[url] = store
        return store


def _as_bytes(secret):
    if isinstance(secret, str):
        return secret.encode("utf-8")
    if isinstance(secret, (bytes, bytearray, memoryview)):
        return bytes(secret)
    raise TypeError("a secret key must be str or bytes, got %s" % type(secret).__name__)


def derive_secret(secret):
    """A framework's secret key (str or bytes, any length but not empty) as a
    32-byte vishnu secret (HKDF-SHA256; in Rust, ``ConfigBuilder::framework_secret``)."""
    return _vishnu.derive_secret(_as_bytes(secret))


def make_engine(secret, *, fallback_secrets=(), store="memory", cookie_name="session",
                secure=False, http_only=True, same_site="Lax", domain=None, path="/",
                partitioned=False, timeout=None, auto_save=True, clock=None):
    """An engine for a framework front: derived secrets, the store opened once
    per URL, and the framework's cookie settings.

    ``timeout`` is the session lifetime in seconds (None: a browser-session
    cookie whose record the store keeps for the engine's default). ``same_site``
    accepts any case and None (no attribute is not supported by the engine:
    None means "Lax", the browsers' default). With ``auto_save`` (the default)
    ``finish_cookie``/``afinish_cookie`` save the request's changes, so a
    front only records them (``set``/``delete``/``clear``) and finishes.
    """
    same_site = "Lax" if same_site is None else str(same_site).capitalize()
    kwargs = dict(
        secret=derive_secret(secret),
        fallback_secrets=[derive_secret(s) for s in fallback_secrets or ()],
        store=open_store(store),
        cookie_name=cookie_name,
        secure=bool(secure),
        http_only=bool(http_only),
        same_site=same_site,
        domain=domain or None,
        path=path or "/",
        partitioned=bool(partitioned),
        timeout=None if timeout is None else max(1, int(timeout)),
        auto_save=bool(auto_save),
    )
    if clock is not None:
        kwargs["clock"] = clock
    return _vishnu.Engine(**kwargs)


def _may_differ_in_form(text):
    """Whether the engine's JSON text may be written differently by Python's
    encoder: numbers with a fraction or exponent, escapes, non-ASCII text."""
    return "." in text or "e" in text or "E" in text or "\\" in text or not text.isascii()


def record_changes(native, items, original, dumps, loads):
    """Hands the engine one ``set`` or ``delete`` per key a request changed.

    ``items`` are the session's (key, value) pairs now, ``original`` the
    engine's JSON texts as loaded, ``dumps``/``loads`` the front's codec for
    one value. The engine's text may differ in form from ``dumps``' (floats,
    escapes): an unchanged value is one that round-trips to the same text,
    and that costs a decode and an encode only for texts that can differ so.
    """
    present = set()
    for key, value in items:
        if not isinstance(key, str):
            raise TypeError("session keys must be str, got %s" % type(key).__name__)
        present.add(key)
        text = dumps(value)
        old = original.get(key)
        if old is None or (text != old and (not _may_differ_in_form(old) or text != dumps(loads(old)))):
            native.set(key, text)
    for key in original:
        if key not in present:
            native.delete(key)
