"""vishnu.starlette beyond Starlette's own session tests (scripts/frameworks/
starlette.sh runs those): concurrent requests, tampered cookies, store
failures, key rotation, an event loop never blocked on the store,
websockets, id changes, FastAPI, and a session shared with a Flask app."""
import asyncio
import socket
import threading
import time
import urllib.parse

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient

from vishnu.starlette import Session, SessionMiddleware

from conftest import free_port, require_env

from test_flask import SECRET, CountingStore, cookie_of
from test_flask import make_app as make_flask_app

try:  # Starlette 1.10's TestClient prefers httpx2 (httpx's API under another name)
    import httpx2 as httpx
except ImportError:
    import httpx


@pytest.fixture(params=["cookie", "redis"])
def store(request):
    """The default client-side store, and the Redis server scripts/test.sh starts."""
    return require_env("VISHNU_REDIS_URL") if request.param == "redis" else request.param


class Meeting(object):
    """Holds each arriving request until `parties` have arrived."""

    def __init__(self, parties):
        self.parties, self.arrived, self.all_here = parties, 0, asyncio.Event()

    async def wait(self):
        self.arrived += 1
        if self.arrived >= self.parties:
            self.all_here.set()
        await asyncio.wait_for(self.all_here.wait(), 10)


def make_app(store, **options):
    async def public(request):
        return PlainTextResponse("public")

    async def get(request):
        return JSONResponse(request.session.get(request.path_params["key"]))

    async def set_(request):
        request.session[request.path_params["key"]] = request.path_params["value"]
        return PlainTextResponse("set")

    async def race(request):
        key = request.path_params["key"]
        request.session.get("seed")
        await request.app.state.meeting.wait()  # both requests have read the session
        request.session[key] = key
        return PlainTextResponse("ok")

    async def incr_race(request):
        request.session.get("n")
        await request.app.state.meeting.wait()  # both requests have read n
        return PlainTextResponse(str(await request.session.update_value("n", lambda n: (n or 0) + 1)))

    async def login(request):
        request.session["user"] = request.path_params["user"]
        await request.session.cycle_id()
        return PlainTextResponse("welcome")

    async def logout(request):
        await request.session.terminate()
        return PlainTextResponse("bye")

    async def fail(request):
        request.session[request.path_params["key"]] = request.path_params["value"]
        return PlainTextResponse("failed", status_code=503)

    async def clear_and_fail(request):
        request.session.clear()
        return PlainTextResponse("failed", status_code=500)

    async def ws(websocket):
        await websocket.accept()
        await websocket.send_json(websocket.session.get("user"))
        websocket.session["seen"] = "by the websocket"
        await websocket.close()

    app = Starlette(
        routes=[
            Route("/public", public), Route("/get/{key}", get), Route("/set/{key}/{value}", set_),
            Route("/race/{key}", race), Route("/incr-race", incr_race), Route("/login/{user}", login), Route("/logout", logout),
            Route("/fail/{key}/{value}", fail), Route("/clear-and-fail", clear_and_fail),
            WebSocketRoute("/ws", ws),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key=options.pop("secret_key", SECRET),
                               store=store, **options)],
    )
    app.state.meeting = Meeting(2)
    return app


def client_for(app, cookie=None, base_url="http://testserver"):
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)
    if cookie is not None:
        client.cookies.set("session", cookie, domain="testserver.local")
    return client


def run(coroutine):
    return asyncio.run(coroutine)


async def json_of(client, path):
    rv = await client.get(path)
    assert rv.status_code == 200
    return rv.json()


# -- values and cookies ----------------------------------------------------------

def test_values_survive_and_request_session_is_a_session(store):
    async def main():
        async with client_for(make_app(store)) as client:
            await client.get("/set/user/ada")
            assert await json_of(client, "/get/user") == "ada"
            rv = await client.get("/public")
            assert "set-cookie" not in rv.headers and "vary" not in rv.headers
    run(main())
    assert isinstance(Session({"a": 1}), dict)


def test_a_tampered_cookie_starts_a_fresh_session(store):
    async def main():
        app = make_app(store)
        async with client_for(app) as client:
            await client.get("/set/user/ada")
            value = client.cookies["session"]
        flipped = value[:10] + ("A" if value[10] != "A" else "B") + value[11:]
        async with client_for(app, flipped) as client:
            assert await json_of(client, "/get/user") is None
            await client.get("/set/user/mallory")
            assert client.cookies["session"] not in (value, flipped)
    run(main())


def test_partitioned_cookie(store):
    async def main():
        app = make_app(store, https_only=True, same_site="none", partitioned=True)
        async with client_for(app, base_url="https://testserver") as client:
            rv = await client.get("/set/user/ada")
            attributes = rv.headers["set-cookie"].split("; ")
            assert {"partitioned", "secure", "samesite=none"} <= set(attributes)
    run(main())


def test_secret_rotation_with_fallback_secret_keys(store):
    async def main():
        async with client_for(make_app(store, secret_key="old key")) as client:
            await client.get("/set/user/ada")
            old_cookie = client.cookies["session"]
        rotated = make_app(store, secret_key="new key", fallback_secret_keys=["old key"])
        async with client_for(rotated, old_cookie) as client:
            rv = await client.get("/get/user")
            assert rv.json() == "ada" and "set-cookie" in rv.headers  # re-issued under the new key
            new_cookie = client.cookies["session"]
        async with client_for(make_app(store, secret_key="new key"), new_cookie) as client:
            assert await json_of(client, "/get/user") == "ada"
        async with client_for(make_app(store, secret_key="new key"), old_cookie) as client:
            assert await json_of(client, "/get/user") is None
    run(main())


# -- the store -------------------------------------------------------------------

def test_concurrent_requests_changing_different_keys_both_keep_their_change():
    url = require_env("VISHNU_REDIS_URL")

    async def main():
        app = make_app(url)
        async with client_for(app) as client:
            await client.get("/set/seed/1")
            cookie = client.cookies["session"]
            async with client_for(app, cookie) as a, client_for(app, cookie) as b:
                ra, rb = await asyncio.gather(a.get("/race/a"), b.get("/race/b"))
            assert (ra.status_code, rb.status_code) == (200, 200)
            assert [await json_of(client, "/get/" + k) for k in ("a", "b", "seed")] == ["a", "b", "1"]
    run(main())


def test_update_value_counts_both_of_two_overlapping_increments():
    url = require_env("VISHNU_REDIS_URL")

    async def main():
        app = make_app(url)
        async with client_for(app) as client:
            await client.get("/set/seed/1")
            cookie = client.cookies["session"]
            async with client_for(app, cookie) as a, client_for(app, cookie) as b:
                ra, rb = await asyncio.gather(a.get("/incr-race"), b.get("/incr-race"))
            assert sorted([ra.text, rb.text]) == ["1", "2"]
            assert await json_of(client, "/get/n") == 2
    run(main())


def test_a_burst_of_concurrent_requests_each_setting_its_own_key_loses_none():
    url = require_env("VISHNU_REDIS_URL")

    async def main():
        app = make_app(url)
        async with client_for(app) as client:
            await client.get("/set/seed/1")
            cookie = client.cookies["session"]

            async def request(i):
                async with client_for(app, cookie) as other:
                    assert (await other.get("/set/k%d/%d" % (i, i))).status_code == 200

            await asyncio.gather(*(request(i) for i in range(16)))
            assert [await json_of(client, "/get/k%d" % i) for i in range(16)] == [str(i) for i in range(16)]
    run(main())


def test_the_store_is_read_once_and_only_when_the_request_has_a_cookie():
    counting = CountingStore()

    async def main():
        app = make_app(counting)
        async with client_for(app) as client:
            await client.get("/public")
            await client.get("/set/user/ada")
            assert (counting.loads, counting.writes) == (0, 1)
            assert await json_of(client, "/get/user") == "ada"
            await client.get("/set/user/ada")  # the same value again: no write
            assert (counting.loads, counting.writes) == (2, 1)
    run(main())


class DelayingProxy(object):
    """A TCP proxy in front of a server that holds each client message back
    for `delay` seconds: a slow network, with nothing in the process slowed."""

    def __init__(self, target, delay):
        self.target, self.delay = target, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, server, self.delay), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, 0), daemon=True).start()

    @staticmethod
    def _pipe(source, sink, delay):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                time.sleep(delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


def test_store_io_never_blocks_the_event_loop():
    redis = urllib.parse.urlsplit(require_env("VISHNU_REDIS_URL"))
    proxy = DelayingProxy((redis.hostname, redis.port), 0.3)

    async def main():
        app = make_app("redis://127.0.0.1:%d%s" % (proxy.port, redis.path))
        async with client_for(app) as client:
            await client.get("/set/user/ada")
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            task = asyncio.ensure_future(ticker())
            started = time.monotonic()
            assert await json_of(client, "/get/user") == "ada"  # a load through the slow network
            elapsed = time.monotonic() - started
            task.cancel()
            assert elapsed >= 0.3 and ticks >= 10, (elapsed, ticks)
    try:
        run(main())
    finally:
        proxy.close()


def test_a_store_failure_is_a_clean_500():
    flaky = CountingStore()

    async def main():
        async with client_for(make_app(flaky)) as client:
            await client.get("/set/user/ada")
            cookie = client.cookies["session"]
            flaky.fail = True
            for path in ("/get/user", "/set/user/bob"):
                rv = await client.get(path)
                assert (rv.status_code, rv.content) == (500, b"")
                assert "set-cookie" not in rv.headers
            flaky.fail = False
            client.cookies.set("session", cookie, domain="testserver.local")
            assert await json_of(client, "/get/user") == "ada"
    run(main())


def test_a_failed_request_changes_nothing(store):
    async def main():
        async with client_for(make_app(store)) as client:
            await client.get("/set/user/ada")
            assert (await client.get("/fail/user/mallory")).status_code == 503
            assert (await client.get("/clear-and-fail")).status_code == 500
            assert await json_of(client, "/get/user") == "ada"
    run(main())


def test_a_store_down_at_startup_fails_only_the_requests_that_use_the_session():
    async def main():
        async with client_for(make_app("redis://127.0.0.1:%d/0" % free_port())) as client:
            assert (await client.get("/public")).text == "public"
            rv = await client.get("/set/user/ada")
            assert (rv.status_code, rv.content) == (500, b"")
            client.cookies.set("session", "any", domain="testserver.local")
            assert (await client.get("/public")).status_code == 500  # a cookie: the session is loaded
    run(main())


def test_a_failure_while_saving_is_a_clean_500():
    flaky = CountingStore()

    async def main():
        async with client_for(make_app(flaky)) as client:
            await client.get("/set/user/ada")
            flaky.save = lambda *a: (_ for _ in ()).throw(ConnectionError("injected failure at 10.1.2.3"))
            rv = await client.get("/set/user/bob")
            assert (rv.status_code, rv.content) == (500, b"")
            del flaky.save
            assert await json_of(client, "/get/user") == "ada"
    run(main())


# -- id changes, websockets ------------------------------------------------------

def test_login_cycles_the_id_and_logout_ends_the_session():
    url = require_env("VISHNU_REDIS_URL")

    async def main():
        app = make_app(url)
        async with client_for(app) as client:
            await client.get("/set/cart/3")
            before = client.cookies["session"]
            await client.get("/login/ada")
            after = client.cookies["session"]
            assert after != before
            assert [await json_of(client, "/get/" + k) for k in ("user", "cart")] == ["ada", "3"]
            rv = await client.get("/logout")
            assert "expires=Thu, 01 Jan 1970" in rv.headers["set-cookie"]
        async with client_for(app, after) as replay:
            assert await json_of(replay, "/get/user") is None

        async with client_for(app) as client:
            await client.get("/set/cart/3")
            before = client.cookies["session"]
            await client.get("/login/ada")
            async with client_for(app, before) as stale:  # the cycled-away id, within the grace window
                rv = await stale.get("/set/user/mallory")
                assert (rv.status_code, rv.content, rv.headers.get("set-cookie")) == (409, b"", None)
                rv = await stale.get("/login/mallory")
                assert (rv.status_code, rv.headers.get("set-cookie")) == (409, None)
            assert await json_of(client, "/get/user") == "ada"
    run(main())


def test_a_websocket_reads_the_session_and_saves_its_changes():
    app = make_app(require_env("VISHNU_REDIS_URL"))
    with TestClient(app) as client:
        client.get("/set/user/ada")
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_json() == "ada"
        assert client.get("/get/seen").json() == "by the websocket"


# -- other frameworks --------------------------------------------------------------

def test_a_session_is_shared_with_a_flask_app():
    url = require_env("VISHNU_REDIS_URL")
    flask_client = make_flask_app(url).test_client()
    flask_client.get("/set/user/ada")

    async def main():
        async with client_for(make_app(url), cookie_of(flask_client)) as client:
            assert await json_of(client, "/get/user") == "ada"
            await client.get("/set/lang/en")
    run(main())
    assert flask_client.get("/get/lang").data == b"'en'"


def test_fastapi_request_session():
    import fastapi
    app = fastapi.FastAPI()
    app.add_middleware(SessionMiddleware, secret_key=SECRET, store=require_env("VISHNU_REDIS_URL"))

    @app.get("/count")
    async def count(request: fastapi.Request):
        request.session["n"] = request.session.get("n", 0) + 1
        return {"n": request.session["n"]}

    async def main():
        async with client_for(app) as client:
            assert [(await client.get("/count")).json()["n"] for _ in range(3)] == [1, 2, 3]
    run(main())
