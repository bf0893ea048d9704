#!/usr/bin/env python3
"""In-process WSGI benchmarks: a prepared environ and start_response in a loop, no sockets.

usage: bench_wsgi.py LIBRARY [--quick] [--redis URL]
LIBRARY: floor | vishnu | vishnu-3.1.1 | beaker | flask-cookie
Prints a JSON list of rows {"suite","scenario","library","metric","value","unit"}.
Run by scripts/bench.sh: `vishnu` (this project) and `vishnu-3.1.1` (the original
from PyPI) share a module name, so each runs in its own virtualenv.
"""
import io
import json
import statistics
import sys
import time
import urllib.parse

SECRET = "benchmark secret of at least 32 characters"


def counter_app(get_session, save):
    def app(environ, start_response):
        session = get_session(environ)
        n = session.get("n") or 0
        if environ["PATH_INFO"] == "/write":
            session["n"] = n + 1
            save(session)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(n).encode()]
    return app


def environ(path, cookie=None):
    """A GET request's WSGI environ, with a Cookie header when given one."""
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "localhost", "SERVER_PORT": "80",
           "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
           "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
           "wsgi.version": (1, 0), "SCRIPT_NAME": "", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1"}
    if cookie is not None:
        env["HTTP_COOKIE"] = cookie
    return env


def run(app, path, rounds, iters):
    """Median microseconds per request, with the cookie set by a first request."""
    cookie = {}

    def start_response(status, headers, exc_info=None):
        for k, v in headers:
            if k.lower() == "set-cookie":
                cookie["value"] = v.split(";")[0]

    def call(p):
        result = app(environ(p, cookie.get("value")), start_response)
        for _ in result:
            pass
        if hasattr(result, "close"):
            result.close()

    call("/write")  # create the session and its cookie
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(iters):
            call(path)
        samples.append((time.perf_counter() - start) * 1e6 / iters)
    return statistics.median(samples)


def apps(library, redis_url):
    """(scenario, path, wsgi app) for this library."""
    if library == "floor":
        def bare(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"0"]
        return [(s, "/write", bare) for s in ("memory-write", "redis-read", "redis-write", "cookie-write")]
    if library in ("vishnu", "vishnu-3.1.1"):
        import vishnu
        from vishnu.middleware import SessionMiddleware
        from vishnu.session import Config
        from vishnu.backend import Redis
        u = urllib.parse.urlsplit(redis_url) if redis_url else None
        app = counter_app(lambda e: vishnu.get_session(), lambda s: s.save())
        out = []
        if u:
            cfg = Config(secret=SECRET, secure=False, backend=Redis(host=u.hostname, port=u.port, db=0))
            out += [("redis-read", "/read", SessionMiddleware(app, cfg)), ("redis-write", "/write", SessionMiddleware(app, cfg))]
        if library == "vishnu":
            from vishnu.backend import Cookie, Memory
            out.append(("memory-write", "/write", SessionMiddleware(app, Config(secret=SECRET, secure=False, backend=Memory()))))
            out.append(("cookie-write", "/write", SessionMiddleware(app, Config(secret=SECRET, secure=False, backend=Cookie()))))
        return out
    if library == "beaker":
        from beaker.middleware import SessionMiddleware
        app = counter_app(lambda e: e["beaker.session"], lambda s: s.save())
        return [
            ("memory-write", "/write", SessionMiddleware(app, {"session.type": "memory", "session.auto": False})),
            ("cookie-write", "/write", SessionMiddleware(app, {"session.type": "cookie", "session.validate_key": SECRET,
                                                                "session.encrypt_key": SECRET, "session.auto": False})),
        ]
    if library == "flask-cookie":
        import flask
        f = flask.Flask("bench")
        f.secret_key = SECRET

        @f.route("/write")
        def write():
            n = flask.session.get("n") or 0
            flask.session["n"] = n + 1
            return str(n)
        return [("cookie-write", "/write", f.wsgi_app)]
    raise SystemExit("unknown library %r" % library)


def main():
    library = sys.argv[1]
    quick = "--quick" in sys.argv
    redis_url = sys.argv[sys.argv.index("--redis") + 1] if "--redis" in sys.argv else None
    rounds, iters = (3, 2000) if quick else (7, 20000)
    rows = []
    for scenario, path, app in apps(library, redis_url):
        us = run(app, path, rounds, iters)
        for metric, value, unit in (("us_per_request", us, "us"), ("requests_per_s", 1e6 / us, "1/s")):
            rows.append({"suite": "python-wsgi", "scenario": scenario, "library": library,
                         "metric": metric, "value": value, "unit": unit})
        print("python-wsgi     %-12s %-18s %10.2f us/request" % (scenario, library, us), file=sys.stderr)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
