"""WSGI apps for server subprocesses (gunicorn, waitress): `wsgi_apps:plain` and `wsgi_apps:flask_app`."""
import os

from conftest import SECRET, config, routes
from vishnu.backend import Url
from vishnu.middleware import SessionMiddleware

_store = os.environ.get("VISHNU_TEST_STORE", "memory")
plain = SessionMiddleware(routes, config(backend=Url(_store), auto_save=True))


def _make_flask():
    import flask
    import vishnu

    app = flask.Flask(__name__)

    @app.route("/public")
    def public():
        return "public"

    @app.route("/login/<user>")
    def login(user):
        session = vishnu.get_session()
        session["user"] = user
        session.cycle_id()
        return "welcome"

    @app.route("/whoami")
    def whoami():
        user = vishnu.get_session().get("user")
        return (user, 200) if user else ("not logged in", 401)

    @app.route("/incr")
    def incr():
        return str(vishnu.get_session().update("n", lambda n: (n or 0) + 1))

    app.wsgi_app = SessionMiddleware(app.wsgi_app, config(backend=Url(_store), auto_save=True))
    return app


flask_app = _make_flask()
