#!/usr/bin/env bash
# The install rules and the Debian package, for real (ctest: `package`, label package):
#   1. `cmake --install BUILD --prefix TMP` installs the binary, man page, completion, unit
#      and example config under TMP, and nothing outside it;
#   2. `cpack -G DEB` builds hotsnap_VERSION-1_ARCH.deb (section admin, shlibdeps Depends);
#   3. `dpkg -i` installs it: /usr/bin/hotsnap --version is the build's, the unit, man page,
#      completion and example are in place, the unit is enabled and NOT started (no config);
#      `dpkg --purge` removes every file it listed, the unit's enable links and /var/lib/hotsnap;
#   4. with /etc/hotsnap/hotsnap.toml present, a fresh install starts the unit, a reinstall
#      only try-restarts it, a remove stops it, and a purge keeps a repository put in
#      /var/lib/hotsnap and the admin's config.
# Every dpkg run happens in a private mount namespace whose /run holds /run/systemd/system,
# with `systemctl` and `deb-systemd-invoke` shims first in PATH: the maintainer scripts take
# their systemd branch and the test records what they asked for, without touching the
# machine's service manager (if any). deb-systemd-helper is the real one.
#
# The test installs /usr/bin/hotsnap; the other tests run the build's binary (HOTSNAP_BINARY),
# never hotsnap from PATH. It refuses to run where hotsnap is already installed (or
# /etc/hotsnap, /var/lib/hotsnap exist) unless this test left them (its marker file says so).
# The package is purged however the test ends.
#
# Usage: tests/package_test.sh BUILD_DIR SOURCE_DIR
# Exit 0: passed; 77: skipped (outside CI only: CI=true turns a skip into a failure).
set -euo pipefail

build_dir=$(realpath "$1")
source_dir=$(realpath "$2")
binary=$build_dir/hotsnap
unit=hotsnap-agent.service
config_dir=/etc/hotsnap
config=$config_dir/hotsnap.toml
state=/var/lib/hotsnap
marker=/run/hotsnap-package-test.marker
enable_link=/etc/systemd/system/multi-user.target.wants/$unit
dsh_enabled=/var/lib/systemd/deb-systemd-helper-enabled/$unit.dsh-also
mask_link=/etc/systemd/system/$unit
dsh_masked=/var/lib/systemd/deb-systemd-helper-masked/$unit

failures=0
fail() { echo "FAIL: $*" >&2; exit 1; }
check() {  # check DESCRIPTION COMMAND...: records a failure and goes on
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what" >&2; failures=$((failures + 1)); fi
}
skip() {
  [[ ${CI:-} != true ]] || fail "CI=true but $*"
  echo "SKIP: $*"
  exit 77
}

[[ $(id -u) -eq 0 ]] || skip "the package test needs root (dpkg -i)"
for tool in dpkg dpkg-deb dpkg-query dpkg-shlibdeps cpack cmake unshare gzip; do
  command -v "$tool" >/dev/null || skip "needs $tool (scripts/packages.txt: dpkg-dev, cmake)"
done
[[ -x $binary ]] || fail "no hotsnap binary at $binary (build it first)"

# The package's dpkg status: not-installed, installed, config-files, ...; "unknown" when dpkg
# has no record of it.
package_status() { dpkg-query -W -f='${db:Status-Status}' hotsnap 2>/dev/null || echo unknown; }
absent() { [[ ! -e $1 && ! -L $1 ]]; }

# Runs dpkg ARGS in the fake-systemd namespace; retried while another dpkg or apt run holds
# dpkg's lock (there is no event to wait on for that lock: polled once a second, 10 min).
run_dpkg() {
  local out rc tries=0
  while :; do
    rc=0
    # shellcheck disable=SC2016  # expanded by the inner sh
    out=$(unshare --mount --propagation private sh -c '
        mount -t tmpfs -o mode=0755 hotsnap-package-test /run &&
        mkdir -p /run/systemd/system && PATH="$0:$PATH" exec dpkg "$@"' "$shims" "$@" 2>&1) ||
      rc=$?
    if [[ $rc -ne 0 && $out == *"locked by another process"* && $tries -lt 600 ]]; then
      tries=$((tries + 1))
      sleep 1
      continue
    fi
    printf '%s\n' "$out"
    return "$rc"
  done
}

# Purges the package and removes what this test made in /etc and /var/lib (its marker says
# they are the test's).
remove_leftovers() {
  if [[ $(package_status) != unknown && $(package_status) != not-installed ]]; then
    echo "cleanup: purging hotsnap"
    run_dpkg --purge hotsnap >/dev/null
  fi
  rm -f "$config"
  rmdir "$config_dir" 2>/dev/null
  rm -rf "$state"
  rm -f "$marker"
}

cleanup() {
  local rc=$?
  set +e
  remove_leftovers
  rm -rf "$work"
  [[ $(package_status) == unknown || $(package_status) == not-installed ]] ||
    echo "cleanup: hotsnap is still $(package_status)" >&2
  exit "$rc"
}

# The shims record what the maintainer scripts ask of systemd.
work=$(mktemp -d "${TMPDIR:-/tmp}/hotsnap-package-test.XXXXXX")
shims=$work/shims
calls=$work/systemd-calls.log
mkdir -p "$shims"
: >"$calls"
# `systemctl --root=/ ...` (deb-systemd-helper's preset on a first install) edits unit links
# on the filesystem without a service manager: that one is passed to the real systemctl.
real_systemctl=$(command -v systemctl || true)
for shim in systemctl deb-systemd-invoke; do
  {
    printf '#!/bin/sh\necho "%s $*" >>%q\n' "$shim" "$calls"
    if [[ $shim == systemctl && -n $real_systemctl ]]; then
      printf 'case "$1" in --root=*) exec %q "$@" ;; esac\n' "$real_systemctl"
    fi
    printf 'exit 0\n'
  } >"$shims/$shim"
  chmod 755 "$shims/$shim"
done
calls_since() { tail -n +"$(($1 + 1))" "$calls"; }  # calls_since N: the calls after the first N
call_count() { wc -l <"$calls"; }
has_line() { grep -qxF "$1" <<<"$2"; }            # has_line LINE TEXT
lacks_match() { ! grep -qE "$1" <<<"$2"; }        # lacks_match REGEX TEXT

# A run of this test killed before its cleanup (a ctest timeout) left its marker: clean up
# after it. Anything else is this machine's own hotsnap, not ours to replace or purge.
if [[ -e $marker ]]; then
  echo "a previous run of this test left its marker: cleaning up after it"
  remove_leftovers || true
fi
status=$(package_status)
if [[ $status != unknown && $status != not-installed ]]; then
  rm -rf "$work"
  skip "the hotsnap package is already $status here; the test would replace and purge it"
fi
for path in /usr/bin/hotsnap "$config_dir" "$state" "$enable_link" "$mask_link"; do
  absent "$path" || { rm -rf "$work"; skip "$path exists here; the test would replace or remove it"; }
done
touch "$marker"
trap cleanup EXIT

version_line=$("$binary" --version)
version=${version_line#hotsnap }
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || fail "cannot read the version from '$version_line'"
echo "build's version: $version"

# ---- 1. cmake --install --prefix -----------------------------------------------------------
prefix=$work/prefix
cmake --install "$build_dir" --prefix "$prefix" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; fail "cmake --install failed"; }
for file in bin/hotsnap share/man/man1/hotsnap.1.gz share/bash-completion/completions/hotsnap \
  lib/systemd/system/$unit share/doc/hotsnap/examples/hotsnap.toml.example; do
  check "cmake --install: $file" test -f "$prefix/$file"
done
check "cmake --install: bin/hotsnap --version" test "$("$prefix/bin/hotsnap" --version)" = "$version_line"
check "cmake --install: the man page is docs/hotsnap.1, gzipped" \
  cmp -s <(gzip -dc "$prefix/share/man/man1/hotsnap.1.gz") "$source_dir/docs/hotsnap.1"
outside=$(grep -v "^$prefix/" "$build_dir/install_manifest.txt" || true)
check "cmake --install: nothing installed outside the prefix${outside:+: $outside}" test -z "$outside"

# ---- 2. cpack -G DEB -----------------------------------------------------------------------
(cd "$work" && cpack -G DEB --config "$build_dir/CPackConfig.cmake" -B "$work/cpack") \
  >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log"; fail "cpack -G DEB failed"; }
debs=("$work"/cpack/hotsnap_*.deb)
[[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || { cat "$work/cpack.log"; fail "cpack made no single .deb"; }
deb=${debs[0]}
echo "package: $deb ($(stat -c %s "$deb") bytes)"
dpkg-deb -I "$deb"
field() { dpkg-deb -f "$deb" "$1"; }
check "control: Package hotsnap" test "$(field Package)" = hotsnap
check "control: Version $version-1" test "$(field Version)" = "$version-1"
check "control: Section admin" test "$(field Section)" = admin
check "control: Maintainer set" test -n "$(field Maintainer)"
check "control: Depends from dpkg-shlibdeps (libc6)" grep -q 'libc6' <<<"$(field Depends)"
check "control: Depends from dpkg-shlibdeps (libzstd1)" grep -q 'libzstd1' <<<"$(field Depends)"
dpkg-deb -e "$deb" "$work/control"
for script in postinst prerm postrm; do
  check "maintainer script $script, mode 0755" test "$(stat -c %a "$work/control/$script")" = 755
done

# ---- 3. dpkg -i without a config, then --purge ---------------------------------------------
# Listed directories that exist before the install may stay (/usr/bin); the rest must go.
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|; s|/$||' | grep -v '^/\?$' >"$work/listed"
while read -r path; do [[ -e $path ]] && echo "$path"; done <"$work/listed" >"$work/preexisting"

before=$(call_count)
run_dpkg -i "$deb" || fail "dpkg -i failed"
check "installed" test "$(package_status)" = installed
check "/usr/bin/hotsnap --version is the build's ($version_line)" \
  test "$(/usr/bin/hotsnap --version 2>&1)" = "$version_line"
unit_path=$(dpkg -L hotsnap | grep "/systemd/system/$unit\$" || true)
check "the unit is installed ($unit_path)" test -n "$unit_path" -a -f "$unit_path"
check "the man page is installed" test -f /usr/share/man/man1/hotsnap.1.gz
if command -v man >/dev/null; then
  check "man -w hotsnap finds it" test "$(man -w hotsnap 2>/dev/null)" = /usr/share/man/man1/hotsnap.1.gz
fi
check "the completion is installed" test -f /usr/share/bash-completion/completions/hotsnap
check "the example config is installed" test -f /usr/share/doc/hotsnap/examples/hotsnap.toml.example
check "the unit has ConditionPathExists=$config" grep -qx "ConditionPathExists=$config" "$unit_path"
check "the unit is Type=notify with a watchdog" \
  sh -c "grep -qx Type=notify '$unit_path' && grep -q '^WatchdogSec=' '$unit_path'"
if command -v systemd-analyze >/dev/null; then
  check "systemd-analyze verify accepts the installed unit" systemd-analyze verify "$unit_path"
fi
check "the unit is enabled ($enable_link)" test -L "$enable_link"
new_calls=$(calls_since "$before")
echo "systemd calls:"; sed 's/^/  /' <<<"$new_calls"
check "postinst took its systemd branch (daemon-reload)" has_line "systemctl --system daemon-reload" "$new_calls"
check "nothing was started without a config" lacks_match "invoke (start|restart|try-restart)" "$new_calls"
check "/etc/hotsnap was not created" absent "$config_dir"

# State the agent would have made; purge removes it.
mkdir -p "$state/changes"
echo '{}' >"$state/changes/root.json"
run_dpkg --purge hotsnap || fail "dpkg --purge failed"
status=$(package_status)
check "purged: dpkg reports hotsnap $status" test "$status" = unknown -o "$status" = not-installed
left=$(while read -r path; do
  grep -qxF "$path" "$work/preexisting" || absent "$path" || echo "$path"
done <"$work/listed")
check "purged: every file the package listed is gone${left:+ (left: $left)}" test -z "$left"
check "purged: the enable link is gone" absent "$enable_link"
for path in "$dsh_enabled" "$dsh_masked" "$mask_link"; do
  check "purged: deb-systemd-helper's $path is gone" absent "$path"
done
check "purged: $state is gone" absent "$state"

# ---- 4. With a config: start on a fresh install, try-restart on reinstall, stop on remove ---
mkdir -p "$config_dir"
echo "# written by tests/package_test.sh" >"$config"
before=$(call_count)
run_dpkg -i "$deb" || fail "dpkg -i (with a config) failed"
new_calls=$(calls_since "$before")
check "with a config, a fresh install starts the unit" has_line "deb-systemd-invoke start $unit" "$new_calls"
before=$(call_count)
run_dpkg -i "$deb" || fail "dpkg -i (reinstall) failed"
new_calls=$(calls_since "$before")
check "a reinstall try-restarts the unit" has_line "deb-systemd-invoke try-restart $unit" "$new_calls"
check "a reinstall does not start it" lacks_match "invoke (start|restart)" "$new_calls"
before=$(call_count)
run_dpkg -r hotsnap || fail "dpkg -r failed"
check "a remove stops the unit" has_line "deb-systemd-invoke stop $unit" "$(calls_since "$before")"
check "removed: the binary is gone" absent /usr/bin/hotsnap
check "removed: the unit is masked by deb-systemd-helper" \
  test "$(readlink "$mask_link")" = /dev/null -a -e "$dsh_masked"
mkdir -p "$state/repo"
echo '{"format": "hotsnap-repository", "version": 1}' >"$state/repo/hotsnap-repo.json"
purge_out=$(run_dpkg --purge hotsnap) || fail "dpkg --purge (with a repository) failed"
check "purge says it kept the repository" grep -q "kept $state" <<<"$purge_out"
check "purge keeps a repository in $state" test -f "$state/repo/hotsnap-repo.json"
check "purge keeps the admin's config" test -f "$config"
status=$(package_status)
check "purged again: dpkg reports hotsnap $status" test "$status" = unknown -o "$status" = not-installed
for path in "$enable_link" "$dsh_enabled" "$dsh_masked" "$mask_link"; do
  check "purged again: $path is gone" absent "$path"
done

[[ $failures -eq 0 ]] || fail "$failures check(s) failed"
echo "PASS"
