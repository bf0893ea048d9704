"""vishnu.flask beyond Flask's own session tests (scripts/frameworks/flask.sh
runs those): values in the store, concurrent requests, tampered cookies,
store failures, key rotation, and the per-request cost."""
import threading
import uuid
from datetime import datetime, timezone

import flask
import pytest
from markupsafe import Markup

import vishnu.flask

from conftest import free_port, require_env
from test_middleware import FlakyStore

SECRET = "a Flask secret key, any length"


@pytest.fixture(params=["cookie", "redis"])
def store(request):
    """The default client-side store, and the Redis server scripts/test.sh starts."""
    return require_env("VISHNU_REDIS_URL") if request.param == "redis" else request.param


def make_app(store, interface=None, **config):
    app = flask.Flask(__name__)
    app.config.update(dict(dict(SECRET_KEY=SECRET, TESTING=True), **config))
    app.session_interface = interface or vishnu.flask.SessionInterface(store)

    @app.route("/public")
    def public():
        return "public"

    @app.route("/get/<key>")
    def get(key):
        return repr(flask.session.get(key))

    @app.route("/set/<key>/<value>")
    def set_(key, value):
        flask.session[key] = value
        return "set"

    @app.route("/clear")
    def clear():
        flask.session.clear()
        return "cleared"

    @app.route("/fail/<key>/<value>")
    def fail(key, value):
        flask.session[key] = value
        return "failed", 503

    @app.route("/clear-and-fail")
    def clear_and_fail():
        flask.session.clear()
        return "failed", 500

    @app.route("/login/<user>")
    def login(user):
        flask.session["user"] = user
        flask.session.cycle_id()
        return "welcome"

    @app.route("/incr-race")
    def incr_race():
        flask.session.get("n")
        app.race_barrier.wait()  # both requests have read n before either writes
        return str(flask.session.update_value("n", lambda n: (n or 0) + 1))

    # Two of these on one session meet at the barrier after both read it.
    app.race_barrier = threading.Barrier(2, timeout=10)

    @app.route("/race/<key>")
    def race_route(key):
        flask.session.get("seed")
        app.race_barrier.wait()
        flask.session[key] = key
        return "ok"

    return app


def cookie_of(client, name="session"):
    cookie = client.get_cookie(name)
    return None if cookie is None else cookie.value


class CountingStore(FlakyStore):
    """The test store that fails on demand, counting loads and writes."""

    def __init__(self):
        super().__init__()
        self.loads = self.writes = 0

    def load(self, key):
        self.loads += 1
        return super().load(key)

    def create(self, key, record, expires_at):
        self.writes += 1
        return super().create(key, record, expires_at)

    def save(self, key, record, expected_version, expires_at):
        self.writes += 1
        return super().save(key, record, expected_version, expires_at)


# -- values --------------------------------------------------------------------

def test_flasks_tagged_values_come_back_from_the_store(store):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    the_uuid = uuid.uuid4()
    values = {
        "t": (1, 2, 3), "b": b"\xff\x00", "m": Markup("<html>"), "u": the_uuid, "d": now,
        "nested": {"list": [(1, "a"), b"x"], "text": "caf\u00e9"},
        "t_tag": {" t": "not-a-tuple"}, "di_tag": {" di": "not-a-dict"},
        # Plain values (their own shortcut through the codec).
        "i": -42, "yes": True, "no": False, "none": None, "s": 'a "quoted" \\ text',
        "digits": "123", "neg": "-1", "word": "null", "utf": "\u00e9\u4e2d", "f": 1.5,
    }
    app = make_app(store)

    @app.route("/special")
    def special():
        flask.session.update(values)
        return ""

    @app.route("/check")
    def check():
        return {key: repr(flask.session[key]) for key in values}

    client = app.test_client()
    client.get("/special")
    assert client.get("/check").json == {key: repr(value) for key, value in values.items()}


@pytest.mark.parametrize("header", [
    None, "", "session=abc", "a=1; session=abc.def-_9", "session=abc; b=2", "xsession=1", "xsession=1; session=abc",
    "session=abc; session=def", 'session="quoted value"', "session=", "session= abc ", "a=1;session=abc",
    "a=1, session=abc", "session=a b", "session=abc\\x", "b=session=x", "sessionx=1",
])
def test_the_session_cookie_is_read_as_werkzeug_reads_it(header):
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request
    environ = EnvironBuilder(path="/").get_environ()
    if header is not None:
        environ["HTTP_COOKIE"] = header
    assert vishnu.flask._cookie_value(Request(environ), "session") == (Request(environ).cookies.get("session") or None)


def test_a_tag_an_app_registers_applies_to_plain_values_too(store):
    from flask.json.tag import JSONTag

    class TagUpper(JSONTag):
        """Stores strings upper-cased under a tag of their own."""
        key = " up"

        def check(self, value):
            return isinstance(value, str)

        def to_json(self, value):
            return value.upper()

        def to_python(self, value):
            return "stored as " + value

    class Interface(vishnu.flask.SessionInterface):
        serializer = flask.json.tag.TaggedJSONSerializer()

    interface = Interface(store)
    interface.serializer.register(TagUpper, index=0)
    app = make_app(store, interface)
    client = app.test_client()
    client.get("/set/k/abc")
    assert client.get("/get/k").text == repr("stored as ABC")


def test_an_unchanged_value_set_again_writes_nothing():
    counting = CountingStore()
    app = make_app(counting)
    client = app.test_client()
    client.get("/set/user/ada")
    writes = counting.writes
    assert client.get("/set/user/ada").data == b"set"
    assert counting.writes == writes


# -- the per-request cost ------------------------------------------------------

def test_the_store_is_read_once_and_only_when_the_session_is_used():
    counting = CountingStore()
    app = make_app(counting, SESSION_REFRESH_EACH_REQUEST=False)
    client = app.test_client()
    client.get("/set/user/ada")
    assert (counting.loads, counting.writes) == (0, 1)  # a new session: nothing to read

    client.get("/public")
    assert (counting.loads, counting.writes) == (0, 1)

    assert client.get("/get/user").data == b"'ada'"
    assert (counting.loads, counting.writes) == (1, 1)

    client.get("/set/lang/en")
    assert (counting.loads, counting.writes) == (2, 2)


def test_refresh_each_request_reads_a_permanent_session_to_send_its_cookie_again():
    counting = CountingStore()
    app = make_app(counting)

    @app.route("/remember-me")
    def remember_me():
        flask.session["user"] = "ada"
        flask.session.permanent = True
        return ""

    client = app.test_client()
    client.get("/remember-me")
    rv = client.get("/public")
    assert counting.loads == 1
    assert "Expires=" in rv.headers["Set-Cookie"] and rv.headers["Vary"] == "Cookie"


# -- concurrency ---------------------------------------------------------------

def race(app, cookie):
    """Two requests on the same session cookie, both reading the session
    before either changes it (a barrier forces the interleaving); one sets
    "a", the other "b". Returns the Set-Cookie values they answered."""
    answers = {}

    def request(key):
        client = app.test_client()
        client.set_cookie("session", cookie)
        rv = client.get("/race/" + key)
        answers[key] = (rv.status_code, rv.headers.get("Set-Cookie"))

    threads = [threading.Thread(target=request, args=(k,)) for k in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [answers[k][0] for k in "ab"] == [200, 200]
    return [answers[k][1] for k in "ab"]


def test_concurrent_requests_changing_different_keys_both_keep_their_change():
    app = make_app(require_env("VISHNU_REDIS_URL"))
    client = app.test_client()
    client.get("/set/seed/1")
    race(app, cookie_of(client))
    assert client.get("/get/a").data == b"'a'"
    assert client.get("/get/b").data == b"'b'"
    assert client.get("/get/seed").data == b"'1'"


def test_a_burst_of_concurrent_requests_each_setting_its_own_key_loses_none():
    app = make_app(require_env("VISHNU_REDIS_URL"))
    client = app.test_client()
    client.get("/set/seed/1")
    cookie = cookie_of(client)

    def request(i):
        other = app.test_client()
        other.set_cookie("session", cookie)
        assert other.get("/set/k%d/%d" % (i, i)).status_code == 200

    threads = [threading.Thread(target=request, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with client.session_transaction() as session:
        assert {k: v for k, v in session.items() if k.startswith("k")} == {"k%d" % i: str(i) for i in range(16)}


def test_update_value_counts_both_of_two_overlapping_increments(store):
    # Both requests read n = 1 before either writes: n = n + 1 would give 2;
    # update_value gives 3. (With the cookie store each response carries its
    # own cookie: only a server store can merge them.)
    if store == "cookie":
        store = "memory"
    app = make_app(store)
    client = app.test_client()
    client.get("/set/seed/1")
    with client.session_transaction() as session:
        session["n"] = 1
    cookie = cookie_of(client)
    answers = []

    def request():
        other = app.test_client()
        other.set_cookie("session", cookie)
        answers.append(other.get("/incr-race").data)

    threads = [threading.Thread(target=request) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [b"2", b"3"]
    assert client.get("/get/n").data == b"3"


def test_flasks_own_cookie_session_loses_one_of_two_concurrent_changes():
    """The contrast: with Flask's default interface, each response carries
    its own copy of the session and the browser keeps only the last one."""
    app = make_app(None, interface=flask.sessions.SecureCookieSessionInterface())
    client = app.test_client()
    client.get("/set/seed/1")
    for set_cookie in race(app, cookie_of(client)):
        reader = app.test_client()
        reader.set_cookie("session", set_cookie.split(";", 1)[0].split("=", 1)[1])
        seen = (reader.get("/get/a").data, reader.get("/get/b").data)
        assert b"None" in seen


# -- cookies -------------------------------------------------------------------

def test_a_tampered_cookie_starts_a_fresh_session(store):
    app = make_app(store)
    client = app.test_client()
    client.get("/set/user/ada")
    value = cookie_of(client)
    flipped = value[:10] + ("A" if value[10] != "A" else "B") + value[11:]
    client.set_cookie("session", flipped)
    rv = client.get("/get/user")
    assert (rv.status_code, rv.data) == (200, b"None")
    client.get("/set/user/mallory")
    assert cookie_of(client) not in (value, flipped)


def test_an_emptied_session_is_ended_in_the_store():
    app = make_app(require_env("VISHNU_REDIS_URL"))
    client = app.test_client()
    client.get("/set/user/ada")
    stolen = cookie_of(client)
    rv = client.get("/clear")
    assert "session=;" in rv.headers["Set-Cookie"]
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    assert thief.get("/get/user").data == b"None"


def test_login_cycles_the_id_and_the_old_id_grants_nothing():
    app = make_app(require_env("VISHNU_REDIS_URL"))
    client = app.test_client()
    client.get("/set/cart/3")
    before = cookie_of(client)
    client.get("/login/ada")
    assert cookie_of(client) != before
    assert (client.get("/get/user").data, client.get("/get/cart").data) == (b"'ada'", b"'3'")
    stale = app.test_client()
    stale.set_cookie("session", before)
    assert stale.get("/get/user").data == b"None"
    rv = stale.get("/set/user/mallory")  # a write with the cycled-away id, within the grace window
    assert (rv.status_code, rv.data, rv.headers.get("Set-Cookie")) == (409, b"", None)
    assert client.get("/get/user").data == b"'ada'"


def test_partitioned_cookie(store):
    app = make_app(store, SESSION_COOKIE_SECURE=True, SESSION_COOKIE_PARTITIONED=True,
                   SESSION_COOKIE_SAMESITE="None")
    set_cookie = app.test_client().get("/set/user/ada", "https://localhost/").headers["Set-Cookie"]
    assert "; Partitioned" in set_cookie and "; Secure" in set_cookie and "SameSite=None" in set_cookie


def test_secret_rotation_with_fallbacks(store):
    app = make_app(store, SECRET_KEY="old key")
    client = app.test_client()
    client.get("/set/user/ada")
    old_cookie = cookie_of(client)

    app.config.update(SECRET_KEY="new key", SECRET_KEY_FALLBACKS=["old key"])
    rv = client.get("/get/user")
    assert rv.data == b"'ada'"
    assert "Set-Cookie" in rv.headers and cookie_of(client) != old_cookie  # re-issued under the new key

    app.config.update(SECRET_KEY_FALLBACKS=[])
    assert client.get("/get/user").data == b"'ada'"
    stale = app.test_client()
    stale.set_cookie("session", old_cookie)
    assert stale.get("/get/user").data == b"None"


def test_the_secret_key_may_be_any_length(store):
    client = make_app(store, SECRET_KEY="k").test_client()
    client.get("/set/user/ada")
    assert client.get("/get/user").data == b"'ada'"


# -- failures ------------------------------------------------------------------

def test_a_failed_request_changes_nothing(store):
    client = make_app(store).test_client()
    client.get("/set/user/ada")
    assert client.get("/fail/user/mallory").status_code == 503
    assert client.get("/clear-and-fail").status_code == 500
    assert client.get("/get/user").data == b"'ada'"


def test_a_store_failure_is_a_clean_500():
    flaky = CountingStore()
    app = make_app(flaky, TESTING=False)
    client = app.test_client()
    client.get("/set/user/ada")
    flaky.fail = True
    for path in ("/get/user", "/set/user/bob"):
        rv = client.get(path)
        assert rv.status_code == 500
        assert b"10.1.2.3" not in rv.data and b"Error" not in rv.data.replace(b"Internal Server Error", b"")
    flaky.fail = False
    assert client.get("/get/user").data == b"'ada'"


def test_a_store_down_at_startup_fails_only_the_requests_that_use_the_session():
    app = make_app("redis://127.0.0.1:%d/0" % free_port(), TESTING=False)
    client = app.test_client()
    assert client.get("/public").data == b"public"
    rv = client.get("/set/user/ada")
    assert rv.status_code == 500 and b"127.0.0.1" not in rv.data
    assert client.get("/public").status_code == 200


# -- setup ---------------------------------------------------------------------

def test_flask_session_style_setup_takes_the_store_from_the_config():
    url = require_env("VISHNU_REDIS_URL")
    app = make_app(None)
    app.config["VISHNU_STORE"] = url
    ext = vishnu.flask.Session()
    ext.init_app(app)
    assert isinstance(app.session_interface, vishnu.flask.SessionInterface)
    client = app.test_client()
    client.get("/set/user/ada")
    assert len(cookie_of(client)) < 100  # an id, not the sealed session
    assert client.get("/get/user").data == b"'ada'"


def test_without_a_secret_key_the_session_is_flasks_null_session(store):
    app = make_app(store, SECRET_KEY=None)
    with app.test_request_context():
        assert app.session_interface.is_null_session(flask.session)


def test_the_test_clients_session_transaction_works(store):
    client = make_app(store).test_client()
    with client.session_transaction() as session:
        session["user"] = "ada"
    assert client.get("/get/user").data == b"'ada'"
    with client.session_transaction() as session:
        assert session["user"] == "ada"
