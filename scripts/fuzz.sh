#!/usr/bin/env bash
# Runs a cargo-fuzz target for a given time: the CI smoke run and the long runs.
#
#   scripts/fuzz.sh TARGET SECONDS    TARGET: cookie_header, cookie_value, record, or all (each in turn)
#
# cargo-fuzz builds with unstable flags (-Zsanitizer=address). It uses the
# nightly toolchain when `cargo +nightly` is there; otherwise the default
# (stable) toolchain with RUSTC_BOOTSTRAP=1, which lets a stable compiler take
# those flags (its AddressSanitizer runtime ships with rust-std).
# VISHNU_FUZZ_TOOLCHAIN=nightly or =stable picks one. It installs cargo-fuzz
# when missing (`cargo install cargo-fuzz --locked`). Whatever cannot run fails;
# VISHNU_FUZZ_OPTIONAL=1 turns that into "skipped" and exit 0, except under CI
# (CI=true or CI=1), where the run is always required.
#
# One libFuzzer process on one core (-jobs=1 -workers=1). The fuzzer reads the
# committed seed corpus fuzz/corpus/TARGET/ but never writes to it: new inputs
# go to fuzz/target/fuzz-work/TARGET/corpus/ (kept between runs; delete it to
# start from the seeds alone), libFuzzer's log to fuzz/target/fuzz-work/TARGET/fuzz-0.log,
# and crashing inputs to fuzz/artifacts/TARGET/. A crash, a timeout or a leak
# fails the run and prints the artifact's path and how to reproduce it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
fuzz_dir="$root/fuzz"
targets=(cookie_header cookie_value record)

usage() {
  echo "usage: scripts/fuzz.sh {$(IFS='|'; echo "${targets[*]}")|all} SECONDS" >&2
  exit 2
}
[ $# -eq 2 ] || usage
target=$1
seconds=$2
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || usage
case " ${targets[*]} all " in
  *" $target "*) ;;
  *) usage ;;
esac

under_ci() { case "${CI:-}" in [Tt][Rr][Uu][Ee] | 1) return 0 ;; *) return 1 ;; esac; }

cannot_run() { # message
  if [ "${VISHNU_FUZZ_OPTIONAL:-0}" = 1 ] && ! under_ci; then
    echo "scripts/fuzz.sh: skipped: $1"
    exit 0
  fi
  echo "scripts/fuzz.sh: $1" >&2
  under_ci && echo "  (under CI the fuzzing smoke run is required)" >&2
  exit 1
}

toolchain=${VISHNU_FUZZ_TOOLCHAIN:-}
if [ -z "$toolchain" ]; then
  if cargo +nightly --version >/dev/null 2>&1; then toolchain=nightly; else toolchain=stable; fi
fi
case "$toolchain" in
  nightly)
    cargo +nightly --version >/dev/null 2>&1 || cannot_run "VISHNU_FUZZ_TOOLCHAIN=nightly, but cargo +nightly is not available"
    cargo=(cargo +nightly)
    ;;
  stable)
    # The default toolchain, allowed cargo-fuzz's -Z flags.
    export RUSTC_BOOTSTRAP=1
    cargo=(cargo)
    ;;
  *) echo "scripts/fuzz.sh: VISHNU_FUZZ_TOOLCHAIN is nightly or stable, not $toolchain" >&2; exit 2 ;;
esac
reproduce=$([ "$toolchain" = stable ] && echo "RUSTC_BOOTSTRAP=1 cargo fuzz" || echo "cargo +nightly fuzz")

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==== installing cargo-fuzz"
  cargo install cargo-fuzz --locked || cannot_run "cargo install cargo-fuzz --locked failed"
fi
echo "==== toolchain: $toolchain, $("${cargo[@]}" --version)${RUSTC_BOOTSTRAP:+, RUSTC_BOOTSTRAP=1}"

run_one() { # target
  local t=$1
  local work="$fuzz_dir/target/fuzz-work/$t"
  local artifacts="$fuzz_dir/artifacts/$t"
  mkdir -p "$work/corpus" "$artifacts"
  local marker="$work/.started"
  : >"$marker"
  rm -f "$work/fuzz-0.log"
  echo "==== fuzzing $t for ${seconds}s (seeds: fuzz/corpus/$t, corpus: ${work#"$root"/}/corpus)"
  local rc=0
  # Run from the work directory: with -jobs, libFuzzer writes fuzz-0.log to the current directory.
  (cd "$work" && "${cargo[@]}" fuzz run --fuzz-dir "$fuzz_dir" "$t" \
    "$work/corpus" "$fuzz_dir/corpus/$t" -- \
    -max_total_time="$seconds" -jobs=1 -workers=1 -timeout=20 -print_final_stats=1) || rc=$?
  local found
  found=$(find "$artifacts" -type f -newer "$marker" | sort)
  # libFuzzer's last status line: "#RUNS DONE cov: ... ft: ... corp: ..." when it ran its time.
  local status
  status=$(grep -E '^#[0-9]+[[:space:]]' "$work/fuzz-0.log" 2>/dev/null | tail -n 1 || true)
  echo "==== $t: ${status:-no status line} (log: ${work#"$root"/}/fuzz-0.log)"
  if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
    echo "==== $t FAILED (exit $rc); crashing input(s):" >&2
    if [ -n "$found" ]; then
      while IFS= read -r f; do
        echo "  $f" >&2
        echo "    reproduce: $reproduce run --fuzz-dir fuzz $t ${f#"$root"/}" >&2
      done <<<"$found"
    else
      echo "  none written; see ${work#"$root"/}/fuzz-0.log" >&2
    fi
    return 1
  fi
}

if [ "$target" = all ]; then
  failed=()
  for t in "${targets[@]}"; do
    run_one "$t" || failed+=("$t")
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "scripts/fuzz.sh: failed: ${failed[*]}" >&2
    exit 1
  fi
else
  run_one "$target"
fi
