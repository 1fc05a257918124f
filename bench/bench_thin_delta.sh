#!/usr/bin/env bash
# Benchmark: an incremental backup of a thin LV through the pool's metadata (thin_delta)
# against the full backup of the same LV and `dd | zstd` of it, all in one VM run (Debian's
# kernel under QEMU TCG: the host kernel has no device-mapper; see tests/vm/README.md). A
# benchmark, not a test: it prints the ratio beside the issue's target and never fails on it.
#
#   bench/bench_thin_delta.sh [--pattern scattered|files|both]
#
# --pattern: how the used bytes are changed before a delta (default both, one after another on
# the same full backup, each delta's base the image before it, so each ratio is of one run):
#   scattered  PIECE_KIB pieces rewritten in place, one per file, spread over the filesystem;
#   files      whole files rewritten in place (70 %), new files (30 %), about as many bytes of
#              other files deleted: a server's nightly change.
#
# Environment: BENCH_DIR (default /var/tmp/hotsnap-bench; caches the data image),
# HOTSNAP_BUILD_DIR (default build; needs hotsnap and tests/vm/thin_probe built), DATA_MIB
# (the thin LV's size, default 1024), USED_MIB (files copied onto it from this machine's /usr,
# default 700), LEVEL (zstd level, default 3), CHANGE_PERCENT (of the used bytes rewritten,
# default 1), PIECE_KIB (the size of each rewritten piece, default 1024), FILE_MIN_KIB and
# FILE_MAX_KIB (the sizes of the files the files pattern rewrites, default 16..8192), HOTSNAP_VM_CPUS,
# HOTSNAP_VM_MEMORY (default 2048) as for tests/vm/run_vm.sh.
#
# Steps (the guest's: bench/vm/bench_thin_delta.sh):
#   0. host: an ext4 image of DATA_MIB holding USED_MIB of /usr's files (mke2fs -d; cached),
#      attached read-only as the VM's second disk: the data is copied, not made under TCG;
#   1. guest: a thin LV in a thin pool, the image dd'ed onto it, mounted;
#   2. full:  hotsnap backup --snapshot lvm-thin --keep-snapshot; dd | zstd -T0 of the LV;
#   3. per pattern: CHANGE_PERCENT of the used bytes changed that way, then a delta:
#      hotsnap backup --base PREVIOUS --snapshot lvm-thin --keep-snapshot (thin_delta);
#   4. the first pattern's change and delta once more with each lvm, dmsetup and thin_delta
#      command timed (a wrapper on the guest's PATH): the breakdown of the delta's fixed cost.
# Target (issue 15): thin_delta delta wall <= 0.05 x full wall.
set -euo pipefail

# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
trap_err_verbose

patterns="scattered files"
while (($#)); do
  case $1 in
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    --pattern|--pattern=*)
      if [[ $1 == --pattern ]]; then (($# >= 2)) || die "--pattern needs a value"; v=$2; shift; else v=${1#--pattern=}; fi
      case $v in
        scattered|files) patterns=$v ;;
        both) patterns="scattered files" ;;
        *) die "--pattern: scattered, files or both, not '$v'" ;;
      esac ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  shift
done

bench_dir="${BENCH_DIR:-/var/tmp/hotsnap-bench}"
build_dir="${HOTSNAP_BUILD_DIR:-build}"
[[ $build_dir == /* ]] || build_dir="$HOTSNAP_ROOT/$build_dir"
[[ -x $build_dir/hotsnap ]] || die "no $build_dir/hotsnap: build it first (cmake --build build --target hotsnap thin_probe)"
data_mib="${DATA_MIB:-1024}" used_mib="${USED_MIB:-700}"
level="${LEVEL:-3}" change_percent="${CHANGE_PERCENT:-1}" piece_kib="${PIECE_KIB:-1024}"
file_min_kib="${FILE_MIN_KIB:-16}" file_max_kib="${FILE_MAX_KIB:-8192}"
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
  echo "PATTERNS=\"$patterns\""
  echo "FILE_MIN_KIB=$file_min_kib"
  echo "FILE_MAX_KIB=$file_max_kib"
} > "$conf"
# The guest reads its settings from the shared folder (/host/bench.conf).
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "booting the VM (TCG; a few minutes; host load $load_before)"
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
full_ms=$(val full_ms) dd_ms=$(val ddzstd_ms) delta2_ms=$(val delta2_ms)
used=$(val full_used_bytes)
printf '\nhotsnap thin_delta benchmark (VM, TCG, %s vCPU): %s MiB thin LV, %s used bytes, pool chunk %s KiB, %s %% changed (scattered: %s KiB pieces; files: %s..%s KiB files), zstd -%s, host load %s\n' \
  "${HOTSNAP_VM_CPUS:-1}" "$data_mib" "$used" "$(val chunk_kib)" "$change_percent" "$piece_kib" "$file_min_kib" "$file_max_kib" "$level" "$load_before"
printf '%-44s %9s %14s %14s\n' "command" "wall s" "bytes read" "output bytes"
row() { printf '%-44s %9.2f %14s %14s\n' "$1" "$(awk -v m="$2" 'BEGIN { print m / 1000 }')" "$3" "$4"; }
row "hotsnap backup (full, --keep-snapshot)" "$full_ms" "$(val full_bytes_read)" "$(val full_image_bytes)"
row "dd | zstd -T0 -$level" "$dd_ms" "$data_mib MiB" "$(val ddzstd_bytes)"
for p in $patterns; do
  row "hotsnap backup --base (thin_delta), $p" "$(val "delta_${p}_ms")" "$(val "delta_${p}_bytes_read")" "$(val "delta_${p}_image_bytes")"
done
row "${patterns%% *} once more, commands timed" "$delta2_ms" "$(val delta2_bytes_read)" "$(val delta2_image_bytes)"
printf '\nphases (s): full %s\n' "$(val full_phases)"
for p in $patterns; do
  printf '            delta, %s %s\n' "$p" "$(val "delta_${p}_phases")"
  printf '  change source: %s; changed: %s\n' "$(val "delta_${p}_change_source")" "$(val "${p}1_files")"
done

printf '\nthe timed delta'"'"'s commands (start s, took s):\n'
awk '$1 == "BENCH" && $2 == "cmd" { $1 = ""; $2 = ""; sub(/^  /, ""); print "  " $0 }' "$out"
awk '$1 == "BENCH" && $2 == "cmdsum" { $1 = ""; $2 = ""; sub(/^  /, ""); print "  " $0 }' "$out" | sort
awk '$1 == "BENCH" && $2 == "cmdtotal" { printf "  %d commands, %.2f s of the delta'"'"'s %.2f s\n", $3, $4, m / 1000 }' m="$delta2_ms" "$out"

# The table of issue 15: per pattern, what was written, the 4 MiB image chunks the delta stored
# (hotsnap's changed_chunks of its chunks), the delta's and the full's wall time and their ratio.
printf '\n%-10s %14s %22s %9s %9s %11s\n' "pattern" "bytes written" "chunks stored" "delta s" "full s" "delta/full"
for p in $patterns; do
  awk -v p="$p" -v w="$(val "${p}1_written_bytes")" -v c="$(val "delta_${p}_changed_chunks")" \
      -v n="$(val "delta_${p}_chunks")" -v d="$(val "delta_${p}_ms")" -v f="$full_ms" 'BEGIN {
    printf "%-10s %14d %10d of %5d %4.1f%% %9.2f %9.2f %11.3f\n", p, w, c, n, n ? 100 * c / n : 0, d / 1000, f / 1000, d / f }'
done
printf '(target: delta/full <= 0.05; full wall / dd | zstd wall: %s)\n' \
  "$(awk -v f="$full_ms" -v z="$dd_ms" 'BEGIN { printf "%.3f", f / z }')"
