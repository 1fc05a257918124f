#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) in build-fuzz and runs each for a bounded
# time, starting from the seed corpus in tests/fuzz/corpus/TARGET (real small images and their
# frames, plus every input that once crashed a target: a regression check on each run).
# Prints each target's executions and crashes; exits non-zero if any target crashed, leaked,
# hit undefined behaviour, ran out of memory or timed out on one input.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET]      # default 60
#
# Environment:
#   HOTSNAP_FUZZ_BUILD_DIR  build directory (default: build-fuzz under the repository root)
#   HOTSNAP_FUZZ_JOBS       targets run at once (default: nproc)
#   HOTSNAP_FUZZ_TARGETS    space-separated subset of targets (default: all)
# New corpus entries go to BUILD_DIR/corpus-work/TARGET, crashing inputs to
# BUILD_DIR/artifacts/; copy a crashing input into tests/fuzz/corpus/TARGET once it is fixed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
seconds="${1:-60}"
build="${HOTSNAP_FUZZ_BUILD_DIR:-$root/build-fuzz}"
jobs="${HOTSNAP_FUZZ_JOBS:-$(nproc)}"
targets="${HOTSNAP_FUZZ_TARGETS:-fuzz_metadata fuzz_trailer fuzz_seek_table fuzz_frames fuzz_scan_image fuzz_image_index fuzz_chunk_decode}"

log() { printf '[fuzz] %s\n' "$*" >&2; }

command -v clang++ >/dev/null || { log "clang++ not found (scripts/packages.txt lists clang)"; exit 1; }
log "building the fuzz targets in $build"
mkdir -p "$build"
cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DHOTSNAP_FUZZ=ON -DHOTSNAP_SANITIZE=address,undefined >"$build/fuzz-configure.log" 2>&1 \
  || { cat "$build/fuzz-configure.log" >&2; log "configure failed"; exit 1; }
# shellcheck disable=SC2086
cmake --build "$build" -j"$(nproc)" --target $targets >"$build/fuzz-build.log" 2>&1 \
  || { tail -50 "$build/fuzz-build.log" >&2; log "build failed"; exit 1; }

mkdir -p "$build/artifacts" "$build/logs"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

run_one() {
  local target=$1 work="$build/corpus-work/$1" seeds="$root/tests/fuzz/corpus/$1"
  mkdir -p "$work"
  # -rss_limit_mb: a parser that allocates what a hostile header asks for fails here.
  # -timeout: one input taking more than 10 s is a hang.
  # The stream scanner buffers only bytes that arrived (at most twice a 256 KiB input, 1 MiB at
  # least) plus one decoded chunk (at most 64 MiB): any allocation near a size an input merely
  # declares goes past 128 MiB.
  local malloc_mb=1024
  [[ $target == fuzz_scan_image ]] && malloc_mb=128
  local rc=0
  "$build/fuzz/$target" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb="$malloc_mb" \
    -timeout=10 -max_len=262144 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$target-" "$work" "$seeds" >"$build/logs/$target.log" 2>&1 || rc=$?
  echo "$rc" >"$build/logs/$target.rc"
}

declare -A pid_of
status=0
running=0
for target in $targets; do
  rm -f "$build/logs/$target.rc"
  run_one "$target" &
  pid_of[$target]=$!
  running=$((running + 1))
  if (( running >= jobs )); then wait -n || true; running=$((running - 1)); fi
done
total_execs=0
for target in $targets; do
  wait "${pid_of[$target]}" 2>/dev/null || true
  rc=$(cat "$build/logs/$target.rc" 2>/dev/null || echo 1)
  logf="$build/logs/$target.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logf" | tail -1)
  execs=${execs:-0}
  total_execs=$((total_execs + execs))
  crashes=$(find "$build/artifacts" -name "$target-*" | wc -l)
  if [[ $rc -ne 0 ]]; then
    status=1
    printf '%-20s FAILED  executions %10s  crash artifacts %s (exit %s)\n' "$target" "$execs" "$crashes" "$rc"
    grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|deadly signal|out-of-memory' "$logf" || true
    tail -40 "$logf" >&2
  else
    printf '%-20s ok      executions %10s  crash artifacts %s\n' "$target" "$execs" "$crashes"
  fi
done
printf 'fuzz: %s targets x %s s, %s executions in total, %s\n' "$(wc -w <<<"$targets")" "$seconds" \
  "$total_execs" "$([[ $status -eq 0 ]] && echo 'no crash' || echo 'CRASHES FOUND')"
exit "$status"
