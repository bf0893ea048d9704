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
