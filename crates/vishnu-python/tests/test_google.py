"""The Google stores, offline: App Engine through appengine-python-standard's testbed stubs,
Cloud Datastore against the Cloud Datastore emulator started here on loopback."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest

from vishnu.backend import GoogleAppEngineMemcache, GoogleAppEngineNDB, GoogleCloudDatastore
from vishnu.middleware import SessionMiddleware

from conftest import Caller, config, free_port, routes, skip_or_fail

EMULATOR = "/usr/lib/google-cloud-sdk/platform/cloud-datastore-emulator/cloud_datastore_emulator"


def _require(module):
    try:
        __import__(module)
    except ImportError:
        skip_or_fail("%s is not installed" % module, "scripts/test.sh installs it into target/venv")


@pytest.fixture
def testbed():
    _require("google.appengine.ext.testbed")
    from google.appengine.ext import ndb, testbed as tb
    bed = tb.Testbed()
    bed.activate()
    bed.init_datastore_v3_stub()
    bed.init_memcache_stub()
    ndb.get_context().clear_cache()
    yield bed
    bed.deactivate()


def exercise(caller):
    assert caller("/incr")[1] == "1"
    assert caller("/incr")[1] == "2"
    caller("/set/user/ada")
    assert caller("/get/user")[1] == '"ada"'
    replay = "vishnu=" + caller.cookie
    caller("/terminate")  # without a prior read: the record must still go
    assert caller("/get/user", cookie=replay)[1] == "none"


def test_gae_memcache_store(testbed):
    from google.appengine.api import memcache
    caller = Caller(SessionMiddleware(routes, config(backend=GoogleAppEngineMemcache(), auto_save=True)))
    caller("/set/user/ada")
    stats = memcache.get_stats()
    assert stats["items"] >= 1
    exercise(caller)


def test_gae_ndb_store_and_cleanup(testbed):
    from vishnu.backend.client import google_app_engine_ndb as gndb
    from vishnu.util import gae_ndb_delete_expired_sessions, google_app_engine_ndb_delete_expired_sessions
    caller = Caller(SessionMiddleware(routes, config(backend=GoogleAppEngineNDB(), auto_save=True)))
    exercise(caller)
    caller("/set/user/bob")
    store = gndb.Store()
    entities = gndb.model().query().fetch()
    assert len(entities) == 1 and json.loads(entities[0].data)["data"] == {"user": "bob"}
    now = int(time.time() * 1000)
    record = lambda last, exp: json.dumps({"v": 1, "data": {}, "created_at": last, "last_access": last,
                                           "expires_at": exp, "version": 1})
    for i in range(3):  # expired
        store.create("expired%d" % i, record(now, now - 1000), now - 1000)
    for i in range(2):  # dormant for two days
        store.create("dormant%d" % i, record(now - 2 * 86400000, now + 3600000), now + 3600000)
    calls = 0
    while not gae_ndb_delete_expired_sessions(limit=2):
        calls += 1
        assert calls < 10
    assert calls == 2
    assert google_app_engine_ndb_delete_expired_sessions() is True
    assert [e.key.id() for e in gndb.model().query().fetch()] == [entities[0].key.id()]
    assert caller("/get/user")[1] == '"bob"'


@pytest.fixture(scope="module")
def datastore_emulator():
    _require("google.cloud.datastore")
    if not os.path.exists(EMULATOR) or not shutil.which("java"):
        skip_or_fail("no Cloud Datastore emulator at %s, or no java" % EMULATOR,
                     "it comes from the Debian package google-cloud-cli-datastore-emulator of Google's own "
                     "apt repository (not Debian's), and java from openjdk-17-jre-headless")
    port = free_port()
    proc = subprocess.Popen([EMULATOR, "start", "--host=127.0.0.1", "--port=%d" % port,
                             "--store_on_disk=false", "--consistency=1.0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            cwd=tempfile.mkdtemp(prefix="vishnu-datastore-"))
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=1).read()
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("the datastore emulator did not start")
    old = {k: os.environ.get(k) for k in ("DATASTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")}
    os.environ["DATASTORE_EMULATOR_HOST"] = "127.0.0.1:%d" % port
    os.environ["GOOGLE_CLOUD_PROJECT"] = "vishnu-test"
    yield port
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    os.killpg(proc.pid, 15)
    proc.wait(10)


def test_cloud_datastore_store_and_cleanup(datastore_emulator):
    from vishnu.backend.client import google_cloud_datastore as gcd
    from vishnu.util import google_cloud_datastore_delete_expired_sessions
    caller = Caller(SessionMiddleware(routes, config(backend=GoogleCloudDatastore(), auto_save=True)))
    exercise(caller)
    caller("/set/user/bob")
    store = gcd.Store()
    now = int(time.time() * 1000)
    record = lambda last, exp: json.dumps({"v": 1, "data": {}, "created_at": last, "last_access": last,
                                           "expires_at": exp, "version": 1})
    for i in range(3):
        store.create("expired%d" % i, record(now, now - 1000), now - 1000)
    for i in range(2):
        store.create("dormant%d" % i, record(now - 2 * 86400000, now + 3600000), now + 3600000)
    calls = 0
    while not google_cloud_datastore_delete_expired_sessions(limit=2):
        calls += 1
        assert calls < 10
    assert caller("/get/user")[1] == '"bob"'
    c = gcd.client()
    remaining = list(c.query(kind=gcd.TABLE_NAME).fetch())
    assert len(remaining) == 1


def _touch_never_moves_the_expiry_earlier(store):
    now = int(time.time() * 1000)
    day, hour = 86400000, 3600000
    rec = json.dumps({"v": 1, "data": {"n": 1}, "created_at": now, "last_access": now,
                      "expires_at": now + day, "version": 1})
    store.create("raised", rec, now + day)
    # A late refresh from a request that read a 30-minute timeout.
    assert store.touch("raised", now + 10, now + hour // 2)
    loaded = json.loads(store.load("raised"))
    assert (loaded["expires_at"], loaded["last_access"]) == (now + day, now + 10)
    assert store.touch("raised", now + 20, now + 2 * day)
    assert json.loads(store.load("raised"))["expires_at"] == now + 2 * day


def test_gae_stores_never_move_the_expiry_earlier(testbed):
    from vishnu.backend.client import google_app_engine_memcache as gmem
    from vishnu.backend.client import google_app_engine_ndb as gndb
    _touch_never_moves_the_expiry_earlier(gmem.Store())
    _touch_never_moves_the_expiry_earlier(gndb.Store())


def test_cloud_datastore_never_moves_the_expiry_earlier(datastore_emulator):
    from vishnu.backend.client import google_cloud_datastore as gcd
    _touch_never_moves_the_expiry_earlier(gcd.Store())


# Cleanup: an index query lists the candidates, a transaction per candidate re-reads and deletes.

HOUR, DAY = 3600000, 86400000


def _record(last_access, expires_at):
    return json.dumps({"v": 1, "data": {}, "created_at": last_access, "last_access": last_access,
                       "expires_at": expires_at, "version": 1})


def _refresh_between_query_and_delete(monkeypatch, query_class, key_name, refreshes):
    """The cleanup's index query answers as it would; then each session it listed that ``refreshes``
    names is refreshed, once, before the cleanup goes on: a request racing the cleanup, made
    deterministic."""
    fetch = query_class.fetch

    def fetch_then_refresh(self, *args, **kwargs):
        found = list(fetch(self, *args, **kwargs))
        for name in [key_name(e) for e in found]:
            if name in refreshes:
                assert refreshes.pop(name)()
        return found
    monkeypatch.setattr(query_class, "fetch", fetch_then_refresh)


def _cleanup_spares_sessions_refreshed_after_its_query(store, refresh_hook):
    now = int(time.time() * 1000)
    store.create("dormant", _record(now - 2 * DAY, now + 5 * HOUR), now + 5 * HOUR)
    store.create("expiring", _record(now, now + HOUR), now + HOUR)
    store.create("gone", _record(now, now - 1000), now - 1000)
    later = now + 2 * HOUR  # the cleanup's now: "expiring" has expired by then, unless refreshed
    refreshes = {"dormant": lambda: store.touch("dormant", now, now + 5 * HOUR),
                 "expiring": lambda: store.touch("expiring", now, now + 3 * HOUR)}
    refresh_hook(refreshes)
    assert store.delete_expired(later, 86400, 100) == (1, False)
    assert refreshes == {}  # the query did list both, and both were refreshed after it
    assert json.loads(store.load("dormant"))["last_access"] == now
    assert json.loads(store.load("expiring"))["expires_at"] == now + 3 * HOUR
    assert store.load("gone") is None


def _cleanup_uses_the_now_it_is_given(store, exists):
    now = int(time.time() * 1000)
    store.create("expires-in-1h", _record(now, now + HOUR), now + HOUR)
    store.create("expires-in-3h", _record(now, now + 3 * HOUR), now + 3 * HOUR)
    store.create("idle-23h", _record(now - 23 * HOUR, now + 5 * HOUR), now + 5 * HOUR)
    store.create("expired-1s-ago", _record(now, now - 1000), now - 1000)
    store.create("expired-3h-ago", _record(now - 4 * HOUR, now - 3 * HOUR), now - 3 * HOUR)
    store.create("idle-25h", _record(now - 25 * HOUR, now + 5 * HOUR), now + 5 * HOUR)
    store.create("idle-27h", _record(now - 27 * HOUR, now + 5 * HOUR), now + 5 * HOUR)
    # Two hours before the system clock: only what had expired, or idled a day, by then.
    assert store.delete_expired(now - 2 * HOUR, 86400, 100) == (2, False)
    assert not exists("expired-3h-ago") and not exists("idle-27h")
    assert exists("expired-1s-ago") and exists("idle-25h")
    # Two hours after it: what will have expired, or idled a day, by then.
    assert store.delete_expired(now + 2 * HOUR, 86400, 100) == (4, False)
    assert [k for k in ("expires-in-1h", "expires-in-3h", "idle-23h", "expired-1s-ago", "idle-25h")
            if exists(k)] == ["expires-in-3h"]


def test_gae_ndb_cleanup_spares_a_session_refreshed_after_its_query(testbed, monkeypatch):
    from google.appengine.ext.ndb import query
    from vishnu.backend.client import google_app_engine_ndb as gndb
    _cleanup_spares_sessions_refreshed_after_its_query(
        gndb.Store(),
        lambda refreshes: _refresh_between_query_and_delete(monkeypatch, query.Query, lambda key: key.id(), refreshes))


def test_gae_ndb_cleanup_uses_the_now_it_is_given(testbed):
    from vishnu.backend.client import google_app_engine_ndb as gndb
    _cleanup_uses_the_now_it_is_given(gndb.Store(), lambda k: gndb._ndb().Key(gndb.model(), k).get() is not None)


@pytest.fixture
def datastore(datastore_emulator):
    """An empty ``VishnuSession`` kind in the emulator this module shares."""
    from vishnu.backend.client import google_cloud_datastore as gcd
    c = gcd.client()
    q = c.query(kind=gcd.TABLE_NAME)
    q.keys_only()
    c.delete_multi([e.key for e in q.fetch()])
    return gcd


def test_cloud_datastore_cleanup_spares_a_session_refreshed_after_its_query(datastore, monkeypatch):
    from google.cloud.datastore import query
    _cleanup_spares_sessions_refreshed_after_its_query(
        datastore.Store(),
        lambda refreshes: _refresh_between_query_and_delete(monkeypatch, query.Query, lambda e: e.key.name, refreshes))


def test_cloud_datastore_cleanup_uses_the_now_it_is_given(datastore):
    c = datastore.client()
    _cleanup_uses_the_now_it_is_given(datastore.Store(),
                                      lambda k: c.get(c.key(datastore.TABLE_NAME, k)) is not None)


def test_cloud_datastore_client_from_config_keeps_the_originals_client(datastore_emulator):
    import datetime
    from vishnu.backend.client import google_cloud_datastore as gcd
    client = GoogleCloudDatastore().client_from_config("compat-sid")
    assert isinstance(client, gcd.Client) and client.sid == "compat-sid"
    assert client.load() is False
    client["user"] = "ada"
    assert client.get("user") == "ada" and client.last_accessed is not None
    client.expires = datetime.datetime(2100, 1, 1)
    client.save()
    again = GoogleCloudDatastore().client_from_config("compat-sid")
    assert again.load() is True
    assert again.get("user") == "ada"
    assert again.expires == datetime.datetime(2100, 1, 1)
    # The record is the store's own: the engine's Store reads it.
    assert json.loads(gcd.Store().load("compat-sid"))["data"] == {"user": "ada"}
    again.clear()
    assert again.get("user") is None
    assert GoogleCloudDatastore().client_from_config("compat-sid").load() is False
    with pytest.raises(TypeError):
        GoogleCloudDatastore().client_from_config(None)
