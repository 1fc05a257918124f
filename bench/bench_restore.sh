#!/usr/bin/env bash
# Benchmark: hotsnap restore against `zstd -dc IMAGE | dd of=DEV bs=4M oflag=direct` on a
# 1 GiB ext4 loop device nearly full of system files and incompressible bytes, all in one
# run so the numbers compare. One image (hotsnap backup of the source), restored onto a
# second 1 GiB loop device by each command in turn, three times; the medians, the ratio and
# the target of the restore issue (hotsnap <= 0.6x the dd pipeline). A benchmark, not a
# test: it prints, it never fails on the numbers.
#
#   bench/bench_restore.sh [--keep] [--rebuild-image] [--runs N]
#
#   --keep           keep the cached source image for the next run (default: remove it)
#   --rebuild-image  build the source image anew even if a cached one exists
#   --runs N         rounds per command (default: 3; the median is reported)
#
# Environment:
#   BENCH_DIR    cache and scratch directory (default: /var/tmp/hotsnap-bench); needs about
#                3.5 GiB (source image, hotsnap image, target backing file)
#   HOTSNAP_BIN  hotsnap binary to measure (default: build with scripts/setup.sh and use
#                build/hotsnap)
#   LEVEL        zstd level of the image (default: 3)
#   HOTSNAP_BASELINE_BIN  optional second hotsnap binary (e.g. an older build), timed as an
#                extra row in the same run
#
# Rows:
#   hotsnap restore         `hotsnap restore IMAGE DEV --force`: every chunk checked against
#                           its hash before it is written, O_DIRECT, fsync at the end
#   zstd -dc | dd direct    the issue's reference: no checks, no fsync
#   ... | dd direct,fsync   the same with conv=fsync: the durability hotsnap gives
#   floor: zeros, fsync     `dd if=/dev/zero ... oflag=direct conv=fsync`: 1 GiB made durable
#                           on the target with nothing to decode, the least any restore of
#                           this image onto this device can take
#   hotsnap verify          the same checks and decoding with nothing written: the CPU part
# Where the time goes is read from the table: a restore costs about max(verify, floor) when
# decoding and writeback overlap, and verify + floor when they do not.
# The image is in the page cache (read once first); the target's backing file is written
# back (`sync`) before every round, so no round pays for an earlier one's writeback.
set -euo pipefail

# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
trap_err_verbose
require_root

keep=0 rebuild=0 runs=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --keep) keep=1 ;;
    --rebuild-image) rebuild=1 ;;
    --runs) shift; runs=${1:?--runs needs a number} ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  shift
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs: not a positive number: $runs"

bench_dir="${BENCH_DIR:-/var/tmp/hotsnap-bench}"
level="${LEVEL:-3}"
# source_img, recipe_file, ensure_reference_disk
# shellcheck source=reference_disk.sh
source "$(dirname "${BASH_SOURCE[0]}")/reference_disk.sh"

# --- Cleanup ------------------------------------------------------------------------------
mnt="" build_loop="" src_loop="" dst_loop="" scratch=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM ERR
  set +e
  if [[ -n $mnt ]] && mountpoint -q "$mnt"; then umount "$mnt" || umount -l "$mnt"; fi
  [[ -n $mnt ]] && rmdir "$mnt" 2>/dev/null
  [[ -n $build_loop ]] && losetup -d "$build_loop"
  [[ -n $src_loop ]] && losetup -d "$src_loop"
  [[ -n $dst_loop ]] && losetup -d "$dst_loop"
  [[ -n $scratch ]] && rm -rf "$scratch"
  rm -f "$source_img.tmp"
  if [[ $keep -eq 0 ]]; then
    rm -f "$source_img" "$recipe_file"
    rmdir "$bench_dir" 2>/dev/null
  fi
  [[ $rc -ne 0 ]] && log "FAILED (exit $rc); loop devices and scratch files removed"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# --- The binary ---------------------------------------------------------------------------
hotsnap=""  # set by resolve_hotsnap_binary (scripts/lib.sh)
resolve_hotsnap_binary

mkdir -p "$bench_dir"
scratch=$(mktemp -d "$bench_dir/restore.XXXXXX")

# --- The source image (cached) ------------------------------------------------------------
ensure_reference_disk

# --- One image, one target ----------------------------------------------------------------
src_loop=$(losetup -f --show -r "$source_img")
used=$(dumpe2fs -h "$src_loop" 2>/dev/null | awk -F: '
  /^Block size/ { bs = $2 } /^Block count/ { bc = $2 } /^Free blocks/ { fb = $2 }
  END { print (bc - fb) * bs }')
image="$scratch/image.zst"
log "hotsnap backup of the source ($(human "$used") used)"
"$hotsnap" backup "$src_loop" -o "$image" --level "$level" 2> "$scratch/backup.err" \
  || { cat "$scratch/backup.err" >&2; die "hotsnap backup failed"; }
losetup -d "$src_loop"; src_loop=""
truncate -s 1G "$scratch/target.img"
dst_loop=$(losetup -f --show "$scratch/target.img")
cat "$image" > /dev/null  # the input is read from the page cache by every command

q() { printf '%q' "$1"; }
declare -A cmds=(
  [hotsnap]="$(q "$hotsnap") restore $(q "$image") $(q "$dst_loop") --force"
  [dd]="zstd -q -dc $(q "$image") | dd of=$(q "$dst_loop") bs=4M oflag=direct status=none"
  [ddsync]="zstd -q -dc $(q "$image") | dd of=$(q "$dst_loop") bs=4M oflag=direct conv=fsync status=none"
  [floor]="dd if=/dev/zero of=$(q "$dst_loop") bs=4M count=256 oflag=direct conv=fsync status=none"
  [verify]="$(q "$hotsnap") verify $(q "$image")"
)
order=(hotsnap dd ddsync floor verify)
declare -A label=([hotsnap]="hotsnap restore" [dd]="zstd -dc | dd direct"
                  [ddsync]="... | dd direct,fsync" [floor]="floor: zeros, fsync"
                  [verify]="hotsnap verify (no writes)")
if [[ -n ${HOTSNAP_BASELINE_BIN:-} ]]; then
  cmds[baseline]="$(q "$HOTSNAP_BASELINE_BIN") restore $(q "$image") $(q "$dst_loop") --force"
  label[baseline]="baseline hotsnap restore"
  order+=(baseline)
fi
declare -A walls=() cpus=()

# measure KEY: one round of the command under GNU time; appends its wall time.
measure() {
  local key=$1 tf="$scratch/time.$1" rc=0
  sync  # the previous round's writeback must not land inside this one
  /usr/bin/time -f '%e %U %S' -o "$tf" bash -c "set -o pipefail; ${cmds[$key]}" \
    > /dev/null 2> "$scratch/stderr.$key" || rc=$?
  [[ $rc -eq 0 ]] || { cat "$scratch/stderr.$key" >&2; die "${label[$key]} failed (exit $rc)"; }
  read -r wall user sys < <(tail -n 1 "$tf")
  walls[$key]+="$wall "
  cpus[$key]+="$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }') "
}

for ((round = 1; round <= runs; round++)); do
  for key in "${order[@]}"; do
    log "round $round/$runs: ${label[$key]}"
    measure "$key"
  done
done

# The restored device is the source, byte for byte, after one more hotsnap restore.
log "checking a last hotsnap restore against the source"
bash -c "${cmds[hotsnap]}" > /dev/null 2> "$scratch/stderr.check" \
  || { cat "$scratch/stderr.check" >&2; die "hotsnap restore failed"; }
cmp "$source_img" "$dst_loop" > /dev/null || die "the restored device differs from the source"

median() { tr ' ' '\n' <<< "$1" | sed '/^$/d' | sort -n | awk '{ v[NR] = $1 }
  END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

echo
printf 'restore of %s (%s used, image %s), %d rounds, medians\n' "$(human $((1024 ** 3)))" \
  "$(human "$used")" "$(human "$(stat -c %s "$image")")" "$runs"
printf '%-24s %8s %8s   %s\n' command "wall s" "cpu s" "all walls"
for key in "${order[@]}"; do
  printf '%-24s %8s %8s   %s\n' "${label[$key]}" "$(median "${walls[$key]}")" \
    "$(median "${cpus[$key]}")" "${walls[$key]}"
done
ratio=$(awk -v a="$(median "${walls[hotsnap]}")" -v b="$(median "${walls[dd]}")" \
  'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
ratio_sync=$(awk -v a="$(median "${walls[hotsnap]}")" -v b="$(median "${walls[ddsync]}")" \
  'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
echo
printf 'hotsnap / (zstd -dc | dd direct):        %sx   (target <= 0.6x)\n' "$ratio"
printf 'hotsnap / (zstd -dc | dd direct,fsync):  %sx\n' "$ratio_sync"
floor_ratio=$(awk -v a="$(median "${walls[floor]}")" -v b="$(median "${walls[dd]}")" \
  'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
printf 'floor / (zstd -dc | dd direct):          %sx   (no restore onto this device beats it)\n' \
  "$floor_ratio"
