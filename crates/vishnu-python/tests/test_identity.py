"""Identity through the Python package: login and its cycle grace (Superseded, 409
without a cookie), renewal with its grace window, a user's sessions (list,
revoke, revoke_others, revoke_all), and the cookie store's Unsupported.

Time moves on a ManualClock, not by sleeping. Each test runs on the memory
store and on the Redis server that scripts/test.sh starts."""
import json
import uuid

import pytest

import vishnu
from vishnu import _vishnu
from vishnu.backend import Cookie, Memory
from vishnu.middleware import SessionMiddleware
from vishnu.session import Config, SessionError, Superseded, Unsupported

from conftest import SECRET, Caller, config, redis_backend, routes

BACKENDS = {"memory": Memory, "redis": redis_backend}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    return BACKENDS[request.param]()


@pytest.fixture
def user():
    """A user id of its own: the Redis server is shared between runs."""
    return "user-" + uuid.uuid4().hex


class App(object):
    """The test routes behind the middleware, on a config whose time is a ManualClock."""

    def __init__(self, backend, **kw):
        self.config = config(backend=backend, auto_save=True, **kw)
        self.clock = _vishnu.ManualClock()
        self.config._clock = self.clock
        self.middleware = SessionMiddleware(routes, self.config)

    def browser(self):
        return Caller(self.middleware)

    def logged_in(self, user, label="device"):
        b = self.browser()
        assert b("/login/%s/%s" % (user, label))[:2] == (200, "welcome")
        return b


def stale(browser, cookie):
    """A browser that still carries an older cookie (another tab, a request in flight)."""
    other = Caller(browser.app)
    other.cookie = cookie
    return other


# -- login and the cycle grace ----------------------------------------------------

def test_login_binds_the_user_and_cycles_the_id(backend, user):
    app = App(backend)
    b = app.browser()
    assert b("/incr")[1] == "1"
    before = b.cookie
    status, _, cookies = b("/login/%s" % user)
    assert status == 200 and cookies and b.cookie != before
    assert b("/user")[1] == user
    assert b("/incr")[1] == "2"


def test_a_pre_login_cookie_in_the_grace_window_gets_409_on_a_write_and_no_cookie(backend, user):
    app = App(backend)
    b = app.browser()
    b("/incr")
    old = stale(b, b.cookie)
    b("/login/%s" % user)
    # The app raises Superseded (update saves at once).
    assert old("/incr") == (409, "Conflict: the session changed; retry", [])
    # The end-of-request save fails with Superseded (auto_save).
    assert old("/put/k/v")[0::2] == (409, [])
    # A read is no session at all, and no cookie either (no removal cookie that logs the browser out).
    assert old("/user") == (200, "none", [])
    assert b("/incr")[1] == "2"
    assert b("/get/k")[1] == "none"


def test_past_the_cycle_grace_a_pre_login_cookie_is_a_stranger(backend, user):
    app = App(backend, cycle_grace=5)
    b = app.browser()
    b("/incr")
    old = stale(b, b.cookie)
    b("/login/%s" % user)
    app.clock.advance(6)
    status, body, cookies = old("/incr")
    assert (status, body) == (200, "1") and cookies and old.cookie != b.cookie
    assert b("/user")[1] == user


def test_superseded_is_raised_in_python(backend, user):
    c = config(backend=backend)
    first = vishnu.session.Session({}, c)
    first["n"] = 1
    first.save()
    cookie = first.header().split(";", 1)[0]
    login = vishnu.session.Session({"HTTP_COOKIE": cookie}, c)
    late = vishnu.session.Session({"HTTP_COOKIE": cookie}, c)
    assert late.get("n") == 1  # loaded before the login
    login.login(user)
    late["n"] = 2
    with pytest.raises(Superseded):
        late.save()
    assert issubclass(Superseded, SessionError)
    after = vishnu.session.Session({"HTTP_COOKIE": cookie}, c)
    with pytest.raises(Superseded):
        after.cycle_id()
    assert after.header() is None


# -- renewal -------------------------------------------------------------------

def test_renewal_gives_a_new_id_and_serves_the_old_one_in_its_grace_window(backend, user):
    app = App(backend, renew_every=60, renew_grace=5)
    b = app.logged_in(user)
    handle = json.loads(b("/sessions")[1])[0]["handle"]
    old = b.cookie
    app.clock.advance(30)
    assert b("/incr")[1] == "1" and b.cookie == old  # not due yet
    app.clock.advance(31)
    status, body, cookies = b("/incr")
    assert (status, body) == (200, "2") and cookies and b.cookie != old
    new = b.cookie
    tabs = [stale(b, old) for _ in range(3)]
    for tab in tabs:
        assert tab("/user")[1] == user
    assert [t.cookie for t in tabs] == [new] * 3  # every tab converges on one id
    assert [s["handle"] for s in json.loads(b("/sessions")[1])] == [handle]
    app.clock.advance(6)
    assert stale(b, old)("/user")[1] == "none"
    assert b("/get/n")[1] == "2"


def test_no_renewal_by_default(backend):
    app = App(backend)
    b = app.browser()
    b("/incr")
    old = b.cookie
    app.clock.advance(3600)
    assert b("/incr")[1] == "2" and b.cookie == old


# -- a user's sessions ---------------------------------------------------------------

def test_sessions_lists_the_users_sessions_with_the_current_one_flagged(backend, user):
    app = App(backend)
    laptop = app.logged_in(user, "laptop")
    app.clock.advance(1)
    phone = app.logged_in(user, "phone")
    app.logged_in(user + "-other", "elsewhere")
    listed = json.loads(laptop("/sessions")[1])
    assert [(s["label"], s["current"]) for s in listed] == [("phone", False), ("laptop", True)]
    for s in listed:
        assert set(s) == {"handle", "created_at", "last_access", "expires_at", "label", "current"}
        assert all(isinstance(s[k], int) for k in ("created_at", "last_access", "expires_at"))
        assert s["handle"] not in laptop.cookie and s["handle"] not in phone.cookie
    assert [s["current"] for s in json.loads(phone("/sessions")[1])] == [True, False]
    everywhere = vishnu.sessions_of(app.config, user)
    assert [(s["label"], s["current"]) for s in everywhere] == [("phone", False), ("laptop", False)]


def test_a_session_without_a_user_has_no_sessions_and_revokes_nothing(backend):
    s = vishnu.session.Session({}, config(backend=backend))
    assert (s.user, s.handle, s.sessions()) == (None, None, [])
    assert s.revoke("no-such-handle") is False
    assert s.revoke_others() == 0


def test_revoke_ends_only_the_named_session_of_the_same_user(backend, user):
    app = App(backend)
    laptop, phone = app.logged_in(user, "laptop"), app.logged_in(user, "phone")
    intruder = app.logged_in(user + "-mallory")
    phone_handle = next(s["handle"] for s in json.loads(laptop("/sessions")[1]) if not s["current"])
    assert intruder("/revoke/%s" % phone_handle)[1] == "false"
    assert phone("/user")[1] == user
    assert laptop("/revoke/%s" % phone_handle)[1] == "true"
    assert phone("/user")[1] == "none"
    assert [s["label"] for s in json.loads(laptop("/sessions")[1])] == ["laptop"]


def test_revoke_others_keeps_the_current_session(backend, user):
    app = App(backend)
    laptop, phone, tablet = (app.logged_in(user, d) for d in ("laptop", "phone", "tablet"))
    assert laptop("/revoke-others")[1] == "2"
    assert (phone("/user")[1], tablet("/user")[1], laptop("/user")[1]) == ("none", "none", user)


def test_revoke_all_ends_every_session_and_removes_the_cookie(backend, user):
    app = App(backend)
    laptop, phone = app.logged_in(user, "laptop"), app.logged_in(user, "phone")
    other = app.logged_in(user + "-other")
    replay = stale(laptop, laptop.cookie)
    status, body, cookies = laptop("/revoke-all")
    assert (status, body) == (200, "2")
    assert cookies and "Max-Age=0" in cookies[0] and laptop.cookie is None
    assert (phone("/user")[1], replay("/user")[1]) == ("none", "none")
    assert other("/user")[1] == user + "-other"


def test_revoke_and_revoke_all_outside_a_request(backend, user):
    app = App(backend)
    laptop, phone, tablet = (app.logged_in(user, d) for d in ("laptop", "phone", "tablet"))
    handle = next(s["handle"] for s in vishnu.sessions_of(app.config, user) if s["label"] == "phone")
    assert vishnu.revoke(app.config, user + "-other", handle) is False
    assert vishnu.revoke(app.config, user, handle) is True
    assert phone("/user")[1] == "none"
    assert vishnu.revoke_all(app.config, user) == 2
    assert (laptop("/user")[1], tablet("/user")[1]) == ("none", "none")
    assert vishnu.sessions_of(app.config, user) == []


# -- the cookie store and configuration ------------------------------------------------

def test_the_cookie_store_cannot_list_or_revoke(user):
    c = config(backend=Cookie())
    s = vishnu.session.Session({}, c)
    s.login(user)
    assert s.user == user
    for call in (s.sessions, s.revoke_others, s.revoke_all, lambda: s.revoke("h"),
                 lambda: vishnu.sessions_of(c, user), lambda: vishnu.revoke(c, user, "h"),
                 lambda: vishnu.revoke_all(c, user)):
        with pytest.raises(Unsupported, match="cookie store"):
            call()
    assert issubclass(Unsupported, SessionError)


@pytest.mark.parametrize("kw, error, match", [
    ({"renew_every": 0}, ValueError, "renew_every"),
    ({"renew_every": 1.5}, ValueError, "renew_every"),
    ({"renew_every": "60"}, TypeError, "renew_every"),
    ({"cycle_grace": -1}, ValueError, "cycle_grace"),
    ({"cycle_grace": 3601}, ValueError, "cycle_grace"),
    ({"renew_grace": float("nan")}, ValueError, "renew_grace"),
    ({"renew_grace": None}, TypeError, "renew_grace"),
])
def test_config_refuses_bad_renewal_and_grace_values(kw, error, match):
    with pytest.raises(error, match=match):
        Config(secret=SECRET, backend=Memory(), **kw)


def test_config_keeps_renewal_and_grace_values():
    c = Config(secret=SECRET, backend=Memory(), renew_every=900, cycle_grace=0.5, renew_grace=0)
    assert (c.renew_every, c.cycle_grace, c.renew_grace) == (900, 0.5, 0)
    c._get_engine()
    d = Config(secret=SECRET, backend=Memory())
    assert (d.renew_every, d.cycle_grace, d.renew_grace) == (None, 10, 10)
