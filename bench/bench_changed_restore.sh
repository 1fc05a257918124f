#!/usr/bin/env bash
# Benchmark: `hotsnap restore --changed-only` (the quick rollback) against a full
# `hotsnap restore`, on the reference disk of bench_restore.sh (a 1 GiB ext4 nearly full of
# system files and incompressible bytes), all in one run so the numbers compare. One image
# (hotsnap backup of the disk), restored once in full onto a second 1 GiB loop device; then,
# each round, ~1 % of the disk's used bytes are rewritten through a mount (pieces of 256 KiB
# scattered over the incompressible files) and the device is rolled back with --changed-only;
# the same change again, and a full restore. The medians, the ratio full / changed-only, and the
# chunks the rollback wrote. A benchmark, not a test: it prints, it never fails on the numbers
# (it does fail if a rolled-back device differs from a full restore).
#
#   bench/bench_changed_restore.sh [--keep] [--rebuild-image] [--runs N]
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
#   CHANGE_PERCENT  percent of the used bytes rewritten before each restore (default: 1)
#
# Rows:
#   restore --changed-only  of every chunk, the target's blocks the image's ext4 bitmap marks
#                           used read (O_DIRECT) and hashed (free ones as zeros), only the
#                           chunks that differ decoded and their differing blocks written,
#                           fdatasync at the end
#   restore (full)          `hotsnap restore IMAGE DEV --force`, as timed by bench_restore.sh
# The image is in the page cache (read once first); the target's backing file is written back
# (`sync`) after each change and before every timed command, so no command pays for the
# change's writeback. The target's reads come from its backing file's page cache, as
# bench_restore.sh's floor does: on a real disk reading costs more, writing far more.
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
change_percent="${CHANGE_PERCENT:-1}"
[[ $change_percent =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "CHANGE_PERCENT: not a number: $change_percent"
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

# --- The binary and the reference disk ----------------------------------------------------
hotsnap=""  # set by resolve_hotsnap_binary (scripts/lib.sh)
resolve_hotsnap_binary
mkdir -p "$bench_dir"
scratch=$(mktemp -d "$bench_dir/changed.XXXXXX")
ensure_reference_disk

# --- One image, one target holding it -----------------------------------------------------
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
log "full restore onto $dst_loop (the device the rounds roll back)"
"$hotsnap" restore "$image" "$dst_loop" --force 2> "$scratch/first.err" \
  || { cat "$scratch/first.err" >&2; die "hotsnap restore failed"; }
restored_sha=$(sha256sum < "$dst_loop" | cut -c1-64)

# --- The change ---------------------------------------------------------------------------
piece=$((256 * 1024))
pieces=$(awk -v u="$used" -v p="$change_percent" -v s="$piece" 'BEGIN { n = int(u * p / 100 / s + 0.5); print (n < 1 ? 1 : n) }')
random_bytes=$((64 * 1024 * 1024))
# change_target: rewrites `pieces` pieces of 256 KiB, spread evenly over the three
# incompressible files of the reference disk (in place: the files keep their blocks), through
# a mount of the target; then unmounts and writes everything back.
change_target() {
  local k file offset stride=$((3 * random_bytes / pieces))
  mnt=$(mktemp -d "$bench_dir/mnt.XXXXXX")
  mount "$dst_loop" "$mnt"
  for ((k = 0; k < pieces; k++)); do
    offset=$((k * stride))
    file="$mnt/kept/random/$((offset / random_bytes + 1)).bin"
    offset=$(((offset % random_bytes) / piece * piece))
    head -c "$piece" /dev/urandom \
      | dd of="$file" bs="$piece" seek=$((offset / piece)) conv=notrunc status=none
  done
  umount "$mnt"; rmdir "$mnt"; mnt=""
  sync
}

q() { printf '%q' "$1"; }
declare -A cmds=(
  [changed]="$(q "$hotsnap") restore $(q "$image") $(q "$dst_loop") --changed-only"
  [full]="$(q "$hotsnap") restore $(q "$image") $(q "$dst_loop") --force"
)
order=(changed full)
declare -A label=([changed]="restore --changed-only" [full]="restore (full)")
declare -A walls=() cpus=()
written=""

# measure KEY: one round of the command under GNU time; appends its wall time.
measure() {
  local key=$1 tf="$scratch/time.$1" rc=0
  sync  # the previous round's writeback must not land inside this one
  /usr/bin/time -f '%e %U %S' -o "$tf" bash -c "${cmds[$key]}" \
    > /dev/null 2> "$scratch/stderr.$key" || rc=$?
  [[ $rc -eq 0 ]] || { cat "$scratch/stderr.$key" >&2; die "${label[$key]} failed (exit $rc)"; }
  read -r wall user sys < <(tail -n 1 "$tf")
  walls[$key]+="$wall "
  cpus[$key]+="$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }') "
}

for ((round = 1; round <= runs; round++)); do
  for key in "${order[@]}"; do
    log "round $round/$runs: change $pieces x 256 KiB, then ${label[$key]}"
    change_target
    measure "$key"
    if [[ $key == changed ]]; then
      written+="$(sed -n 's/.*: \([0-9]*\) of \([0-9]*\) chunks differed.*/\1\/\2/p' "$scratch/stderr.changed") "
      sha=$(sha256sum < "$dst_loop" | cut -c1-64)
      [[ $sha == "$restored_sha" ]] || die "round $round: the rolled-back device differs from a full restore"
    fi
  done
done

median() { tr ' ' '\n' <<< "$1" | sed '/^$/d' | sort -n | awk '{ v[NR] = $1 }
  END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

echo
printf 'rollback of %s (%s used, image %s) after rewriting %s (%s%% of the used bytes) in %d pieces, %d rounds, medians\n' \
  "$(human $((1024 ** 3)))" "$(human "$used")" "$(human "$(stat -c %s "$image")")" \
  "$(human $((pieces * piece)))" "$change_percent" "$pieces" "$runs"
printf '%-24s %8s %8s   %s\n' command "wall s" "cpu s" "all walls"
for key in "${order[@]}"; do
  printf '%-24s %8s %8s   %s\n' "${label[$key]}" "$(median "${walls[$key]}")" \
    "$(median "${cpus[$key]}")" "${walls[$key]}"
done
echo
printf 'chunks written by --changed-only (of all): %s\n' "$written"
ratio=$(awk -v a="$(median "${walls[full]}")" -v b="$(median "${walls[changed]}")" \
  'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
printf 'full / changed-only:  %sx faster\n' "$ratio"
