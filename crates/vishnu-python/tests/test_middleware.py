"""The WSGI middleware's behaviour, including every bug of the original that is fixed."""
import base64
import threading
import time

import pytest

import vishnu
from vishnu.backend import Memory, PythonStore
from vishnu.middleware import SessionMiddleware

from conftest import KEY, Caller, config, routes


def test_counter_and_cookie(caller):
    assert caller("/incr")[1] == "1"
    assert caller("/incr")[1] == "2"
    status, body, cookies = caller("/public")
    assert (status, body, cookies) == (200, "public", [])


def test_a_non_json_value_is_refused_at_set_time_naming_the_key():
    c = config()
    s = vishnu.session.Session({}, c)
    with pytest.raises(TypeError, match="'when'"):
        s["when"] = object()
    with pytest.raises(TypeError, match="'nan'"):
        s["nan"] = float("nan")
    with pytest.raises(TypeError):
        s[1] = "non-str key"


def test_dict_like_access():
    s = vishnu.session.Session({}, config())
    s["a"] = 1
    assert "a" in s and s["a"] == 1 and s.keys() == ["a"]
    del s["a"]
    assert "a" not in s
    with pytest.raises(KeyError):
        s["a"]
    with pytest.raises(KeyError):
        del s["a"]
    assert s.pop("a", "dflt") == "dflt"
    s["b"] = [1, "two", None, True]
    assert s.pop("b") == [1, "two", None, True]
    s["c"] = 3
    s.clear()
    assert s.keys() == []


def test_setting_timeout_affects_that_session_only():
    c = config(timeout=60)
    mw = SessionMiddleware(routes, c)
    a, b = Caller(mw), Caller(mw)
    a("/set/user/ada")
    _, _, cookies = a("/timeout/5")
    assert "Max-Age=5" in cookies[0]
    assert c.timeout == 60
    _, _, cookies = b("/set/user/bob")
    assert "Max-Age=60" in cookies[0]
    _, _, cookies = a("/timeout/session")
    assert "Max-Age" not in cookies[0]


def test_save_without_a_prior_read_keeps_stored_data():
    caller = Caller(SessionMiddleware(routes, config()))
    caller("/set/user/ada")
    caller("/save")
    caller("/timeout/3600")  # the original's README example wiped the session here
    assert caller("/get/user")[1] == '"ada"'


def test_expiry_is_enforced_on_the_server():
    caller = Caller(SessionMiddleware(routes, config(timeout=1)))
    caller("/set/user/ada")
    replay = "vishnu=" + caller.cookie
    time.sleep(2.1)
    status, body, _ = caller("/get/user", cookie=replay)
    assert (status, body) == (200, "none")


@pytest.mark.parametrize("cookie", [
    "vishnu=%%%not-base64%%%",
    "vishnu=" + base64.b64encode(b"x" * 200).decode(),
    "vishnu=" + "A" * 5000,
    'json={"a":"b"}; vishnu=garbage',
    "b,c=2; vishnu=",
])
def test_garbage_cookies_give_a_fresh_session(caller, cookie):
    status, body, _ = caller("/incr", cookie=cookie)
    assert (status, body) == (200, "1")


def test_every_bit_flip_gives_a_fresh_session(caller):
    caller("/set/user/ada")
    raw = base64.urlsafe_b64decode(caller.cookie + "=" * (-len(caller.cookie) % 4))
    for i in range(len(raw)):
        for bit in range(8):
            bad = bytearray(raw)
            bad[i] ^= 1 << bit
            value = base64.urlsafe_b64encode(bytes(bad)).decode().rstrip("=")
            status, body, _ = caller("/get/user", cookie="vishnu=" + value)
            assert (status, body) == (200, "none")


def test_an_unencrypted_cookie_after_turning_encryption_on_gives_a_fresh_session():
    store = Memory()
    plain = Caller(SessionMiddleware(routes, config(backend=store)))
    plain("/set/user/ada")
    encrypted = Caller(SessionMiddleware(routes, config(backend=store, encrypt_key=KEY)))
    status, body, _ = encrypted("/get/user", cookie="vishnu=" + plain.cookie)
    assert (status, body) == (200, "none")
    encrypted("/set/user/bob")
    assert encrypted("/get/user")[1] == '"bob"'


def test_fallback_secrets_rotate_without_logging_users_out():
    backend = Memory()
    old = Caller(SessionMiddleware(routes, config(secret="the old secret, 32 characters long", backend=backend)))
    old("/set/user/ada")
    new = Caller(SessionMiddleware(routes, config(backend=backend, fallback_secrets=["the old secret, 32 characters long"])))
    new.cookie = old.cookie
    status, body, cookies = new("/get/user")
    assert body == '"ada"' and cookies and new.cookie != old.cookie


def test_terminate_deletes_the_record_without_a_prior_read(caller):
    caller("/set/user/ada")
    replay = "vishnu=" + caller.cookie
    _, _, cookies = caller("/terminate")
    assert "Max-Age=0" in cookies[0]
    assert caller("/get/user", cookie=replay)[1] == "none"


def test_changes_made_while_the_body_streams_are_saved_on_close(caller):
    caller("/set/user/ada")
    status, body, _ = caller("/stream")
    assert body == "start end"
    assert caller("/get/late")[1] == '"yes"'


def test_an_application_exception_propagates_unchanged_and_leaves_no_session(caller):
    caller("/set/user/ada")
    with pytest.raises(RuntimeError, match="application failure"):
        caller("/raise")
    assert vishnu.get_session() is None
    assert caller("/get/doomed")[1] == "none"


def test_a_5xx_response_persists_nothing(caller):
    caller("/set/user/ada")
    assert caller("/fail")[0] == 503
    assert caller("/get/user")[1] == '"ada"'


class FlakyStore(PythonStore):
    """A store written in Python (the documented plug-in), failing on demand."""

    def __init__(self):
        self.records, self.fail, self.lock = {}, False, threading.Lock()

    def _check(self):
        if self.fail:
            raise ConnectionError("injected failure at 10.1.2.3:6379")

    def load(self, key):
        self._check()
        return self.records.get(key)

    def create(self, key, record, expires_at):
        self._check()
        with self.lock:
            if key in self.records:
                return False
            self.records[key] = record
            return True

    def save(self, key, record, expected_version, expires_at):
        import json
        self._check()
        with self.lock:
            if key not in self.records:
                return "missing"
            if json.loads(self.records[key])["version"] != expected_version:
                return "conflict"
            self.records[key] = record
            return "saved"

    def delete(self, key):
        self._check()
        self.records.pop(key, None)

    def touch(self, key, last_access, expires_at):
        return key in self.records

    def delete_expired(self, now, dormant_for, limit):
        return (0, False)


def test_a_python_store_works_and_its_failures_are_clean():
    store = FlakyStore()
    caller = Caller(SessionMiddleware(routes, config(backend=store, auto_save=True)))
    caller("/set/user/ada")
    assert caller("/get/user")[1] == '"ada"'
    assert len(store.records) == 1
    store.fail = True
    status, body, cookies = caller("/put/user/bob")
    assert (status, body, cookies) == (500, "", [])
    with pytest.raises(vishnu.session.StoreError):
        caller("/get/user")
    store.fail = False
    assert caller("/get/user")[1] == '"ada"'


def test_concurrent_updates_from_threads_are_never_lost(caller):
    caller("/save")
    cookie = "vishnu=" + caller.cookie
    threads = [threading.Thread(target=lambda: caller("/incr", cookie=cookie)) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert caller("/get/n")[1] == "40"


def test_update_errors_propagate_and_save_nothing(caller):
    caller("/incr")
    session_cookie = "vishnu=" + caller.cookie
    s = vishnu.session.Session({"HTTP_COOKIE": session_cookie}, caller.app.config)

    def boom(n):
        raise ValueError("no")
    with pytest.raises(ValueError, match="no"):
        s.update("n", boom)
    assert caller("/get/n")[1] == "1"


def test_two_cookie_headers_joined_with_a_comma_keep_the_session():
    """wsgiref and gunicorn join repeated Cookie headers with ", "."""
    caller = Caller(SessionMiddleware(routes, config(auto_save=True)))
    caller("/set/user/ada")
    joined = "theme=dark, vishnu=%s" % caller.cookie
    assert caller("/get/user", cookie=joined)[1] == '"ada"'
    assert caller("/get/user", cookie="vishnu=%s, theme=dark" % caller.cookie)[1] == '"ada"'
