"""Fixtures: a WSGI test app, an in-process caller, and real WSGI servers."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

import vishnu
from vishnu.backend import Memory, Redis
from vishnu.middleware import SessionMiddleware
from vishnu.session import Config

SECRET = "a test secret that is at least 32 characters"
KEY = "a test encryption key of 32+ characters"


def routes(environ, start_response):
    """A plain WSGI app whose paths exercise the session."""
    path = environ.get("PATH_INFO", "/")
    parts = [p for p in path.split("/") if p]
    session = vishnu.get_session()

    def ok(body, status="200 OK"):
        data = body if isinstance(body, bytes) else str(body).encode("utf-8")
        start_response(status, [("Content-Type", "text/plain")])
        return [data]

    cmd = parts[0] if parts else ""
    if cmd == "public":
        return ok("public")
    if cmd == "get":
        value = session.get(parts[1])
        return ok("none" if value is None else json.dumps(value))
    if cmd == "set":
        session[parts[1]] = parts[2]
        session.save()
        return ok("saved")
    if cmd == "put":
        session[parts[1]] = parts[2]
        return ok("put")
    if cmd == "save":
        session.save()
        return ok("saved")
    if cmd == "incr":
        return ok(session.update("n", lambda n: (n or 0) + 1))
    if cmd == "terminate":
        session.terminate()
        return ok("bye")
    if cmd == "timeout":
        session.timeout = vishnu.session.TIMEOUT_SESSION if parts[1] == "session" else int(parts[1])
        session.save()
        return ok("timeout")
    if cmd == "stream":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b"start "
            vishnu.get_session()["late"] = "yes"
            yield b"end"
        return body()
    if cmd == "raise":
        session["doomed"] = "yes"
        raise RuntimeError("application failure")
    if cmd == "fail":
        session["user"] = "mallory"
        return ok("failed", "503 Service Unavailable")
    if cmd == "keys":
        return ok(",".join(session.keys()))
    # A user's sessions: /login/<user>[/<label>], /user, /sessions, /revoke/<handle>, ...
    if cmd == "login":
        if len(parts) > 2:
            session.set_label(parts[2])
        session.login(parts[1])
        return ok("welcome")
    if cmd == "user":
        return ok(session.user or "none")
    if cmd == "sessions":
        return ok(json.dumps(session.sessions()))
    if cmd == "revoke":
        return ok(json.dumps(session.revoke(parts[1])))
    if cmd == "revoke-others":
        return ok(session.revoke_others())
    if cmd == "revoke-all":
        return ok(session.revoke_all())
    return ok("not found", "404 Not Found")


def config(**kw):
    kw.setdefault("backend", Memory())
    kw.setdefault("secure", False)
    return Config(secret=kw.pop("secret", SECRET), **kw)


class Caller(object):
    """Calls a WSGI app in-process, keeping the session cookie like a browser."""

    def __init__(self, app, cookie_name="vishnu"):
        self.app = app
        self.cookie_name = cookie_name
        self.cookie = None

    def __call__(self, path, cookie=None, method="GET"):
        environ = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "localhost",
            "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": None,
        }
        sent = cookie if cookie is not None else (
            "%s=%s" % (self.cookie_name, self.cookie) if self.cookie else None)
        if sent:
            environ["HTTP_COOKIE"] = sent
        out = {}

        def start_response(status, headers, exc_info=None):
            out["status"], out["headers"] = status, headers

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        set_cookies = [v for k, v in out["headers"] if k.lower() == "set-cookie"]
        for c in set_cookies:
            pair, _, attrs = c.partition(";")
            name, _, value = pair.partition("=")
            if name == self.cookie_name:
                self.cookie = None if (not value or "Max-Age=0" in attrs) else value
        return int(out["status"].split()[0]), body.decode("utf-8"), set_cookies


@pytest.fixture
def caller():
    return Caller(SessionMiddleware(routes, config(auto_save=True)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError("server at %s did not start" % url)


@pytest.fixture
def wsgiref_server():
    """Serves a WSGI app with wsgiref in a thread; yields a function app -> base URL."""
    servers = []

    class Quiet(WSGIRequestHandler):
        def log_message(self, *a):
            pass

    def serve(app):
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIServer

        class Threading(ThreadingMixIn, WSGIServer):
            daemon_threads = True

        server = make_server("127.0.0.1", 0, app, server_class=Threading, handler_class=Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return "http://127.0.0.1:%d" % server.server_port

    yield serve
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def subprocess_server():
    """Starts a WSGI server command (with {port}) as a subprocess; yields a function -> base URL."""
    procs = []

    def start(argv, env=None):
        port = free_port()
        argv = [a.format(port=port) for a in argv]
        full_env = dict(os.environ, **(env or {}))
        full_env["PYTHONPATH"] = os.path.dirname(__file__) + os.pathsep + full_env.get("PYTHONPATH", "")
        proc = subprocess.Popen(argv, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        base = "http://127.0.0.1:%d" % port
        try:
            wait_http(base + "/public")
        except RuntimeError:
            proc.kill()
            raise RuntimeError("%s failed: %s" % (argv[0], proc.stderr.read().decode()[-2000:]))
        return base

    yield start
    for p in procs:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()


def under_ci():
    """Whether this is a CI run: CI is `true` or `1`, as CI systems set it."""
    return os.environ.get("CI", "").lower() in ("true", "1")


def skip_or_fail(why, how):
    """Skips the test outside CI; under CI, where no test may pass by skipping, fails it."""
    if under_ci():
        pytest.fail("%s, and under CI no test may skip: %s" % (why, how))
    pytest.skip("%s (%s)" % (why, how))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI any skip that did not come through skip_or_fail is a failure too."""
    outcome = yield
    report = outcome.get_result()
    if under_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = "skipped under CI, where no test may skip: %s" % (report.longrepr,)


def redis_backend():
    """The Redis server that scripts/test.sh starts, as a Redis backend."""
    url = urllib.parse.urlsplit(require_env("VISHNU_REDIS_URL"))
    return Redis(host=url.hostname, port=url.port, db=int((url.path or "/0").strip("/") or 0))


def require_env(name):
    """A server URL from the environment; under CI a missing server fails the test."""
    value = os.environ.get(name)
    if not value:
        skip_or_fail("%s is not set" % name, "scripts/test.sh starts the servers")
    return value
