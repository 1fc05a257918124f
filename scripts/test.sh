#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with ctest.
# Exits with ctest's status. This is the README's test command, and what .ci/run runs.
#
# Environment: as for scripts/setup.sh, plus
#   HOTSNAP_TEST_JOBS     parallel tests (default: nproc)
#   HOTSNAP_TEST_TIMEOUT  per-test timeout in seconds, for tests that set none (default: 600)
#   CI                    "true" in CI: privileged tests must not skip there
#   HOTSNAP_SANITIZERS    1: after the plain suite, the whole suite again under ASan+UBSan
#                         (build-asan) and the compression pool under TSan (build-tsan).
#                         Default 0 until these stages have a validated CI time budget.
#   HOTSNAP_FUZZ_SECONDS  seconds each libFuzzer target runs (e.g. 60; default 0 skips
#                         fuzzing), see tests/fuzz/run.sh
#
# Stages: 1. ctest (build)  2. ctest under ASan+UBSan (build-asan)  3. CompressPool tests under
# TSan (build-tsan)  4. every fuzzer (build-fuzz). The exit status is the first failure's.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap_err_verbose
require_root

"$HOTSNAP_ROOT/scripts/setup.sh"

build_dir="${HOTSNAP_BUILD_DIR:-build}"
[[ $build_dir == /* ]] || build_dir="$HOTSNAP_ROOT/$build_dir"

log "running ctest in $build_dir (CI=${CI:-unset})"
status=0
# --no-tests=error: a suite that finds no test at all is a failure, not a silent pass.
ctest --test-dir "$build_dir" --output-on-failure --no-tests=error \
  -j "${HOTSNAP_TEST_JOBS:-$(nproc)}" --timeout "${HOTSNAP_TEST_TIMEOUT:-600}" || status=$?
if [[ $status -ne 0 ]]; then
  log "ctest failed with status $status"
fi

# A separate build with sanitizer flags on every target (HOTSNAP_SANITIZE, see CMakeLists.txt).
sanitized_build() {  # DIR SANITIZERS [TARGET...]
  local dir="$HOTSNAP_ROOT/$1" sanitizers=$2
  shift 2
  cmake -S "$HOTSNAP_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DHOTSNAP_SANITIZE="$sanitizers" >/dev/null
  cmake --build "$dir" -j"${HOTSNAP_JOBS:-$(nproc)}" ${1:+--target "$@"}
}

if [[ ${HOTSNAP_SANITIZERS:-0} == 1 ]]; then
  log "stage 2: the whole suite under ASan+UBSan (build-asan)"
  asan_status=0
  # Leaks, heap errors and undefined behaviour in the tests and in every hotsnap they run fail.
  # The VM suite (label vm) is left out here: it boots a guest with its own copy of hotsnap
  # and already ran in stage 1.
  if sanitized_build build-asan address,undefined; then
    ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" UBSAN_OPTIONS="print_stacktrace=1" \
      ctest --test-dir "$HOTSNAP_ROOT/build-asan" --output-on-failure --no-tests=error -LE vm \
      -j "${HOTSNAP_TEST_JOBS:-$(nproc)}" --timeout "${HOTSNAP_TEST_TIMEOUT:-600}" || asan_status=$?
  else
    asan_status=1
  fi
  [[ $asan_status -eq 0 ]] || log "ASan+UBSan suite failed with status $asan_status"
  [[ $status -ne 0 ]] || status=$asan_status

  log "stage 3: the compression pool under TSan (build-tsan)"
  tsan_status=0
  if sanitized_build build-tsan thread hotsnap_tsan_tests; then
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
      "$HOTSNAP_ROOT/build-tsan/tests/fuzz/hotsnap_tsan_tests" || tsan_status=$?
  else
    tsan_status=1
  fi
  [[ $tsan_status -eq 0 ]] || log "TSan run failed with status $tsan_status"
  [[ $status -ne 0 ]] || status=$tsan_status
fi

if [[ ${HOTSNAP_FUZZ_SECONDS:-0} != 0 ]]; then
  log "stage 4: each libFuzzer target for ${HOTSNAP_FUZZ_SECONDS:-60} s (build-fuzz)"
  fuzz_status=0
  "$HOTSNAP_ROOT/tests/fuzz/run.sh" "${HOTSNAP_FUZZ_SECONDS:-60}" || fuzz_status=$?
  [[ $fuzz_status -eq 0 ]] || log "fuzzing failed with status $fuzz_status"
  [[ $status -ne 0 ]] || status=$fuzz_status
fi
exit "$status"
