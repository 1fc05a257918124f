# Shared helpers for scripts/*.sh and bench/*.sh. Source it; it does nothing by itself.
# shellcheck shell=bash

# Repository root (this file lives in ROOT/scripts).
# shellcheck disable=SC2034  # used by the scripts that source this file
HOTSNAP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Prefix for messages: the name of the script that sourced us.
HOTSNAP_LOG_TAG="$(basename "${0:-hotsnap}")"

log() { printf '[%s] %s\n' "$HOTSNAP_LOG_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$HOTSNAP_LOG_TAG" "$*" >&2; exit 1; }

require_root() {
  if [[ $(id -u) -ne 0 ]]; then
    die "must run as root (it installs packages and/or uses loop devices and mounts); try: sudo $0"
  fi
}

# Print the failing command and line on any unexpected error (set -e exits right after).
trap_err_verbose() {
  # shellcheck disable=SC2154  # rc is assigned inside the trap string
  trap 'rc=$?; printf "[%s] ERROR: command failed (exit %d) at %s:%d: %s\n" \
      "$HOTSNAP_LOG_TAG" "$rc" "${BASH_SOURCE[0]}" "$LINENO" "$BASH_COMMAND" >&2' ERR
}

# Wall-clock seconds since the epoch with nanoseconds, for timing steps.
# Sets `hotsnap` to the binary a script runs: $HOTSNAP_BIN if set (packages are still
# installed, nothing is built), else build/hotsnap (or $HOTSNAP_BUILD_DIR/hotsnap) as
# scripts/setup.sh installs and builds it. Dies if the binary is missing.
resolve_hotsnap_binary() {
  if [[ -n ${HOTSNAP_BIN:-} ]]; then
    HOTSNAP_SKIP_BUILD=1 "$HOTSNAP_ROOT/scripts/setup.sh"
    hotsnap=$HOTSNAP_BIN
  else
    "$HOTSNAP_ROOT/scripts/setup.sh"
    local build_dir="${HOTSNAP_BUILD_DIR:-build}"
    [[ $build_dir == /* ]] || build_dir="$HOTSNAP_ROOT/$build_dir"
    hotsnap="$build_dir/hotsnap"
  fi
  [[ -x $hotsnap ]] || die "hotsnap binary not found: $hotsnap"
}

now() { date +%s.%N; }
# elapsed START [END]: seconds between two now() values, 2 decimals.
elapsed() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.2f", b - a }'; }

# human BYTES: 1.23 GiB style.
human() {
  awk -v b="$1" 'BEGIN {
    split("B KiB MiB GiB TiB", u, " "); i = 1
    while (b >= 1024 && i < 5) { b /= 1024; i++ }
    printf (i == 1 ? "%d %s" : "%.2f %s"), b, u[i] }'
}

# copy_with_budget BUDGET_BYTES DEST SRC_DIR...
# Copies regular files (and the directories holding them) from the SRC_DIRs into DEST,
# preserving the absolute path below DEST (DEST/usr/share/doc/...), in sorted path order,
# stopping before the total apparent size would exceed BUDGET_BYTES. Sorted order makes
# the selection the same on every run of the same machine. Missing SRC_DIRs are skipped.
# Prints the number of bytes copied; returns non-zero if the copy fails.
copy_with_budget() {
  local budget=$1 dest=$2
  shift 2
  local dirs=() d
  for d in "$@"; do [[ -d $d ]] && dirs+=("$d"); done
  if [[ ${#dirs[@]} -eq 0 ]]; then echo 0; return 0; fi
  local list
  list=$(mktemp)
  # Paths with newlines are not expected under /usr; skip them rather than mis-split.
  find "${dirs[@]}" -xdev -type f -readable -printf '%s\t%p\n' 2>/dev/null \
    | LC_ALL=C sort -t $'\t' -k2,2 \
    | awk -F '\t' -v budget="$budget" -v list="$list" '
        { if (total + $1 > budget) next; total += $1; print substr($2, 2) > list }
        END { printf "%d\n", total }'
  local rc=0
  tar -C / --no-recursion --verbatim-files-from -T "$list" -cf - 2>/dev/null \
    | tar -C "$dest" -xf - || rc=$?
  rm -f "$list"
  if [[ $rc -ne 0 ]]; then
    log "ERROR: copying files from ${dirs[*]} to $dest failed (full filesystem?)"
    return "$rc"
  fi
}
