#!/usr/bin/env bash
# Benchmark: an incremental backup of a thin LV through the pool's metadata (thin_delta)
# against the full backup of the same LV and `dd | zstd` of it, all in one VM run (Debian's
# kernel under QEMU TCG: the host kernel has no device-mapper; see tests/vm/README.md). A
# benchmark, not a test: it prints the ratio beside the issue's target and never fails on it.
#
#   bench/bench_thin_delta.sh
#
# Environment: BENCH_DIR (default /var/tmp/hotsnap-bench; caches the data image),
# HOTSNAP_BUILD_DIR (default build; needs hotsnap and tests/vm/thin_probe built), DATA_MIB
# (the thin LV's size, default 1024), USED_MIB (files copied onto it from this machine's /usr,
# default 700), LEVEL (zstd level, default 3), CHANGE_PERCENT (of the used bytes rewritten,
# default 1), PIECE_KIB (the size of each rewritten piece, default 1024), HOTSNAP_VM_CPUS,
# HOTSNAP_VM_MEMORY (default 2048) as for tests/vm/run_vm.sh.
#
# Steps (the guest's: bench/vm/bench_thin_delta.sh):
#   0. host: an ext4 image of DATA_MIB holding USED_MIB of /usr's files (mke2fs -d; cached),
#      attached read-only as the VM's second disk: the data is copied, not made under TCG;
#   1. guest: a thin LV in a thin pool, the image dd'ed onto it, mounted;
#   2. full:  hotsnap backup --snapshot lvm-thin --keep-snapshot; dd | zstd -T0 of the LV;
#   3. CHANGE_PERCENT of the used bytes rewritten in place, PIECE_KIB pieces spread over the
#      files;
#   4. delta: hotsnap backup --base full --snapshot lvm-thin --keep-snapshot (thin_delta);
#   5. the same change and delta once more with each lvm, dmsetup and thin_delta command
#      timed (a wrapper on the guest's PATH): the breakdown of the delta's fixed cost.
# Target (issue 15): thin_delta delta wall <= 0.05 x full wall.
set -euo pipefail

# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
trap_err_verbose

for arg in "$@"; do
  case $arg in
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown option: $arg (see --help)" ;;
  esac
done

bench_dir="${BENCH_DIR:-/var/tmp/hotsnap-bench}"
build_dir="${HOTSNAP_BUILD_DIR:-build}"
[[ $build_dir == /* ]] || build_dir="$HOTSNAP_ROOT/$build_dir"
[[ -x $build_dir/hotsnap ]] || die "no $build_dir/hotsnap: build it first (cmake --build build --target hotsnap thin_probe)"
data_mib="${DATA_MIB:-1024}" used_mib="${USED_MIB:-700}"
level="${LEVEL:-3}" change_percent="${CHANGE_PERCENT:-1}" piece_kib="${PIECE_KIB:-1024}"
command -v mke2fs >/dev/null || PATH=$PATH:/usr/sbin:/sbin
mkdir -p "$bench_dir"

# 0. The data image, made once from this machine's /usr (sorted, so the same files each time).
image="$bench_dir/thin-src-${data_mib}m-${used_mib}u.img"
if [[ ! -f $image ]]; then
  log "making the data image $image ($used_mib MiB of /usr's files in $data_mib MiB of ext4)"
  staging=$(mktemp -d "$bench_dir/thin-src.XXXXXX")
  copied=$(copy_with_budget $((used_mib * 1048576)) "$staging" /usr/lib /usr/share /usr/bin)
  log "copied $(human "$copied") into the staging folder"
  rm -f "$image.tmp"
  mke2fs -q -t ext4 -F -E nodiscard -d "$staging" "$image.tmp" "${data_mib}M" || { rm -rf "$staging"; die "mke2fs -d"; }
  rm -rf "$staging"
  mv "$image.tmp" "$image"
fi

work="$build_dir/bench/work-thin_delta"
mkdir -p "$work"
conf="$work/bench.conf"
{
  echo "LEVEL=$level"
  echo "CHANGE_PERCENT=$change_percent"
  echo "PIECE_KIB=$piece_kib"
} > "$conf"
# The guest reads its settings from the shared folder (/host/bench.conf).
log "booting the VM (TCG; a few minutes)"
out="$work/run.log"
set +e
HOTSNAP_VM_MEMORY="${HOTSNAP_VM_MEMORY:-2048}" \
  "$HOTSNAP_ROOT/tests/vm/run_vm.sh" --build-dir "$build_dir" --work-dir "$work/vm" --timeout 1500 \
  --scenario-dir "$HOTSNAP_ROOT/bench/vm" --drive "$image" --disk-size $((data_mib * 4))M --share-file "$conf" \
  bench_thin_delta > "$out" 2>&1
rc=$?
set -e
grep -v '^BENCH ' "$out" | sed 's/^/  /' >&2
((rc == 0)) || die "the VM run failed (exit $rc); its log: $out"

val() { awk -v k="$1" '$1 == "BENCH" && $2 == k { $1 = ""; $2 = ""; sub(/^  /, ""); print; exit }' "$out"; }
full_ms=$(val full_ms) delta_ms=$(val delta_ms) dd_ms=$(val ddzstd_ms) delta2_ms=$(val delta2_ms)
used=$(val full_used_bytes)
printf '\nhotsnap thin_delta benchmark (VM, TCG, %s vCPU): %s MiB thin LV, %s used bytes, pool chunk %s KiB, %s %% rewritten in %s KiB pieces, zstd -%s\n' \
  "${HOTSNAP_VM_CPUS:-1}" "$data_mib" "$used" "$(val chunk_kib)" "$change_percent" "$piece_kib" "$level"
printf '%-40s %9s %14s %14s\n' "command" "wall s" "bytes read" "output bytes"
row() { printf '%-40s %9.2f %14s %14s\n' "$1" "$(awk -v m="$2" 'BEGIN { print m / 1000 }')" "$3" "$4"; }
row "hotsnap backup (full, --keep-snapshot)" "$full_ms" "$(val full_bytes_read)" "$(val full_image_bytes)"
row "dd | zstd -T0 -$level" "$dd_ms" "$data_mib MiB" "$(val ddzstd_bytes)"
row "hotsnap backup --base (thin_delta)" "$delta_ms" "$(val delta_bytes_read)" "$(val delta_image_bytes)"
row "the same, commands timed" "$delta2_ms" "$(val delta2_bytes_read)" "$(val delta2_image_bytes)"
printf '\nphases (s): full %s\n            delta %s\n' "$(val full_phases)" "$(val delta_phases)"
printf 'change source of the delta: %s\n' "$(val delta_change_source)"
printf '\nthe timed delta'"'"'s commands (start s, took s):\n'
awk '$1 == "BENCH" && $2 == "cmd" { $1 = ""; $2 = ""; sub(/^  /, ""); print "  " $0 }' "$out"
awk '$1 == "BENCH" && $2 == "cmdsum" { $1 = ""; $2 = ""; sub(/^  /, ""); print "  " $0 }' "$out" | sort
awk '$1 == "BENCH" && $2 == "cmdtotal" { printf "  %d commands, %.2f s of the delta'"'"'s %.2f s\n", $3, $4, m / 1000 }' m="$delta2_ms" "$out"
awk -v d="$delta_ms" -v f="$full_ms" -v z="$dd_ms" 'BEGIN {
  printf "\ndelta wall / full wall:        %.3f   (target <= 0.05)\n", d / f
  printf "delta wall / dd | zstd wall:   %.3f\n", d / z
  printf "full wall / dd | zstd wall:    %.3f\n", f / z }'
