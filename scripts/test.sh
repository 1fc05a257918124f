#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with ctest.
# Exits with ctest's status. This is the README's test command, and what .ci/run runs.
#
# Environment: as for scripts/setup.sh, plus
#   HOTSNAP_TEST_JOBS     parallel tests (default: nproc)
#   HOTSNAP_TEST_TIMEOUT  per-test timeout in seconds, for tests that set none (default: 600)
#   CI                    "true" in CI: privileged tests must not skip there
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
exit "$status"
