#!/usr/bin/env bash
# Benchmark: a whole-disk backup against its partitions backed up one by one, in the same run,
# and the freezes of a live whole-disk backup with a writer. The disk is a loop-backed file with
# a DOS table: p1 a 1 GiB ext4 holding /usr/lib (up to 480 MB), p2 a 1 GiB XFS holding
# /usr/share (up to 150 MB) and 128 MiB of random bytes: the reference data split over two
# partitions. A benchmark, not a test: it prints, and says whether the targets were met
# (whole disk <= 1.1x the sum of the partitions; longest freeze <= 100 ms with the writer).
#
#   bench/bench_disk.sh [--rate MBPS] [--runs N] [--level N]
#
#   --rate MBPS  the live run's writer (fio, 2 MiB O_DSYNC writes at random offsets of a
#                256 MiB file on the ext4), MB = 1,000,000 bytes (default 20)
#   --runs N     rounds of each measurement; medians are reported (default 3)
#   --level N    zstd level (default 3)
#
# Environment:
#   BENCH_DIR    scratch directory (default: /var/tmp/hotsnap-bench), about 3 GiB
#   HOTSNAP_BIN  hotsnap binary to measure (default: build/hotsnap, built by scripts/setup.sh)
#
# The last line is the floor: the kernel's own freeze and thaw of both filesystems (fsfreeze),
# with the same writer, timed from outside: what any freeze window costs on this machine.
#
# Rows: `whole disk` is `hotsnap backup DISK --snapshot none` (unmounted); `p1 + p2` the sum of
# `hotsnap backup DISKp1` and `... DISKp2`, each `--snapshot none`; `live whole disk` the same
# disk with both filesystems mounted (tracked mode: both frozen together at each freeze) and the
# writer running. The page cache is warm for the unmounted rows.
set -euo pipefail

# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
trap_err_verbose
require_root

rate=20 runs=3 level=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --rate) rate=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --level) level=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "--runs: not a positive number: $runs"
command -v fio >/dev/null || die "fio is needed (apt-get install fio)"

bench_dir="${BENCH_DIR:-/var/tmp/hotsnap-bench}"
mkdir -p "$bench_dir"

# --- Cleanup ------------------------------------------------------------------------------
scratch="" disk="" writer_pid=""
mounts=()
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$? m
  trap - EXIT INT TERM ERR
  set +e
  if [[ -n $writer_pid ]]; then kill "$writer_pid" 2>/dev/null; wait "$writer_pid" 2>/dev/null; fi
  for m in "${mounts[@]}"; do
    fsfreeze -u "$m" 2>/dev/null
    if mountpoint -q "$m"; then umount "$m" || umount -l "$m"; fi
  done
  [[ -n $disk ]] && losetup -d "$disk"
  [[ -n $scratch ]] && rm -rf "$scratch"
  [[ $rc -ne 0 ]] && log "FAILED (exit $rc); loop device, mounts and scratch files removed"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

hotsnap=""  # set by resolve_hotsnap_binary (scripts/lib.sh)
resolve_hotsnap_binary

# --- The disk -------------------------------------------------------------------------------
scratch=$(mktemp -d "$bench_dir/disk.XXXXXX")
file="$scratch/disk.raw"
truncate -s 2050M "$file"
printf 'label: dos\nstart=2048,size=2097152,type=83\nstart=2099200,size=2097152,type=83\n' \
  | sfdisk -q "$file"
disk=$(losetup -f --show -P "$file")
[[ -e ${disk}p1 ]] || partx -a "$disk"
udevadm settle 2>/dev/null || true
[[ -e ${disk}p2 ]] || die "no partition nodes for $disk"
mkfs.ext4 -q -F "${disk}p1"
mkfs.xfs -q -f "${disk}p2"
mkdir "$scratch/p1" "$scratch/p2"
mount "${disk}p1" "$scratch/p1"; mounts+=("$scratch/p1")
mount "${disk}p2" "$scratch/p2"; mounts+=("$scratch/p2")
log "filling the partitions with the reference data"
copy_with_budget 480000000 "$scratch/p1" /usr/lib > /dev/null
copy_with_budget 150000000 "$scratch/p2" /usr/share > /dev/null
head -c 128M /dev/urandom > "$scratch/p2/random.bin"
mkdir "$scratch/p1/bench-writer"
head -c 256M /dev/urandom > "$scratch/p1/bench-writer/target"
sync
used=$(( $(df -B1 --output=used "$scratch/p1" | tail -n 1) + $(df -B1 --output=used "$scratch/p2" | tail -n 1) ))
umount "$scratch/p1" "$scratch/p2"
cat "$file" > /dev/null  # warm: every unmounted round reads from the page cache

out="$scratch/out.zst"
# backup_wall DEVICE ARGS...: wall seconds of one backup of DEVICE (image removed after).
backup_wall() {
  local dev=$1 t0
  shift
  rm -f "$out"
  sync
  t0=$(now)
  "$hotsnap" backup "$dev" -o "$out" --level "$level" --no-progress -q "$@"
  elapsed "$t0"
  rm -f "$out"
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 }
  END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

whole=() parts=()
for ((round = 1; round <= runs; round++)); do
  log "round $round/$runs: whole disk, then p1 and p2 one by one (unmounted)"
  whole+=("$(backup_wall "$disk" --snapshot none)")
  a=$(backup_wall "${disk}p1" --snapshot none)
  b=$(backup_wall "${disk}p2" --snapshot none)
  parts+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a + b }')")
done

# --- Live: both mounted, the writer on the ext4 -----------------------------------------------
mount "${disk}p1" "$scratch/p1"
mount "${disk}p2" "$scratch/p2"
live=() freezes=() longest=0
for ((round = 1; round <= runs; round++)); do
  log "round $round/$runs: live whole disk with a $rate MB/s writer"
  fio --name=writer --filename="$scratch/p1/bench-writer/target" --rw=randwrite --bs=2M \
    --size=256M --rate=$((rate * 1000000)) --sync=dsync --ioengine=psync --norandommap \
    --randrepeat=0 --refill_buffers --time_based --runtime=3600 > /dev/null 2>&1 &
  writer_pid=$!
  sleep 3  # let it reach its pace
  rm -f "$out"
  t0=$(now)
  "$hotsnap" backup "$disk" -o "$out" --level "$level" --no-progress --json 2> "$scratch/events"
  live+=("$(elapsed "$t0")")
  kill "$writer_pid"; wait "$writer_pid" 2>/dev/null || true; writer_pid=""
  ms=$(grep '"event":"result"' "$scratch/events" | grep -o '"freeze_ms":\[[^]]*\]' | cut -d: -f2)
  freezes+=("$ms")
  run_longest=$(tr -d '[]' <<< "$ms" | tr ',' '\n' | sort -n | tail -n 1)
  (( run_longest > longest )) && longest=$run_longest
  rm -f "$out"
done

# --- The floor: the kernel's own freeze of both filesystems, with the writer ------------------
# fsfreeze -f of both at once, then -u of both, timed from outside: what a freeze window costs
# before hotsnap does anything in it (the journal commit and flushes FIFREEZE waits for).
log "bare freezes of both filesystems (fsfreeze), the writer running"
fio --name=writer --filename="$scratch/p1/bench-writer/target" --rw=randwrite --bs=2M \
  --size=256M --rate=$((rate * 1000000)) --sync=dsync --ioengine=psync --norandommap \
  --randrepeat=0 --refill_buffers --time_based --runtime=3600 > /dev/null 2>&1 &
writer_pid=$!
sleep 3
bare=()
for ((i = 0; i < 10; i++)); do
  t0=$(date +%s%N)
  fsfreeze -f "$scratch/p1" & f1=$!
  fsfreeze -f "$scratch/p2" & f2=$!
  wait "$f1" "$f2"
  fsfreeze -u "$scratch/p2"; fsfreeze -u "$scratch/p1"
  bare+=($(( ($(date +%s%N) - t0) / 1000000 )))
  sleep 0.3
done
kill "$writer_pid"; wait "$writer_pid" 2>/dev/null || true; writer_pid=""

# --- Report -----------------------------------------------------------------------------------
w=$(median "${whole[@]}") p=$(median "${parts[@]}")
ratio=$(awk -v a="$w" -v b="$p" 'BEGIN { printf "%.2f", a / b }')
verdict() { if awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; then echo met; else echo MISSED; fi; }
printf '\nhotsnap whole-disk benchmark  (%s; %s cores, load %s)\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '  disk   2 GiB, dos: p1 1 GiB ext4, p2 1 GiB xfs; %s used by the two filesystems\n' "$(human "$used")"
printf '\n%-28s %8s   %s\n' "backup" "median s" "all"
printf '%-28s %8s   %s\n' "whole disk (unmounted)" "$w" "${whole[*]}"
printf '%-28s %8s   %s\n' "p1 + p2 one by one" "$p" "${parts[*]}"
printf '%-28s %8s   %s\n' "live whole disk, writer" "$(median "${live[@]}")" "${live[*]}"
printf '\n  whole disk / (p1 + p2)   %sx  (target <= 1.1x: %s)\n' "$ratio" "$(verdict "$ratio" 1.1)"
printf '  live freezes (ms)        %s\n' "${freezes[*]}"
printf '  longest freeze           %s ms  (target <= 100 ms: %s)\n' "$longest" "$(verdict "$longest" 100)"
printf '  bare fsfreeze -f/-u of both, writer running (ms): %s  (median %s, max %s)\n' \
  "${bare[*]}" "$(median "${bare[@]}")" "$(printf '%s\n' "${bare[@]}" | sort -n | tail -n 1)"
exit 0
