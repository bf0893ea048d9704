"""vishnu.django: Django's sessions on the engine (SESSION_ENGINE = "vishnu.django").

Django's own session tests run against it in scripts/frameworks/django.sh;
these cover what they do not: concurrent requests, a real app through
Django's test Client, clearsessions, the async API and store failures.
"""
import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import django  # noqa: E402  (installed by scripts/test.sh; never skipped)

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        SECRET_KEY="a django test secret (any length will do)",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        INSTALLED_APPS=["django.contrib.sessions"],
        DATABASES={},
        SESSION_ENGINE="vishnu.django",
        VISHNU_STORE="memory",
        USE_TZ=True,
    )
    django.setup()

from django.contrib.sessions.backends.base import UpdateError  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from conftest import free_port, require_env  # noqa: E402
from vishnu.django import SessionStore  # noqa: E402


# -- a small app: what views do with request.session ------------------------------------

def set_value(request, key, value):
    request.session[key] = value
    return HttpResponse("set")


def get_value(request, key):
    return JsonResponse({"value": request.session.get(key)})


def remove_value(request, key):
    del request.session[key]
    return HttpResponse("removed")


def login(request, user):
    # What django.contrib.auth.login does with the session: a new key, then the user.
    request.session.cycle_key()
    request.session["user"] = user
    return HttpResponse("welcome")


def logout(request):
    request.session.flush()
    return HttpResponse("bye")


def increment(request):
    return HttpResponse(str(request.session.update_value("n", lambda n: (n or 0) + 1)))


urlpatterns = [
    path("set/<str:key>/<str:value>", set_value),
    path("get/<str:key>", get_value),
    path("remove/<str:key>", remove_value),
    path("login/<str:user>", login),
    path("logout", logout),
    path("incr", increment),
]


# -- fixtures --------------------------------------------------------------------------

@pytest.fixture(params=["memory", "redis"])
def store(request):
    """Each test on the memory store and on the Redis server scripts/test.sh starts."""
    url = "memory" if request.param == "memory" else require_env("VISHNU_REDIS_URL")
    with override_settings(VISHNU_STORE=url):
        yield url


@pytest.fixture
def client(store):
    return Client()


def session_cookie(client):
    morsel = client.cookies.get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel is not None and morsel.value else None


def value_of(client, key):
    return client.get("/get/" + key).json()["value"]


# -- concurrency -----------------------------------------------------------------------

def saved_session(**values):
    s = SessionStore()
    s.update(values)
    s.save()
    return s.session_key


def test_concurrent_requests_changing_different_keys_both_persist(store):
    # Django ticket 21608: its db and cache backends write the whole dict, so
    # the second save below would put "a" back to 0. Both loads happen before
    # either save, as in two overlapping requests.
    key = saved_session(a=0, b=0, gone="x")
    first, second = SessionStore(key), SessionStore(key)
    assert first["a"] == 0 and second["b"] == 0
    first["a"] = 1
    del first["gone"]
    second["b"] = 2
    first.save()
    second.save()
    assert dict(SessionStore(key).items()) == {"a": 1, "b": 2}


def test_simultaneous_requests_each_setting_a_key_all_persist(client):
    client.get("/set/start/0")
    cookie = session_cookie(client)

    def request(i):
        c = Client()
        c.cookies[settings.SESSION_COOKIE_NAME] = cookie
        return c.get("/set/k%d/%d" % (i, i)).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(request, range(16))) == [200] * 16
    data = dict(SessionStore(cookie).items())
    assert data == dict(start="0", **{"k%d" % i: str(i) for i in range(16)})


def test_update_value_counts_every_one_of_parallel_increments(client):
    # A read-modify-write of one key (n += 1) by overlapping requests loses
    # increments with any dict save; update_value is atomic in the store.
    assert client.get("/incr").content == b"1"
    assert session_cookie(client), "the first update_value creates the session and its cookie"
    cookie = session_cookie(client)

    def request(_):
        c = Client()
        c.cookies[settings.SESSION_COOKIE_NAME] = cookie
        return c.get("/incr").status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(request, range(40))) == [200] * 40
    assert client.get("/incr").content == b"42"
    assert SessionStore(cookie)["n"] == 42


def test_update_value_keeps_the_requests_other_changes_for_the_save(store):
    s = SessionStore(saved_session(n=1, other="a"))
    s["other"] = "b"
    assert s.update_value("n", lambda n: n * 10) == 10
    assert s["n"] == 10
    s.save()
    assert dict(SessionStore(s.session_key).items()) == {"n": 10, "other": "b"}


def test_aupdate_value_is_the_same_without_blocking(store):
    key = saved_session(n=1)

    async def run():
        s = SessionStore(key)
        return await s.aupdate_value("n", lambda n: n + 1)

    assert asyncio.run(run()) == 2
    assert SessionStore(key)["n"] == 2


def test_a_key_changed_in_place_is_saved(store):
    # Django's dict holds mutable values: a save compares values, not assignments.
    key = saved_session(cart=["apple"])
    s = SessionStore(key)
    s["cart"].append("pear")
    s.modified = True
    s.save()
    assert SessionStore(key)["cart"] == ["apple", "pear"]


def test_a_save_does_not_resurrect_a_session_deleted_meanwhile(store):
    key = saved_session(a=1)
    mine = SessionStore(key)
    mine["a"] = 2
    SessionStore(key).delete()
    with pytest.raises(UpdateError):
        mine.save()
    assert not SessionStore().exists(key)


# -- a Django app through its test Client -------------------------------------------------

def test_values_persist_across_requests(client):
    assert client.get("/set/colour/blue").status_code == 200
    key = session_cookie(client)
    assert key and SessionStore(key)["colour"] == "blue"
    assert value_of(client, "colour") == "blue"


def test_login_cycles_the_key_and_the_old_key_grants_nothing(client):
    client.get("/set/cart/apple")
    before = session_cookie(client)
    assert client.get("/login/ada").status_code == 200
    after = session_cookie(client)
    assert after and after != before
    assert value_of(client, "user") == "ada"
    assert value_of(client, "cart") == "apple", "the data moves with the session"
    stale = Client()
    stale.cookies[settings.SESSION_COOKIE_NAME] = before
    assert value_of(stale, "user") is None


def test_a_write_with_a_key_cycled_away_by_a_login_is_refused_without_a_cookie(client):
    # A request that was in flight during the login must not log the browser
    # out again: SessionMiddleware answers its UpdateError with 400 and no cookie.
    client.get("/set/cart/apple")
    before = session_cookie(client)
    client.get("/login/ada")
    stale = Client(raise_request_exception=False)
    stale.cookies[settings.SESSION_COOKIE_NAME] = before
    response = stale.get("/set/cart/pear")
    assert response.status_code == 400
    assert settings.SESSION_COOKIE_NAME not in response.cookies
    assert value_of(client, "cart") == "apple"


def test_a_login_with_a_key_cycled_away_by_another_login_is_refused_without_a_cookie(client):
    client.get("/set/cart/apple")
    before = session_cookie(client)
    client.get("/login/ada")
    stale = Client(raise_request_exception=False)
    stale.cookies[settings.SESSION_COOKIE_NAME] = before
    response = stale.get("/login/eve")
    assert response.status_code == 400
    assert settings.SESSION_COOKIE_NAME not in response.cookies
    assert value_of(client, "user") == "ada"


def test_a_read_with_a_key_cycled_away_by_a_login_leaves_the_cookie_alone(client):
    # Django would delete the cookie of the empty session, which is the
    # browser's new one by then: the engine sends no cookie, and neither does Django.
    client.get("/set/cart/apple")
    before = session_cookie(client)
    client.get("/login/ada")
    stale = Client()
    stale.cookies[settings.SESSION_COOKIE_NAME] = before
    response = stale.get("/get/user")
    assert response.status_code == 200 and response.json()["value"] is None
    assert settings.SESSION_COOKIE_NAME not in response.cookies


def test_a_read_with_an_ended_key_removes_the_cookie(client):
    client.get("/login/ada")
    ended = session_cookie(client)
    client.get("/logout")
    stale = Client()
    stale.cookies[settings.SESSION_COOKIE_NAME] = ended
    response = stale.get("/get/user")
    assert response.json()["value"] is None
    assert response.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == 0


def test_logout_flushes_the_session_and_removes_the_cookie(client):
    client.get("/login/ada")
    key = session_cookie(client)
    response = client.get("/logout")
    assert response.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == 0
    assert session_cookie(client) is None
    assert not SessionStore().exists(key)
    assert value_of(client, "user") is None


def test_a_tampered_cookie_starts_a_fresh_session(client):
    client.get("/set/user/ada")
    key = session_cookie(client)
    client.cookies[settings.SESSION_COOKIE_NAME] = key[:-2] + ("AA" if key[-2:] != "AA" else "BB")
    response = client.get("/get/user")
    assert response.status_code == 200 and response.json()["value"] is None
    assert client.get("/set/user/eve").status_code == 200
    assert session_cookie(client) != key
    assert SessionStore(key)["user"] == "ada"


def test_an_emptied_session_is_saved_and_keeps_its_cookie(client):
    # Django's test_empty_session_saved, reading the store instead of its database model.
    client.get("/set/foo/bar")
    key = session_cookie(client)
    response = client.get("/remove/foo")
    assert response.cookies[settings.SESSION_COOKIE_NAME].value == key
    s = SessionStore(key)
    assert s.exists(key) and dict(s.items()) == {}


def test_a_session_signed_with_a_fallback_secret_still_loads(store):
    with override_settings(SECRET_KEY="the old secret"):
        key = saved_session(user="ada")
    assert SessionStore(key).get("user") is None
    with override_settings(SECRET_KEY="the new secret", SECRET_KEY_FALLBACKS=["the old secret"]):
        assert SessionStore(key)["user"] == "ada"


def test_the_store_is_read_when_a_session_store_is_made(store):
    key = saved_session(a=1)
    with override_settings(VISHNU_STORE="sqlite::memory:"):
        assert not SessionStore().exists(key)
    assert SessionStore(key)["a"] == 1


# -- expiry and clearsessions ---------------------------------------------------------

def test_set_expiry_is_the_sessions_lifetime_in_the_store(store):
    s = SessionStore()
    s["a"] = 1
    s.set_expiry(1)
    s.save()
    key = s.session_key
    assert SessionStore(key)["a"] == 1
    time.sleep(1.2)
    assert SessionStore(key).get("a") is None


def test_session_cookie_age_is_the_default_lifetime_in_the_store(client):
    with override_settings(SESSION_COOKIE_AGE=1):
        response = client.get("/set/a/1")
        assert response.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == 1
        assert value_of(client, "a") == "1"
        time.sleep(1.2)
        assert SessionStore(session_cookie(client)).get("a") is None


def test_a_browser_session_cookie_keeps_the_cookie_age_in_the_store(client):
    # As Django's database backend: no Max-Age on the cookie, SESSION_COOKIE_AGE in the store.
    with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True, SESSION_COOKIE_AGE=1):
        response = client.get("/set/a/1")
        assert response.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == ""
        time.sleep(1.2)
        assert SessionStore(session_cookie(client)).get("a") is None


def test_clearsessions_removes_expired_sessions_and_keeps_live_ones(tmp_path):
    db = tmp_path / "sessions.db"
    with override_settings(VISHNU_STORE="sqlite://%s" % db):
        short = SessionStore()
        short["a"] = 1
        short.set_expiry(1)
        short.save()
        live = saved_session(b=2)
        time.sleep(1.2)

        def rows():
            with sqlite3.connect(str(db)) as conn:
                return conn.execute("SELECT COUNT(*) FROM vishnu_sessions").fetchone()[0]

        assert rows() == 2, "SQL stores keep expired rows until cleaned up"
        call_command("clearsessions")
        assert rows() == 1
        assert SessionStore(live)["b"] == 2


# -- the async API ---------------------------------------------------------------------

def test_async_api_round_trip(store):
    async def scenario():
        s = SessionStore()
        await s.aset("a", 1)
        await s.asave()
        key = s.session_key
        assert await s.aexists(key)

        other = SessionStore(key)
        assert await other.aget("a") == 1
        await other.aset("b", 2)
        await other.acycle_key()
        assert other.session_key != key
        assert not await other.aexists(key)
        assert dict(await SessionStore(other.session_key).aitems()) == {"a": 1, "b": 2}

        await other.aflush()
        assert other.session_key is None
        await SessionStore.aclear_expired()
        return key

    asyncio.run(scenario())


def test_async_saves_of_different_keys_both_persist(store):
    key = saved_session(a=0, b=0)

    async def scenario():
        first, second = SessionStore(key), SessionStore(key)
        assert await first.aget("a") == 0 and await second.aget("b") == 0
        await first.aset("a", 1)
        await second.aset("b", 2)
        await asyncio.gather(first.asave(), second.asave())

    asyncio.run(scenario())
    assert dict(SessionStore(key).items()) == {"a": 1, "b": 2}


# -- failures ---------------------------------------------------------------------------

def test_a_store_failure_is_a_clean_500_without_details():
    url = "redis://127.0.0.1:%d/0" % free_port()  # nothing listens there
    with override_settings(VISHNU_STORE=url):
        client = Client(raise_request_exception=False)
        response = client.get("/set/a/1")
    assert response.status_code == 500
    body = response.content.decode()
    assert "redis" not in body.lower() and "127.0.0.1" not in body
    assert settings.SESSION_COOKIE_NAME not in response.cookies
