"""The vishnu demo in Python: the same routes as the Rust demo.

    python -m vishnu.demo [--port 3000] [--store memory] [--timeout SECONDS]
        [--renew-every SECONDS] [--grace SECONDS]

Routes: GET / (page), GET /public (never touches the session), GET /counter,
POST /login (form field user: binds the session to the user, labels it with
the User-Agent, cycles the id), GET /whoami, POST /logout, and a user's
sessions: GET /sessions (JSON; 401 when not logged in, 501 on the cookie
store), POST /sessions/revoke (form field handle), POST /sessions/revoke-others,
POST /sessions/revoke-all (each 303). A write with an id that a login cycled
away, inside the grace window, answers 409 with no cookie.
"""
import argparse
import html
import json
import os
import sys
import urllib.parse
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import vishnu
from vishnu.backend import Url
from vishnu.middleware import SessionMiddleware
from vishnu.session import Config, Unsupported


def _respond(start_response, status, body, content_type="text/plain; charset=utf-8", headers=()):
    data = body.encode("utf-8")
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))] + list(headers))
    return [data]


def _form(environ):
    """The urlencoded request body as a dict of first values (blank values kept)."""
    try:
        size = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        size = 0
    body = environ["wsgi.input"].read(size) if size > 0 else b""
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in form.items()}


def _user_agent(environ):
    """The User-Agent as the Rust demo reads it: empty unless visible ASCII, at most 200 characters."""
    agent = environ.get("HTTP_USER_AGENT", "")
    if not all(c == "\t" or " " <= c <= "~" for c in agent):
        return ""
    return agent[:200]


def _not_logged_in(start_response):
    return _respond(start_response, "401 Unauthorized", "not logged in")


def _unsupported(start_response, error):
    # The cookie store keeps no server state: a user's sessions cannot be listed.
    return _respond(start_response, "501 Not Implemented", str(error))


def _sessions_routes(environ, start_response, session, path, method):
    """GET /sessions and the revoke routes; None for any other path."""
    if path == "/sessions" and method == "GET":
        form = None
    elif path in ("/sessions/revoke", "/sessions/revoke-others", "/sessions/revoke-all") and method == "POST":
        form = _form(environ)
        if path == "/sessions/revoke" and "handle" not in form:
            return _respond(start_response, "422 Unprocessable Entity",
                            "Failed to deserialize form body: missing field `handle`")
    else:
        return None
    try:
        if session.user is None:
            return _not_logged_in(start_response)
        if path == "/sessions":
            listed = [{"handle": s["handle"], "current": s["current"], "created_at": s["created_at"],
                       "last_access": s["last_access"], "label": s["label"]} for s in session.sessions()]
            return _respond(start_response, "200 OK", json.dumps(listed, separators=(",", ":")),
                            "application/json")
        if path == "/sessions/revoke":
            session.revoke(form["handle"])
        elif path == "/sessions/revoke-others":
            session.revoke_others()
        else:
            session.revoke_all()
    except Unsupported as e:
        return _unsupported(start_response, e)
    return _respond(start_response, "303 See Other", "", headers=[("Location", "/")])


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
        user = _form(environ).get("user", "").strip()
        if not user or len(user) > 64:
            return _respond(start_response, "400 Bad Request", "user: 1 to 64 characters")
        session["user"] = user
        session.set_label(_user_agent(environ))
        # Bind to the user and take a new id: an id known before (fixation) is worthless after.
        session.login(user)
        return _respond(start_response, "303 See Other", "", headers=[("Location", "/")])
    if path == "/whoami" and method == "GET":
        user = session.get("user")
        if user is None:
            return _respond(start_response, "401 Unauthorized", "not logged in")
        return _respond(start_response, "200 OK", user)
    if path == "/logout" and method == "POST":
        session.terminate()
        return _respond(start_response, "303 See Other", "", headers=[("Location", "/")])
    answer = _sessions_routes(environ, start_response, session, path, method)
    if answer is not None:
        return answer
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
    parser.add_argument("--renew-every", type=int, default=None, metavar="SECONDS",
                        help="give a used session a new id at most this often (default off)")
    parser.add_argument("--grace", type=int, default=None, metavar="SECONDS",
                        help="the cycle and renewal grace windows (default 10)")
    args = parser.parse_args(argv)
    grace = {} if args.grace is None else {"cycle_grace": args.grace, "renew_grace": args.grace}
    try:
        config = Config(
            secret=os.environ.get("VISHNU_SECRET", "demo secret: change me, at least 32 bytes long"),
            backend=Url(args.store),
            auto_save=True,
            # The demo serves plain http on localhost, where browsers drop Secure
            # cookies; the library default (secure=True) stays on for real apps.
            secure=False,
            timeout=args.timeout,
            renew_every=args.renew_every,
            **grace
        )
    except (TypeError, ValueError) as e:
        print("demo: configuration: %s" % e, file=sys.stderr)
        return 2
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
