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

: "${VENV:?VENV: the venv with vishnu installed}"
: "${WORK:?WORK: a scratch directory}"
case "${CI:-}" in true|TRUE|True|1) under_ci=1 ;; *) under_ci=0 ;; esac
if [[ -z "${VISHNU_REDIS_URL:-}" && $under_ci == 1 ]]; then
  echo "flask suite: VISHNU_REDIS_URL is not set, and under CI the Redis run may not be skipped" >&2
  exit 1
fi

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
vishnu_dir=$("$VENV/bin/python" -c 'import os, vishnu._vishnu, vishnu.flask; print(os.path.dirname(vishnu.__file__))')

suite_venv="$WORK/venv-flask"
[[ -x "$suite_venv/bin/python" ]] || "$VENV/bin/python" -m venv "$suite_venv"
"$suite_venv/bin/pip" install --quiet --disable-pip-version-check \
  "flask==$FLASK_VERSION" "pytest==$PYTEST_VERSION" asgiref python-dotenv
# The vishnu under test, linked rather than copied: exactly VENV's build.
mkdir -p "$WORK/under-test"
ln -sfn "$vishnu_dir" "$WORK/under-test/vishnu"
site=$("$suite_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$WORK/under-test" > "$site/vishnu-under-test.pth"

rm -rf "$WORK/sdist" "$WORK/flask-$FLASK_VERSION"
"$suite_venv/bin/pip" download --quiet --disable-pip-version-check --no-binary :all: --no-deps \
  -d "$WORK/sdist" "flask==$FLASK_VERSION"
tar -xzf "$WORK/sdist/flask-$FLASK_VERSION.tar.gz" -C "$WORK"

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

run() {  # run NAME STORE
  local name=$1 store=$2 status=0
  echo "== Flask $FLASK_VERSION tests/test_basic.py -k session, store: $name"
  (cd "$WORK/flask-$FLASK_VERSION" && VISHNU_STORE="$store" PYTHONPATH="$WORK/plugin" \
     "$suite_venv/bin/python" -m pytest -p vishnu_flask_suite -q -rfEs tests/test_basic.py -k session \
     2>&1 | tee "$WORK/flask-$name.log") || status=$?
  summary+=("flask $name: $(tail -n 1 "$WORK/flask-$name.log")")
  return $status
}

summary=()
failed=0
run default "" || failed=1
if [[ -n "${VISHNU_REDIS_URL:-}" ]]; then
  run redis "$VISHNU_REDIS_URL" || failed=1
else
  summary+=("flask redis: SKIPPED (VISHNU_REDIS_URL is not set)")
fi
printf '%s\n' "${summary[@]}"
exit $failed
