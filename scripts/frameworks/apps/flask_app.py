"""The demo's routes as a Flask app on vishnu.flask, for real servers (gunicorn).

    VISHNU_STORE=redis://… SECRET_KEY=… gunicorn -w 3 flask_app:app

Routes: GET / (page), GET /public (never touches the session), GET /counter
(an exact increment, whichever worker serves it), POST /login (form field
``user``; a new session id), GET /whoami (401 when not logged in), POST /logout.
"""
import os

import flask

import vishnu.flask
from page import page
from vishnu.session import Superseded

app = flask.Flask(__name__)
app.secret_key = os.environ.get("SECRET_KEY", "flask demo secret: change me")
app.config["VISHNU_STORE"] = os.environ.get("VISHNU_STORE", "memory")
app.config["SESSION_COOKIE_SAMESITE"] = "Lax"  # Flask sends none by default
vishnu.flask.Session(app)


@app.errorhandler(Superseded)
def superseded(_):
    # A write with an id that a login (in another tab) cycled away: nothing
    # was saved, and no cookie goes out that could log the browser out.
    return flask.Response("conflict: the session changed; retry", 409, mimetype="text/plain")


@app.get("/")
def index():
    return page(flask.session.get("counter", 0), flask.session.get("user"))


@app.get("/public")
def public():
    return flask.Response("public", mimetype="text/plain")


@app.get("/counter")
def counter():
    n = flask.session.update_value("counter", lambda n: (n or 0) + 1)
    return flask.Response(str(n), mimetype="text/plain")


@app.post("/login")
def login():
    flask.session["user"] = flask.request.form.get("user", "")
    flask.session.cycle_id()
    return flask.redirect("/", 303)


@app.get("/whoami")
def whoami():
    user = flask.session.get("user")
    if user is None:
        return flask.Response("not logged in", 401, mimetype="text/plain")
    return flask.Response(user, mimetype="text/plain")


@app.post("/logout")
def logout():
    flask.session.clear()
    return flask.redirect("/", 303)
