#!/usr/bin/env bash
# Installs what hotsnap needs to build and test (Debian 12, as root), then configures and
# builds it into ./build. Safe to run again: apt is skipped when every package in
# scripts/packages.txt is already installed, and the build is incremental.
#
#   ./scripts/setup.sh            # or: source scripts/setup.sh (runs the same steps)
#
# Environment:
#   HOTSNAP_BUILD_DIR   build directory, absolute or relative to the repository root
#                       (default: build)
#   HOTSNAP_JOBS        parallel build jobs (default: nproc)
#   HOTSNAP_SKIP_BUILD  if 1, only install packages
#
# When sourced, the steps run in a subshell so the caller's shell options are untouched;
# afterwards HOTSNAP_ROOT, HOTSNAP_BUILD_DIR (absolute) and HOTSNAP_BIN are set for the
# caller, and a failure is returned (not exited) as the status of `source`.

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOTSNAP_BUILD_DIR="${HOTSNAP_BUILD_DIR:-build}"
[[ $HOTSNAP_BUILD_DIR == /* ]] || HOTSNAP_BUILD_DIR="$HOTSNAP_ROOT/$HOTSNAP_BUILD_DIR"
HOTSNAP_BIN="$HOTSNAP_BUILD_DIR/hotsnap"

# Package names from packages.txt, comments and blank lines removed.
hotsnap_package_list() {
  sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$HOTSNAP_ROOT/scripts/packages.txt"
}

# Packages from the list that dpkg does not report as installed.
hotsnap_missing_packages() {
  local pkg status
  while read -r pkg; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [[ $status == installed ]] || echo "$pkg"
  done < <(hotsnap_package_list)
}

hotsnap_install_packages() {
  command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian 12 only"
  local missing
  missing=$(hotsnap_missing_packages | tr '\n' ' ')
  if [[ -z ${missing// /} ]]; then
    log "all packages from scripts/packages.txt are installed; skipping apt"
    return 0
  fi
  log "installing: $missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q || die "apt-get update failed (network or apt sources?)"
  # shellcheck disable=SC2086  # word splitting of the package list is intended
  apt-get install -y -q --no-install-recommends $missing \
    || die "apt-get install failed for: $missing"
  missing=$(hotsnap_missing_packages | tr '\n' ' ')
  [[ -z ${missing// /} ]] || die "still not installed after apt-get install: $missing"
}

hotsnap_build() {
  local jobs="${HOTSNAP_JOBS:-$(nproc)}"
  log "configuring $HOTSNAP_BUILD_DIR"
  cmake -S "$HOTSNAP_ROOT" -B "$HOTSNAP_BUILD_DIR" \
    || die "cmake configure failed (see the messages above)"
  log "building with -j$jobs"
  cmake --build "$HOTSNAP_BUILD_DIR" -j"$jobs" \
    || die "build failed (see the compiler messages above)"
  [[ -x $HOTSNAP_BIN ]] || die "build finished but $HOTSNAP_BIN is missing"
  log "built $HOTSNAP_BIN"
}

hotsnap_setup_main() {
  set -euo pipefail
  trap_err_verbose
  require_root
  hotsnap_install_packages
  if [[ ${HOTSNAP_SKIP_BUILD:-0} == 1 ]]; then
    log "HOTSNAP_SKIP_BUILD=1: not building"
  else
    hotsnap_build
  fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  hotsnap_setup_main "$@"
else
  ( hotsnap_setup_main "$@" )
fi
