"""Every server backend through the Python package, against the real servers that
scripts/test.sh starts (URLs in VISHNU_*_URL); plus connection pooling, the GIL
being released during store I/O, and a session shared with the Rust demo."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from vishnu.backend import MySQL, Postgres, PyMemcache, RedisCluster, SQLite, Url
from vishnu.middleware import SessionMiddleware
from vishnu.util import delete_expired_sessions

from conftest import Caller, config, free_port, redis_backend, require_env, routes, skip_or_fail, wait_http


def exercise(caller):
    assert caller("/incr")[1] == "1"
    assert caller("/incr")[1] == "2"
    caller("/set/user/ada")
    assert caller("/get/user")[1] == '"ada"'
    cookie = "vishnu=" + caller.cookie
    threads = [threading.Thread(target=lambda: caller("/incr", cookie=cookie)) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert caller("/get/n")[1] == "18"
    caller("/terminate")
    assert caller("/get/user", cookie=cookie)[1] == "none"


BACKENDS = {
    "redis": redis_backend,
    "redis-cluster": lambda: RedisCluster(require_env("VISHNU_REDIS_CLUSTER_URL").split("://", 1)[1]),
    "memcached-one-node": lambda: PyMemcache(*_host_port(require_env("VISHNU_MEMCACHED_URL"))),
    "memcached-two-nodes": lambda: Url(require_env("VISHNU_MEMCACHED_URL")),
    "postgres": lambda: Postgres(require_env("VISHNU_POSTGRES_URL")),
    "mysql": lambda: MySQL(require_env("VISHNU_MYSQL_URL")),
}


def _host_port(url):
    first = url.split("://", 1)[1].split(",")[0]
    host, port = first.rsplit(":", 1)
    return host, int(port)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_against_its_real_server(name):
    caller = Caller(SessionMiddleware(routes, config(backend=BACKENDS[name](), auto_save=True)))
    exercise(caller)


def test_sqlite_backend_and_cleanup(tmp_path):
    c = config(backend=SQLite(str(tmp_path / "sessions.db")), auto_save=True, timeout=1)
    caller = Caller(SessionMiddleware(routes, c))
    exercise(caller)
    for _ in range(5):
        Caller(caller.app)("/set/user/tmp")
    time.sleep(2.1)
    calls = 0
    while not delete_expired_sessions(c, limit=2):
        calls += 1
        assert calls < 10
    assert calls >= 2


def _redis_command(url, *args):
    """One command over a raw socket (RESP), to inspect the server."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as s:
        payload = "*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args)
        s.sendall(payload.encode())
        data = b""
        while not data.endswith(b"\r\n") or (data.startswith(b"$") and data.count(b"\r\n") < 2):
            data += s.recv(65536)
        return data.decode()


def _connected_clients(url):
    info = _redis_command(url, "INFO", "clients")
    return int(info.split("connected_clients:")[1].split("\r\n")[0])


def test_redis_connections_are_pooled_not_opened_per_request():
    url = require_env("VISHNU_REDIS_URL")
    caller = Caller(SessionMiddleware(routes, config(backend=redis_backend(), auto_save=True)))
    caller("/incr")
    before = _connected_clients(url)
    for _ in range(50):
        caller("/incr")
    assert _connected_clients(url) <= before + 1


def test_store_io_releases_the_gil():
    url = require_env("VISHNU_REDIS_URL")
    caller = Caller(SessionMiddleware(routes, config(backend=redis_backend(), auto_save=True)))
    caller("/incr")
    counter = {"n": 0, "stop": False}

    def spin():
        while not counter["stop"]:
            counter["n"] += 1

    _redis_command(url, "CLIENT", "PAUSE", "700", "ALL")
    t = threading.Thread(target=spin)
    start = time.time()
    t.start()
    try:
        assert caller("/incr")[1] == "2"  # blocks until the pause ends
    finally:
        counter["stop"] = True
        t.join()
    assert time.time() - start >= 0.5, "the pause did not delay the store call"
    assert counter["n"] > 100000, "another Python thread could not run while vishnu waited on Redis"


_SPIN_PROBE = r"""
import asyncio, json, os, sys, threading, time
import vishnu
from vishnu._framework import make_engine

redis_host, redis_port, delay_ms, window_us = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])

async def pipe(reader, writer, delay):
    while True:
        data = await reader.read(65536)
        if not data:
            break
        if delay:
            await asyncio.sleep(delay)
        writer.write(data)
        await writer.drain()
    writer.close()

async def proxy(ready):
    async def handle(reader, writer):
        up_reader, up_writer = await asyncio.open_connection(redis_host, redis_port)
        asyncio.ensure_future(pipe(up_reader, writer, 0))
        await pipe(reader, up_writer, delay_ms / 1000)
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    ready.append(server.sockets[0].getsockname()[1])
    await asyncio.Event().wait()

ready = []
threading.Thread(target=lambda: asyncio.run(proxy(ready)), daemon=True).start()
while not ready:
    time.sleep(0.01)
vishnu.set_spin_wait(window_us)
engine = make_engine("a test secret of any length", store="redis://127.0.0.1:%d/0" % ready[0])
session = engine.begin_value(None)
session.set("n", "1")
cookie = session.finish_cookie(200)[1]
cpu, wall = time.thread_time(), time.perf_counter()
for _ in range(40):
    assert engine.begin_value(cookie).entries() == {"n": "1"}
print(json.dumps({"cpu": time.thread_time() - cpu, "wall": time.perf_counter() - wall}))
"""


def _spin_probe(delay_ms, window_us):
    """CPU and wall time of 40 synchronous loads from Redis behind a proxy that
    delays each request by ``delay_ms``, with a spin window of ``window_us``."""
    url = urllib.parse.urlsplit(require_env("VISHNU_REDIS_URL"))
    out = subprocess.run([sys.executable, "-c", _SPIN_PROBE, url.hostname, str(url.port), str(delay_ms), str(window_us)],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


def test_sync_calls_poll_for_a_fast_reply_and_sleep_through_a_slow_one():
    # A reply within the spin window is polled for: the thread stays on the CPU.
    fast = _spin_probe(delay_ms=5, window_us=50_000)
    assert fast["wall"] >= 0.2, fast
    assert fast["cpu"] > 0.5 * fast["wall"], "the thread slept instead of polling for a reply within the window: %r" % fast
    # A store slower than the window: after a few misses the thread sleeps
    # (a probe in 32 calls still polls), so CPU time stays well below the wait.
    slow = _spin_probe(delay_ms=20, window_us=5_000)
    assert slow["wall"] >= 0.8, slow
    assert slow["cpu"] < 0.25 * slow["wall"], "the thread kept polling a store slower than its window: %r" % slow
    # 0 never polls.
    never = _spin_probe(delay_ms=5, window_us=0)
    assert never["cpu"] < 0.25 * never["wall"], never


def test_set_spin_wait_rejects_what_is_not_a_duration():
    import vishnu
    with pytest.raises((OverflowError, TypeError, ValueError)):
        vishnu.set_spin_wait(-1)
    with pytest.raises(TypeError):
        vishnu.set_spin_wait("100")


def test_a_session_is_shared_with_the_rust_demo(subprocess_server):
    demo = os.environ.get("VISHNU_RUST_DEMO")
    if not demo:
        skip_or_fail("VISHNU_RUST_DEMO is not set", "scripts/test.sh builds the Rust demo and sets it")
    import sys
    store = require_env("VISHNU_REDIS_URL")
    env = {"VISHNU_SECRET": "a shared secret for both demos, 32+ bytes"}
    rust = subprocess_server([demo, "--port", "{port}", "--store", store], env=env)
    python = subprocess_server([sys.executable, "-m", "vishnu.demo", "--port", "{port}", "--store", store], env=env)
    from test_servers import Browser
    b = Browser(python)
    assert b.get("/counter") == (200, "1")
    b.base = rust
    assert b.get("/counter") == (200, "2")  # the Rust demo read and changed the Python session
    b.base = python
    assert b.get("/counter") == (200, "3")


def test_cleanup_judges_by_the_configs_clock(tmp_path):
    from vishnu import _vishnu
    c = config(backend=SQLite(str(tmp_path / "clocked.db")), auto_save=True, timeout=60)
    clock = _vishnu.ManualClock()
    c._clock = clock
    caller = Caller(SessionMiddleware(routes, c))
    caller("/set/user/ada")
    assert delete_expired_sessions(c) is True
    assert caller("/get/user")[1] == '"ada"', "live by the config's clock: kept"
    clock.advance(120)  # expired by the config's clock only; the system clock has not moved
    assert delete_expired_sessions(c) is True
    c2 = config(backend=SQLite(str(tmp_path / "clocked.db")), auto_save=True, timeout=60)
    assert Caller(SessionMiddleware(routes, c2))("/get/user", cookie="vishnu=" + caller.cookie)[1] == "none"
