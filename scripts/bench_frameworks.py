#!/usr/bin/env python3
"""The python-frameworks benchmark suite: one real app per framework, vishnu beside the
framework's own session in the same app, driven in-process in a loop (a prepared WSGI environ
or ASGI scope, no sockets).

usage: bench_frameworks.py SCENARIO LIBRARY [LIBRARY...] [--quick] [--redis URL]

  flask-cookie-write      vishnu | flask-cookie   (Flask's default signed-cookie session)
  flask-redis-write       vishnu | flask-session  (Flask-Session 0.8 on Redis)
  starlette-cookie-write  vishnu | starlette      (Starlette's SessionMiddleware)
  django-redis-write      vishnu | django-cache   (Django's cache backend on its Redis cache)

Every app serves one route that reads and writes the session (``n += 1``); only the session
implementation differs. Each (scenario, library) runs in a process of its own (Django is
configured once per process). With several libraries, their processes take turns, three
times each, and each row is the median of its three: a machine that gets busier during the
run slows every library alike. Prints a JSON list of rows
{"suite": "python-frameworks", "scenario", "library", "metric", "value", "unit"}.
"""
import asyncio
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_wsgi import environ  # noqa: E402  (the WSGI request and loop, shared with python-wsgi)
from bench_wsgi import run as run_wsgi  # noqa: E402

SECRET = "benchmark secret of at least 32 characters"


def flask_app(library, redis_url):
    import flask
    app = flask.Flask("bench")
    app.secret_key = SECRET

    @app.route("/write")
    def write():
        n = flask.session.get("n", 0) + 1
        flask.session["n"] = n
        return str(n)

    if library == "vishnu":
        import vishnu.flask
        app.session_interface = vishnu.flask.SessionInterface(store=redis_url or "cookie")
    elif library == "flask-session":
        import redis
        from flask_session import Session
        app.config.update(SESSION_TYPE="redis", SESSION_REDIS=redis.Redis.from_url(redis_url))
        Session(app)
    elif library != "flask-cookie":
        raise SystemExit("unknown library %r for Flask" % library)
    return app.wsgi_app


def django_app(library, redis_url):
    import django
    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import path

    def write(request):
        n = request.session.get("n", 0) + 1
        request.session["n"] = n
        return HttpResponse(str(n))

    engine = {"vishnu": "vishnu.django", "django-cache": "django.contrib.sessions.backends.cache"}
    if library not in engine:
        raise SystemExit("unknown library %r for Django" % library)
    settings.configure(
        DEBUG=False, SECRET_KEY=SECRET, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        INSTALLED_APPS=["django.contrib.sessions"], DATABASES={},
        SESSION_ENGINE=engine[library], VISHNU_STORE=redis_url,
        CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}},
    )
    globals()["urlpatterns"] = [path("write", write)]
    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    return WSGIHandler()


def starlette_app(library):
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    if library == "vishnu":
        from vishnu.starlette import SessionMiddleware
    elif library == "starlette":
        from starlette.middleware.sessions import SessionMiddleware
    else:
        raise SystemExit("unknown library %r for Starlette" % library)

    async def write(request):
        n = request.session.get("n", 0) + 1
        request.session["n"] = n
        return PlainTextResponse(str(n))

    return Starlette(routes=[Route("/write", write)], middleware=[Middleware(SessionMiddleware, secret_key=SECRET)])


def scope(path, cookie=None):
    """A GET request's ASGI scope, with a Cookie header when given one (bytes)."""
    headers = [(b"host", b"localhost")]
    if cookie is not None:
        headers.append((b"cookie", cookie))
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": headers, "server": ("localhost", 80),
            "client": ("127.0.0.1", 40000), "state": {}}


async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}


def run_asgi(app, path, rounds, iters):
    """Median microseconds per request through an ASGI app, with the cookie of a first request."""
    cookie = {}

    async def send(message):
        if message["type"] == "http.response.start":
            for k, v in message.get("headers", []):
                if k.lower() == b"set-cookie":
                    cookie["value"] = v.split(b";")[0]

    async def call():
        await app(scope(path, cookie.get("value")), receive, send)

    async def main():
        await call()  # create the session and its cookie
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(iters):
                await call()
            samples.append((time.perf_counter() - start) * 1e6 / iters)
        return statistics.median(samples)

    return asyncio.run(main())


SCENARIOS = {
    "flask-cookie-write": ("wsgi", lambda lib, url: flask_app(lib, None)),
    "flask-redis-write": ("wsgi", flask_app),
    "starlette-cookie-write": ("asgi", lambda lib, url: starlette_app(lib)),
    "django-redis-write": ("wsgi", django_app),
}


def answers_200(kind, app):
    """Whether the app answers its route with 200: a failing app (a store that
    is down) must not be timed as if it worked."""
    if kind == "asgi":
        seen = []

        async def send(message):
            if message["type"] == "http.response.start":
                seen.append(message["status"])

        asyncio.run(app(scope("/write"), receive, send))
        return seen == [200]
    status = []
    for _ in app(environ("/write"), lambda s, h, e=None: status.append(s)):
        pass
    return status[:1] == ["200 OK"]


def measure(scenario, library, quick, redis_url):
    """Microseconds per request for one library, measured in this process."""
    kind, make = SCENARIOS[scenario]
    app = make(library, redis_url)
    if not answers_200(kind, app):
        raise SystemExit("%s: %s does not answer 200 (is its store up?)" % (scenario, library))
    rounds, iters = (3, 1000) if quick else (7, 5000)
    return (run_wsgi if kind == "wsgi" else run_asgi)(app, "/write", rounds, iters)


def in_turns(scenario, libraries, flags):
    """Each library in a process of its own, taking turns three times; the median of each."""
    import subprocess
    samples = {library: [] for library in libraries}
    for _ in range(3):
        for library in libraries:
            out = subprocess.run([sys.executable, __file__, scenario, library] + flags,
                                 check=True, stdout=subprocess.PIPE, text=True).stdout
            samples[library].append(json.loads(out)[0]["value"])
    return {library: statistics.median(values) for library, values in samples.items()}


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    quick = "--quick" in sys.argv
    redis_url = sys.argv[sys.argv.index("--redis") + 1] if "--redis" in sys.argv else None
    if redis_url in args:
        args.remove(redis_url)
    if len(args) < 2 or args[0] not in SCENARIOS:
        print(__doc__, file=sys.stderr)
        return 2
    scenario, libraries = args[0], args[1:]
    if "redis" in scenario and not redis_url:
        raise SystemExit("%s needs --redis URL" % scenario)
    if len(libraries) == 1:
        times = {libraries[0]: measure(scenario, libraries[0], quick, redis_url)}
    else:
        flags = (["--quick"] if quick else []) + (["--redis", redis_url] if redis_url else [])
        times = in_turns(scenario, libraries, flags)
    rows = []
    for library, us in times.items():
        rows += [{"suite": "python-frameworks", "scenario": scenario, "library": library,
                  "metric": metric, "value": value, "unit": unit}
                 for metric, value, unit in (("us_per_request", us, "us"), ("requests_per_s", 1e6 / us, "1/s"))]
        if len(libraries) > 1:
            print("python-frameworks %-24s %-14s %10.2f us/request" % (scenario, library, us), file=sys.stderr)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
