# What the framework suite runners share (sourced by flask.sh and starlette.sh):
# the CI rule for Redis, a venv of the framework's own test dependencies with
# the vishnu under test linked in, the sdist, and the two runs.
#
# The runner sets NAME (flask, starlette), then calls these in order.

: "${VENV:?VENV: the venv with vishnu installed}"
: "${WORK:?WORK: a scratch directory}"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

# Under CI (CI=true or 1) the Redis run may not be skipped.
case "${CI:-}" in true|TRUE|True|1)
  if [[ -z "${VISHNU_REDIS_URL:-}" ]]; then
    echo "$NAME suite: VISHNU_REDIS_URL is not set, and under CI the Redis run may not be skipped" >&2
    exit 1
  fi ;;
esac

# suite_venv PACKAGE...: $WORK/venv-$NAME from VENV's Python with PACKAGEs,
# and VENV's vishnu linked (not copied) in: exactly the build under test.
suite_venv() {
  suite_venv="$WORK/venv-$NAME"
  [[ -x "$suite_venv/bin/python" ]] || "$VENV/bin/python" -m venv "$suite_venv"
  "$suite_venv/bin/pip" install --quiet --disable-pip-version-check "$@"
  local vishnu_dir site
  vishnu_dir=$("$VENV/bin/python" -c "import os, vishnu._vishnu, vishnu.$NAME; print(os.path.dirname(vishnu.__file__))")
  mkdir -p "$WORK/under-test"
  ln -sfn "$vishnu_dir" "$WORK/under-test/vishnu"
  site=$("$suite_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$WORK/under-test" > "$site/vishnu-under-test.pth"
}

# fetch_sdist PROJECT VERSION: the release sdist, unpacked as $src.
fetch_sdist() {
  src="$WORK/$1-$2"
  rm -rf "$WORK/sdist" "$src"
  "$suite_venv/bin/pip" download --quiet --disable-pip-version-check --no-binary :all: --no-deps \
    -d "$WORK/sdist" "$1==$2"
  tar -xzf "$WORK/sdist/$1-$2.tar.gz" -C "$WORK"
}

# run_twice TITLE PYTEST-ARGS...: the suite with the default store, then on
# Redis (VISHNU_REDIS_URL; skipped with a notice outside CI), through the
# pytest plugin $WORK/plugin/vishnu_${NAME}_suite.py; a summary line each.
# Exits non-zero on any failure.
run_twice() {
  local title=$1; shift
  local summary=() failed=0 store label status
  for label in default redis; do
    store=""
    if [[ $label == redis ]]; then
      if [[ -z "${VISHNU_REDIS_URL:-}" ]]; then
        summary+=("$NAME redis: SKIPPED (VISHNU_REDIS_URL is not set)")
        continue
      fi
      store=$VISHNU_REDIS_URL
    fi
    echo "== $title, store: $label"
    status=0
    (cd "$src" && VISHNU_STORE="$store" PYTHONPATH="$WORK/plugin" \
       "$suite_venv/bin/python" -m pytest -p "vishnu_${NAME}_suite" -q -rfEs "$@" \
       2>&1 | tee "$WORK/$NAME-$label.log") || status=$?
    [[ $status == 0 ]] || failed=1
    summary+=("$NAME $label: $(tail -n 1 "$WORK/$NAME-$label.log")")
  done
  printf '%s\n' "${summary[@]}"
  exit $failed
}
