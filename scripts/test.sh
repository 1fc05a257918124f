#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite: ctest, then the suite again
# under ASan+UBSan, the compression pool under TSan, and every libFuzzer target. This is the
# README's test command, and what .ci/run runs. Exits non-zero if any stage failed (with the
# first failing stage's status); prints each stage's wall time and a summary at the end.
#
# Environment: as for scripts/setup.sh, plus
#   HOTSNAP_TEST_JOBS     parallel tests (default: nproc)
#   HOTSNAP_TEST_TIMEOUT  per-test timeout in seconds, for tests that set none (default: 600)
#   CI                    "true" in CI: privileged tests must not skip there
#   HOTSNAP_SANITIZERS    1 (default): stages 2 and 3; 0 skips both (quicker local runs)
#   HOTSNAP_FUZZ_SECONDS  seconds each libFuzzer target runs (default 60; 0 skips stage 4),
#                         see tests/fuzz/run.sh
#
# Stages and their measured wall times on the 2-core CI machine kind (see tests/RELIABILITY.md,
# "CI time budget"):
#   1. build + ctest (build): the whole suite, including the VM tests (label vm)
#   2. ASan+UBSan build + ctest (build-asan): the whole suite except the VM tests, which boot
#      a guest with its own copy of hotsnap and ran in stage 1
#   3. TSan build + the compression pool's tests (build-tsan)
#   4. fuzz build + every libFuzzer target for HOTSNAP_FUZZ_SECONDS (build-fuzz)
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap_err_verbose
require_root

build_dir="${HOTSNAP_BUILD_DIR:-build}"
[[ $build_dir == /* ]] || build_dir="$HOTSNAP_ROOT/$build_dir"
jobs="${HOTSNAP_TEST_JOBS:-$(nproc)}"
timeout_s="${HOTSNAP_TEST_TIMEOUT:-600}"
sanitizers="${HOTSNAP_SANITIZERS:-1}"
fuzz_seconds="${HOTSNAP_FUZZ_SECONDS:-60}"

status=0            # the first failing stage's status
summary=()          # one line per stage: name, wall time, result
script_started=$(now)

# run_stage NAME COMMAND...: runs one stage, logs and records its wall time and result.
run_stage() {
  local name=$1 started rc=0
  shift
  log "stage $name: starting"
  started=$(now)
  "$@" || rc=$?
  local secs
  secs=$(elapsed "$started")
  if [[ $rc -eq 0 ]]; then
    log "stage $name: passed in $secs s"
    summary+=("$(printf '%-28s %8s s  passed' "$name" "$secs")")
  else
    log "stage $name: FAILED (status $rc) after $secs s"
    summary+=("$(printf '%-28s %8s s  FAILED (status %d)' "$name" "$secs" "$rc")")
    [[ $status -ne 0 ]] || status=$rc
  fi
}

# Printed however the script ends.
print_summary() {
  local rc=$? line
  log "summary (wall time per stage):"
  for line in "${summary[@]}"; do log "  $line"; done
  log "  $(printf '%-28s %8s s  %s' total "$(elapsed "$script_started")" \
    "$([[ $rc -eq 0 ]] && echo passed || echo "FAILED (exit $rc)")")"
}
trap print_summary EXIT

# Stage 1. If installing or building fails, the script stops: the other stages would fail
# the same way.
plain_suite() {
  "$HOTSNAP_ROOT/scripts/setup.sh" || { log "setup or build failed; stopping"; exit 1; }
  log "running ctest in $build_dir (CI=${CI:-unset})"
  # --no-tests=error: a suite that finds no test at all is a failure, not a silent pass.
  ctest --test-dir "$build_dir" --output-on-failure --no-tests=error -j "$jobs" --timeout "$timeout_s"
}

# A separate build with sanitizer flags on every target (HOTSNAP_SANITIZE, see CMakeLists.txt).
sanitized_build() {  # DIR SANITIZERS [TARGET...]
  local dir="$HOTSNAP_ROOT/$1" sanitizers=$2
  shift 2
  cmake -S "$HOTSNAP_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DHOTSNAP_SANITIZE="$sanitizers" >/dev/null || return 1
  cmake --build "$dir" -j"${HOTSNAP_JOBS:-$(nproc)}" ${1:+--target "$@"}
}

# Stage 2. Leaks, heap errors and undefined behaviour in the tests and in every hotsnap they
# run fail the test (HOTSNAP_SANITIZE builds with -fno-sanitize-recover=all).
asan_suite() {
  sanitized_build build-asan address,undefined || return 1
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" UBSAN_OPTIONS="print_stacktrace=1" \
    ctest --test-dir "$HOTSNAP_ROOT/build-asan" --output-on-failure --no-tests=error -LE vm \
    -j "$jobs" --timeout "$timeout_s"
}

# Stage 3.
tsan_pool() {
  sanitized_build build-tsan thread hotsnap_tsan_tests || return 1
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
    "$HOTSNAP_ROOT/build-tsan/tests/fuzz/hotsnap_tsan_tests"
}

run_stage "1 suite (build)" plain_suite
if [[ $sanitizers == 1 ]]; then
  run_stage "2 ASan+UBSan suite" asan_suite
  run_stage "3 TSan compression pool" tsan_pool
else
  log "HOTSNAP_SANITIZERS=$sanitizers: skipping stages 2 and 3"
fi
if [[ $fuzz_seconds != 0 ]]; then
  run_stage "4 fuzzing (${fuzz_seconds} s/target)" "$HOTSNAP_ROOT/tests/fuzz/run.sh" "$fuzz_seconds"
else
  log "HOTSNAP_FUZZ_SECONDS=0: skipping stage 4"
fi

exit "$status"
