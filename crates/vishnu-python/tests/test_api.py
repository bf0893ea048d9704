"""The public API keeps vishnu 3.1.1's names, signatures, defaults and errors."""
import threading

import pytest

import vishnu
import vishnu.backend
import vishnu.backend.config
import vishnu.backend.config.memcache
import vishnu.backend.config.redis
import vishnu.util
from vishnu.backend import (GoogleAppEngineMemcache, GoogleAppEngineNDB, GoogleCloudDatastore,
                            Memory, PyMemcache, Pylibmc, PythonMemcached, Redis, RedisCluster, SQLite)
from vishnu.middleware import SessionMiddleware
from vishnu.session import (DEFAULT_COOKIE_NAME, DEFAULT_PATH, TIMEOUT_SESSION, Config, Session)

from conftest import SECRET


def test_constants_match_the_original():
    assert TIMEOUT_SESSION == "timeout_session"
    assert DEFAULT_COOKIE_NAME == "vishnu"
    assert DEFAULT_PATH == "/"
    assert vishnu.backend.config.DEFAULT_REDIS_HOST == "localhost"
    assert vishnu.backend.config.DEFAULT_REDIS_PORT == 6379
    assert vishnu.backend.config.memcache.DEFAULT_HOST == "localhost"
    assert vishnu.backend.config.memcache.DEFAULT_PORT == 11211
    assert vishnu.backend.config.redis.DEFAULT_DB == 0


def test_config_defaults_and_read_only_properties():
    c = Config(secret=SECRET, backend=Memory())
    assert (c.secret, c.cookie_name, c.encrypt_key, c.secure, c.domain, c.path, c.http_only,
            c.auto_save, c.timeout) == (SECRET, "vishnu", None, True, None, "/", True, False, None)
    assert c.same_site == "Lax"
    with pytest.raises(AttributeError):
        c.secret = "x" * 40


def test_config_errors_in_the_originals_order():
    with pytest.raises(ValueError, match="Secret should be at least 32 characters"):
        Config(secret="short")  # before the backend check
    with pytest.raises(ValueError, match="Secret"):
        Config(secret=None, backend=Memory())
    with pytest.raises(ValueError, match="Encrypt key should be at least 32 characters"):
        Config(secret=SECRET, encrypt_key="short", backend=Memory())
    for bad in ("abc", -1, [1]):
        with pytest.raises(TypeError):
            Config(secret=SECRET, timeout=bad, backend=Memory())
    assert Config(secret=SECRET, timeout="10", backend=Memory()).timeout == 10
    assert Config(secret=SECRET, timeout=1.5, backend=Memory()).timeout == 1
    with pytest.raises(TypeError, match="unknown backend configuration received"):
        Config(secret=SECRET)
    with pytest.raises(TypeError, match="unknown backend configuration received"):
        Config(secret=SECRET, backend=object())
    with pytest.raises(ValueError, match="same_site"):
        Config(secret=SECRET, backend=Memory(), same_site="lax-ish")


def test_backend_argument_checks():
    assert (Redis().host, Redis().port, Redis().db) == ("localhost", 6379, 0)
    for cls in (PyMemcache, PythonMemcached, Pylibmc):
        assert (cls().host, cls().port) == ("localhost", 11211)
        with pytest.raises(TypeError, match="host must be a string"):
            cls(host=1)
        with pytest.raises(TypeError, match="port must be a non-negative integer"):
            cls(port=-1)
        with pytest.raises(TypeError, match="port"):
            cls(port="11211")
    with pytest.raises(TypeError, match="db must be a non-negative integer"):
        Redis(db=-1)
    with pytest.raises(TypeError):
        RedisCluster([])
    assert RedisCluster("a:1,b:2").nodes == ("a:1", "b:2")
    assert SQLite("/tmp/x.db").url == "sqlite:///tmp/x.db"


def test_google_backends_build_without_their_sdks():
    for backend in (GoogleAppEngineMemcache(), GoogleAppEngineNDB(), GoogleCloudDatastore()):
        Config(secret=SECRET, backend=backend)


def test_a_wrong_store_is_a_clear_error_on_first_use():
    c = Config(secret=SECRET, backend=vishnu.backend.Url("nosuch://x"))
    with pytest.raises(vishnu.session.StoreError, match="unknown store"):
        c._get_engine()


def test_get_session_is_none_outside_requests_in_every_thread():
    assert vishnu.get_session() is None
    seen = []
    t = threading.Thread(target=lambda: seen.append(vishnu.get_session()))
    t.start()
    t.join()
    assert seen == [None]


def test_util_names_have_defaults():
    import inspect
    for name in ("gae_ndb_delete_expired_sessions", "google_app_engine_ndb_delete_expired_sessions",
                 "google_cloud_datastore_delete_expired_sessions"):
        sig = inspect.signature(getattr(vishnu.util, name))
        assert sig.parameters["dormant_for"].default == 86400
        assert sig.parameters["limit"].default == 500


def test_middleware_keeps_app_and_config_attributes():
    c = Config(secret=SECRET, backend=Memory())
    app = lambda e, s: []  # noqa: E731
    mw = SessionMiddleware(app, c)
    assert mw.app is app and mw.config is c


def test_session_can_be_built_from_an_environ():
    c = Config(secret=SECRET, backend=Memory())
    s = Session({}, c)
    assert s.get("x") is None and not s.started and not s.needs_save and s.header() is None
    s["x"] = {"a": [1, 2]}
    assert s.needs_save and s.get("x") == {"a": [1, 2]}
    s.save()
    assert s.started and s.header().startswith("vishnu=")


def test_integers_come_back_exactly_or_are_refused():
    s = Session({}, Config(secret=SECRET, backend=Memory()))
    exact = {"min": -2**63, "max_signed": 2**63 - 1, "max": 2**64 - 1, "zero": 0,
             "digits": "123456789012345678901234567890", "float": 1e30, "text": 'a "1e400" \\ 99999999999999999999'}
    for key, value in exact.items():
        s[key] = value
        assert s[key] == value and type(s[key]) is type(value), key
    # Beyond 64 bits the engine would round the int to a float: refused, not rounded.
    for value in (2**64, -2**63 - 1, 2**70, [1, {"deep": 10**30}]):
        with pytest.raises(ValueError, match="does not fit in 64 bits"):
            s["big"] = value
        assert "big" not in s


def test_partitioned_cookies_need_secure_and_mark_both_cookies():
    from conftest import Caller, config, routes
    with pytest.raises(ValueError, match="partitioned"):
        Config(secret=SECRET, backend=Memory(), secure=False, partitioned=True)
    assert Config(secret=SECRET, backend=Memory()).partitioned is False
    caller = Caller(SessionMiddleware(routes, config(secure=True, partitioned=True, auto_save=True)))
    _, _, issued = caller("/set/user/ada")
    assert issued and issued[0].endswith("; Partitioned"), issued
    _, _, removed = caller("/terminate")
    assert removed and "Max-Age=0" in removed[0] and removed[0].endswith("; Partitioned"), removed
