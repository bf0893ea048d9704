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

: "${VENV:?VENV: the venv with vishnu installed}"
: "${WORK:?WORK: a scratch directory}"
case "${CI:-}" in true|TRUE|True|1) under_ci=1 ;; *) under_ci=0 ;; esac
if [[ -z "${VISHNU_REDIS_URL:-}" && $under_ci == 1 ]]; then
  echo "starlette suite: VISHNU_REDIS_URL is not set, and under CI the Redis run may not be skipped" >&2
  exit 1
fi

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
vishnu_dir=$("$VENV/bin/python" -c 'import os, vishnu._vishnu; print(os.path.dirname(vishnu.__file__))')

suite_venv="$WORK/venv-starlette"
[[ -x "$suite_venv/bin/python" ]] || "$VENV/bin/python" -m venv "$suite_venv"
"$suite_venv/bin/pip" install --quiet --disable-pip-version-check \
  "starlette==$STARLETTE_VERSION" "${TEST_DEPS[@]}"
# The vishnu under test, linked rather than copied: exactly VENV's build.
mkdir -p "$WORK/under-test"
ln -sfn "$vishnu_dir" "$WORK/under-test/vishnu"
site=$("$suite_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$WORK/under-test" > "$site/vishnu-under-test.pth"

src="$WORK/starlette-$STARLETTE_VERSION"
rm -rf "$WORK/sdist" "$src"
"$suite_venv/bin/pip" download --quiet --disable-pip-version-check --no-binary :all: --no-deps \
  -d "$WORK/sdist" "starlette==$STARLETTE_VERSION"
tar -xzf "$WORK/sdist/starlette-$STARLETTE_VERSION.tar.gz" -C "$WORK"
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

run() {  # run NAME STORE
  local name=$1 store=$2 status=0
  echo "== Starlette $STARLETTE_VERSION tests/middleware/test_session.py, store: $name"
  (cd "$src" && VISHNU_STORE="$store" PYTHONPATH="$WORK/plugin" \
     "$suite_venv/bin/python" -m pytest -p vishnu_starlette_suite -q -rfEs tests/middleware/test_session.py \
     2>&1 | tee "$WORK/starlette-$name.log") || status=$?
  summary+=("starlette $name: $(tail -n 1 "$WORK/starlette-$name.log")")
  return $status
}

summary=()
failed=0
run default "" || failed=1
if [[ -n "${VISHNU_REDIS_URL:-}" ]]; then
  run redis "$VISHNU_REDIS_URL" || failed=1
else
  summary+=("starlette redis: SKIPPED (VISHNU_REDIS_URL is not set)")
fi
printf '%s\n' "${summary[@]}"
exit $failed
