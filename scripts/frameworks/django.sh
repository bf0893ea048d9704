#!/usr/bin/env bash
# Django's own session tests against vishnu.django, through Django's runtests.py.
#
#   VENV=target/venv WORK=/tmp/django [VISHNU_REDIS_URL=redis://…] bash scripts/frameworks/django.sh
#
# Installs Django into $VENV (vishnu must be installed there already), fetches
# Django's sdist from the package index into $WORK and leaves its
# tests/sessions_tests/tests.py unmodified: a module added next to it runs
# SessionTestsMixin against vishnu.django.SessionStore and SessionMiddlewareTests
# under SESSION_ENGINE="vishnu.django". The one test left out,
# test_empty_session_saved, reads Django's database session model directly.
# Runs twice: the memory store, then Redis (VISHNU_REDIS_URL; required under
# CI=true/1, skipped with a notice otherwise). Exits non-zero on any failure.
set -euo pipefail
DJANGO_VERSION=5.2.8
: "${VENV:?set VENV to the Python venv (with vishnu installed)}"
: "${WORK:?set WORK to a directory for the Django sdist}"
py="$VENV/bin/python"
ci=false
case "${CI:-}" in true | TRUE | True | 1) ci=true ;; esac

"$py" -m pip install --quiet "django==$DJANGO_VERSION"
mkdir -p "$WORK"
sdist="$WORK/django-$DJANGO_VERSION.tar.gz"
[ -f "$sdist" ] || "$py" -m pip download --quiet --no-binary :all: --no-deps "django==$DJANGO_VERSION" -d "$WORK"
rm -rf "$WORK/django-$DJANGO_VERSION"
tar -xzf "$sdist" -C "$WORK"
tests="$WORK/django-$DJANGO_VERSION/tests"

cat >"$tests/sessions_tests/test_vishnu.py" <<'EOF'
"""vishnu.django against Django's own session tests (tests.py is unmodified;
this module is added by vishnu's scripts/frameworks/django.sh)."""
import unittest

from django.test import SimpleTestCase, override_settings

import vishnu.django

# The module, not its classes: a TestCase imported by name would run here too.
from . import tests as django_tests


class VishnuSessionTests(django_tests.SessionTestsMixin, SimpleTestCase):
    backend = vishnu.django.SessionStore


@override_settings(SESSION_ENGINE="vishnu.django")
class VishnuSessionMiddlewareTests(django_tests.SessionMiddlewareTests):
    @unittest.skip("reads django.contrib.sessions' database model (Session.objects) directly")
    def test_empty_session_saved(self):
        pass
EOF

cat >"$tests/vishnu_settings.py" <<'EOF'
"""Django's test settings with the vishnu store from the environment."""
import os

from test_sqlite import *  # noqa: F401,F403

VISHNU_STORE = os.environ.get("VISHNU_STORE", "memory")
EOF

summary=()
failed=0
run() { # label store-url
  local log="$WORK/django-$1.log" rc=0
  printf '\n---- Django %s sessions_tests, vishnu.django on %s\n' "$DJANGO_VERSION" "$1"
  (cd "$tests" && VISHNU_STORE="$2" "$py" -u runtests.py sessions_tests.test_vishnu \
    --settings=vishnu_settings --parallel=1 --noinput -v 2) >"$log" 2>&1 || rc=$?
  grep -E '(ERROR|FAIL|skipped)' "$log" | grep -E '^(test_|ERROR:|FAIL:)' || true
  local ran result
  ran=$(grep -E '^Ran [0-9]+ tests' "$log" | tail -1 || true)
  result=$(grep -E '^(OK|FAILED)' "$log" | tail -1 || true)
  if [ "$rc" -ne 0 ] || [ "${result%% *}" != OK ]; then
    tail -60 "$log"
    failed=1
    summary+=("$1: FAILED (exit $rc) ${ran:-no tests ran} ${result}")
  else
    summary+=("$1: ${ran}, ${result}")
  fi
}

run memory memory
if [ -n "${VISHNU_REDIS_URL:-}" ]; then
  run redis "$VISHNU_REDIS_URL"
elif $ci; then
  echo "VISHNU_REDIS_URL is not set, and under CI the Redis run may not be skipped" >&2
  summary+=("redis: FAILED (VISHNU_REDIS_URL not set)")
  failed=1
else
  summary+=("redis: not run (VISHNU_REDIS_URL not set)")
fi

printf '\n---- Django %s session tests on vishnu.django\n' "$DJANGO_VERSION"
printf '  %s\n' "${summary[@]}"
exit "$failed"
