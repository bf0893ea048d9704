#!/usr/bin/env bash
# Flask 3.1.2's own session tests (tests/test_basic.py -k session, from its
# release sdist, unmodified) against vishnu.flask.SessionInterface: once with
# the default store (the cookie store, as Flask's default is client-side) and
# once with Redis.
#
#   VENV=target/venv WORK=/tmp/flask-suite [VISHNU_REDIS_URL=redis://…] bash scripts/frameworks/flask.sh
#
# VENV has the vishnu under test installed. The suite runs in its own venv,
# $WORK/venv-flask, made from VENV's Python with the test dependencies Flask
# 3.1.2 locks (its conftest needs pytest 8; other suites want pytest 9), and
# vishnu linked in from VENV. Under CI (CI=true or 1) a missing
# VISHNU_REDIS_URL fails the run. Exits non-zero on any failure.
set -euo pipefail

FLASK_VERSION=3.1.2
PYTEST_VERSION=8.4.1   # Flask 3.1.2's uv.lock

NAME=flask
# shellcheck source=scripts/frameworks/common.sh
source "$(dirname "$0")/common.sh"
suite_venv "flask==$FLASK_VERSION" "pytest==$PYTEST_VERSION" asgiref python-dotenv
fetch_sdist flask "$FLASK_VERSION"

# The only change: every Flask app's session_interface is vishnu's. The
# plugin also fails the run if vishnu served no session (a silent fallback
# to Flask's own would otherwise pass).
mkdir -p "$WORK/plugin"
cat > "$WORK/plugin/vishnu_flask_suite.py" <<'PY'
import os

import flask
import vishnu.flask

INTERFACE = vishnu.flask.SessionInterface(store=os.environ.get("VISHNU_STORE") or None)
flask.Flask.session_interface = INTERFACE


def pytest_report_header(config):
    return "session interface: vishnu.flask.SessionInterface, store %s" % (INTERFACE.store or "cookie (default)")


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0 and session.testscollected and not INTERFACE._engines:
        session.exitstatus = 1
        print("\nvishnu served no session: the suite did not test vishnu")
PY

run_twice "Flask $FLASK_VERSION tests/test_basic.py -k session" tests/test_basic.py -k session
