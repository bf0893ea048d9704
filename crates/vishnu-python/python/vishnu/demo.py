"""The vishnu demo in Python: the same routes as the Rust demo.

    python -m vishnu.demo [--port 3000] [--store memory] [--timeout SECONDS]
"""
import argparse
import html
import os
import sys
import urllib.parse
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import vishnu
from vishnu.backend import Url
from vishnu.middleware import SessionMiddleware
from vishnu.session import Config


def _respond(start_response, status, body, content_type="text/plain; charset=utf-8", headers=()):
    data = body.encode("utf-8")
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))] + list(headers))
    return [data]


def app(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
    if path == "/public" and method == "GET":
        return _respond(start_response, "200 OK", "public")
    session = vishnu.get_session()
    if path == "/" and method == "GET":
        visits = session.get("counter") or 0
        user = session.get("user")
        who = ('<p>Logged in as <b id="user">%s</b></p>' % html.escape(user)) if user else '<p id="user">Not logged in</p>'
        page = (
            "<!doctype html><html><head><title>vishnu demo</title></head><body>"
            '<h1>vishnu demo</h1><p>Visits: <span id="counter">%d</span> (<a href="/counter">count one more</a>)</p>%s'
            '<form method="post" action="/login"><input name="user" placeholder="user name">'
            '<button type="submit">Log in</button></form>'
            '<form method="post" action="/logout"><button id="logout" type="submit">Log out</button></form>'
            "</body></html>" % (visits, who)
        )
        return _respond(start_response, "200 OK", page, "text/html; charset=utf-8")
    if path == "/counter" and method == "GET":
        n = session.update("counter", lambda n: (n or 0) + 1)
        return _respond(start_response, "200 OK", str(n))
    if path == "/login" and method == "POST":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        form = urllib.parse.parse_qs(environ["wsgi.input"].read(size).decode("utf-8"))
        user = (form.get("user") or [""])[0].strip()
        if not user or len(user) > 64:
            return _respond(start_response, "400 Bad Request", "user: 1 to 64 characters")
        session["user"] = user
        session.cycle_id()  # a new id after login defeats session fixation
        return _respond(start_response, "303 See Other", "", headers=[("Location", "/")])
    if path == "/whoami" and method == "GET":
        user = session.get("user")
        if user is None:
            return _respond(start_response, "401 Unauthorized", "not logged in")
        return _respond(start_response, "200 OK", user)
    if path == "/logout" and method == "POST":
        session.terminate()
        return _respond(start_response, "303 See Other", "", headers=[("Location", "/")])
    return _respond(start_response, "404 Not Found", "not found")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vishnu.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--store", default="memory")
    parser.add_argument("--timeout", type=int, default=None)
    args = parser.parse_args(argv)
    config = Config(
        secret=os.environ.get("VISHNU_SECRET", "demo secret: change me, at least 32 bytes long"),
        backend=Url(args.store),
        auto_save=True,
        # The demo serves plain http on localhost, where browsers drop Secure
        # cookies; the library default (secure=True) stays on for real apps.
        secure=False,
        timeout=args.timeout,
    )
    try:
        config._get_engine()
    except Exception as e:  # a bad --store: say so and stop
        print("demo: --store %s: %s" % (args.store, e), file=sys.stderr)
        return 2
    server = make_server("127.0.0.1", args.port, SessionMiddleware(app, config),
                         server_class=_ThreadingServer, handler_class=_QuietHandler)
    print("vishnu demo (Python) on http://127.0.0.1:%d (store: %s)" % (args.port, args.store), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
