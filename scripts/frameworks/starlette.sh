#!/usr/bin/env bash
# Starlette 1.10.0's own session tests (tests/middleware/test_session.py, from
# its release sdist) against vishnu.starlette: once with the default store
# (the cookie store, as Starlette's sessions are client-side) and once with
# Redis. The one change to the test file is its import line, pointed at
# vishnu.starlette (sed); the Redis run changes SessionMiddleware's default
# store through a pytest plugin, the test file staying the same.
#
#   VENV=target/venv WORK=/tmp/starlette-suite [VISHNU_REDIS_URL=redis://…] bash scripts/frameworks/starlette.sh
#
# VENV has the vishnu under test installed. The suite runs in its own venv,
# $WORK/venv-starlette, made from VENV's Python with the test dependencies
# Starlette 1.10.0 locks (pytest 9.1.1, httpx2, blockbuster, which fails a
# test that blocks the event loop), and vishnu linked in from VENV. Under CI
# (CI=true or 1) a missing VISHNU_REDIS_URL fails the run. Exits non-zero on
# any failure.
set -euo pipefail

STARLETTE_VERSION=1.10.0
# From Starlette 1.10.0's uv.lock.
TEST_DEPS=(pytest==9.1.1 httpx2==2.13.1 anyio==4.15.1 blockbuster==1.5.28 trio==0.34.0)

NAME=starlette
# shellcheck source=scripts/frameworks/common.sh
source "$(dirname "$0")/common.sh"
suite_venv "starlette==$STARLETTE_VERSION" "${TEST_DEPS[@]}"
fetch_sdist starlette "$STARLETTE_VERSION"
test_file="$src/tests/middleware/test_session.py"
import_line='from starlette.middleware.sessions import Session, SessionMiddleware'
grep -qxF "$import_line" "$test_file" || { echo "starlette suite: the import line to replace is gone" >&2; exit 1; }
sed -i "s|^$import_line\$|from vishnu.starlette import Session, SessionMiddleware|" "$test_file"
diff <(tar -xzOf "$WORK/sdist/starlette-$STARLETTE_VERSION.tar.gz" "starlette-$STARLETTE_VERSION/tests/middleware/test_session.py") \
  "$test_file" || true

# The Redis run: SessionMiddleware's default store becomes VISHNU_STORE. The
# plugin also fails the run if vishnu served no session.
mkdir -p "$WORK/plugin"
cat > "$WORK/plugin/vishnu_starlette_suite.py" <<'PY'
import os

import vishnu.starlette

STORE = os.environ.get("VISHNU_STORE") or None
SERVED = []
_init = vishnu.starlette.SessionMiddleware.__init__


def _init_with_store(self, app, secret_key, *args, **kwargs):
    if STORE is not None and len(args) < 8:
        kwargs.setdefault("store", STORE)
    SERVED.append(kwargs.get("store", "cookie"))
    _init(self, app, secret_key, *args, **kwargs)


vishnu.starlette.SessionMiddleware.__init__ = _init_with_store


def pytest_report_header(config):
    return "session middleware: vishnu.starlette.SessionMiddleware, store %s" % (STORE or "cookie (default)")


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0 and session.testscollected and not SERVED:
        session.exitstatus = 1
        print("\nvishnu served no session: the suite did not test vishnu")
PY

run_twice "Starlette $STARLETTE_VERSION tests/middleware/test_session.py" tests/middleware/test_session.py
