#!/usr/bin/env bash
# Benchmark: a delta backup (`hotsnap backup --base`) after 1 % of the used bytes changed,
# against the full backup of the same disk, `dd | zstd` and `partclone | zstd`, all in one
# run. The disk is bench_backup.sh's 4 GiB ext4 reference disk (about 1.6 GB used, deleted
# files still in free blocks); if it is not cached in BENCH_DIR, bench_backup.sh --keep builds
# it first (and prints its own table). A benchmark, not a test: it prints the ratios beside
# the issue's targets and never fails on them.
#
#   bench/bench_delta.sh [--keep]
#
#   --keep   keep the cached reference disk for the next run (default: leave it as found:
#            kept if it was cached before, removed if this run built it)
#
# Environment: BENCH_DIR (default /var/tmp/hotsnap-bench; needs ~4 GB more than
# bench_backup.sh: a working copy of the disk and one of it before the change), HOTSNAP_BIN,
# LEVEL (zstd level, default 3), CHANGE_PERCENT (of the used bytes rewritten, default 1).
#
# Steps, on a copy of the reference disk attached read-write and unmounted while read:
#   1. full:   hotsnap backup DEV -o full.zst; dd | zstd; partclone | zstd (page cache warm)
#   2. change: mount, overwrite CHANGE_PERCENT of the used bytes in place, in 256 KiB pieces
#              spread over the kept files (deterministic AES-CTR bytes), umount
#   3. delta:  hotsnap backup DEV -o delta.zst --base full.zst (page cache warm again)
#   4. the changed chunks, found independently: the disk before and after the change compared
#      4 MiB chunk by 4 MiB chunk; their compressed size is what a full hotsnap backup of the
#      changed disk stores for them (its seek table's frame sizes)
# Targets (issue 15): delta wall ≤ 0.4 × full wall; delta image ≤ 1.2 × the changed chunks'
# compressed size.
set -euo pipefail

# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
trap_err_verbose
require_root

keep=0
for arg in "$@"; do
  case $arg in
    --keep) keep=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown option: $arg (see --help)" ;;
  esac
done
command -v python3 >/dev/null || die "python3 is needed to compare chunks and read seek tables"

bench_dir="${BENCH_DIR:-/var/tmp/hotsnap-bench}"
level="${LEVEL:-3}"
change_percent="${CHANGE_PERCENT:-1}"
image="$bench_dir/ext4-4g.img"
built_here=0
if [[ ! -f $image ]]; then
  log "the reference disk is not cached: building it with bench_backup.sh --keep"
  BENCH_DIR="$bench_dir" "$HOTSNAP_ROOT/bench/bench_backup.sh" --keep
  built_here=1
fi

loop="" mnt="" scratch=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM ERR
  set +e
  if [[ -n $mnt ]] && mountpoint -q "$mnt"; then umount "$mnt" || umount -l "$mnt"; fi
  [[ -n $mnt ]] && rmdir "$mnt" 2>/dev/null
  [[ -n $loop ]] && losetup -d "$loop"
  [[ -n $scratch ]] && rm -rf "$scratch"
  if [[ $built_here -eq 1 && $keep -eq 0 ]]; then rm -f "$image" "$bench_dir/ext4-4g.recipe"; fi
  [[ $rc -ne 0 ]] && log "FAILED (exit $rc); loop devices and scratch files removed"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

hotsnap=""
resolve_hotsnap_binary
scratch=$(mktemp -d "$bench_dir/delta.XXXXXX")
work="$scratch/work.img" before="$scratch/before.img"
log "copying the reference disk"
cp --sparse=always "$image" "$work"
loop=$(losetup -f --show "$work")
dev=$loop
read -r block_size block_count free_blocks < <(dumpe2fs -h "$dev" 2>/dev/null | awk -F: '
  /^Block size/ { bs = $2 } /^Block count/ { bc = $2 } /^Free blocks/ { fb = $2 }
  END { print bs + 0, bc + 0, fb + 0 }')
used=$(( (block_count - free_blocks) * block_size ))

rows=()
# measure LABEL OUTPUT CMD: runs CMD (bash -c) once under GNU time; a row of wall, cpu, size.
measure() {
  local label=$1 out=$2 cmd=$3 tf="$scratch/time" rc=0
  rm -f "$out"
  sync
  log "running: $label"
  /usr/bin/time -f '%e %U %S' -o "$tf" bash -c "set -o pipefail; $cmd" 2> "$scratch/stderr" || rc=$?
  if [[ $rc -ne 0 ]]; then cat "$scratch/stderr" >&2; die "$label failed (exit $rc)"; fi
  read -r wall user sys < <(tail -n 1 "$tf")
  rows+=("$(printf '%s\t%s\t%s\t%s' "$label" "$wall" \
    "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" "$(stat -c %s "$out")")")
}
wall_of() { local r; for r in "${rows[@]}"; do [[ ${r%%$'\t'*} == "$1" ]] && { cut -f 2 <<< "$r"; return; }; done; }
size_of() { local r; for r in "${rows[@]}"; do [[ ${r%%$'\t'*} == "$1" ]] && { cut -f 4 <<< "$r"; return; }; done; }
q() { printf '%q' "$1"; }

warm() { log "warming the page cache"; cat "$work" > /dev/null; cat "$dev" > /dev/null; }

# --- 1. Full ------------------------------------------------------------------------------
warm
full="$scratch/full.zst"
measure "hotsnap backup (full)" "$full" \
  "$(q "$hotsnap") backup $(q "$dev") -o $(q "$full") --snapshot none --level $level --no-progress"
measure "dd | zstd" "$scratch/dd.zst" \
  "dd if=$(q "$dev") bs=4M iflag=direct status=none | zstd -q -T0 -$level > $(q "$scratch/dd.zst")"
rm -f "$scratch/dd.zst"
measure "partclone | zstd" "$scratch/pc.zst" \
  "partclone.ext4 -c -s $(q "$dev") -o - | zstd -q -T0 -$level > $(q "$scratch/pc.zst")"
rm -f "$scratch/pc.zst"

# --- 2. Change ----------------------------------------------------------------------------
cp --sparse=always "$work" "$before"
mnt=$(mktemp -d "$scratch/mnt.XXXXXX")
mount "$dev" "$mnt"
target_bytes=$(( used * change_percent / 100 ))
piece=$((256 * 1024))
log "rewriting $target_bytes bytes ($change_percent % of $used used bytes) in place"
mapfile -t files < <(find "$mnt/kept" -type f -size +1M | sort)
[[ ${#files[@]} -gt 0 ]] || die "no kept files to rewrite"
openssl enc -aes-128-ctr -pbkdf2 -nosalt -pass "pass:hotsnap-delta" < /dev/zero 2>/dev/null \
  | head -c "$target_bytes" > "$scratch/new-bytes" || true
written=0 i=0
while [[ $written -lt $target_bytes ]]; do
  f=${files[$(( (i * 7919) % ${#files[@]} ))]}
  size=$(stat -c %s "$f")
  off=$(( ((i * 104729) % (size / piece)) * piece ))
  dd if="$scratch/new-bytes" of="$f" bs=$piece count=1 iflag=skip_bytes skip=$written \
    seek=$((off / piece)) conv=notrunc status=none
  written=$((written + piece)); i=$((i + 1))
done
umount "$mnt"; rmdir "$mnt"; mnt=""

# --- 3. Delta -----------------------------------------------------------------------------
warm
delta="$scratch/delta.zst"
measure "hotsnap backup --base (delta)" "$delta" \
  "$(q "$hotsnap") backup $(q "$dev") -o $(q "$delta") --base $(q "$full") --snapshot none --level $level --no-progress"
full2="$scratch/full2.zst"
log "a full backup of the changed disk (for the changed chunks' compressed size; not timed)"
"$hotsnap" backup "$dev" -o "$full2" --snapshot none --level "$level" --no-progress 2>/dev/null

# --- 4. Changed chunks, independently --------------------------------------------------------
read -r changed_chunks changed_compressed total_chunks < <(python3 - "$before" "$work" "$full2" <<'EOF'
import struct, sys
before, after, full2 = sys.argv[1:4]
chunk = 4 << 20
changed = []
with open(before, 'rb') as a, open(after, 'rb') as b:
    i = 0
    while True:
        x, y = a.read(chunk), b.read(chunk)
        if not x and not y:
            break
        if x != y:
            changed.append(i)
        i += 1
total = i
with open(full2, 'rb') as f:
    f.seek(-9, 2)
    frames, descriptor, magic = struct.unpack('<IBI', f.read(9))
    assert magic == 0x8F92EAB1 and descriptor == 0, 'not a plain hotsnap image'
    f.seek(-9 - 8 * frames, 2)
    entries = [struct.unpack('<II', f.read(8)) for _ in range(frames)]
# entry 0 is the metadata frame; chunk k is entry k + 1
print(len(changed), sum(entries[k + 1][0] for k in changed), total)
EOF
)

# --- Table --------------------------------------------------------------------------------
printf '\nhotsnap delta benchmark: %s ext4, %s used bytes, %s %% rewritten (%s bytes), zstd -%s, %s cores\n' \
  "$(numfmt --to=iec "$(blockdev --getsize64 "$dev")")" "$used" "$change_percent" "$written" "$level" "$(nproc)"
printf '%-32s %8s %8s %14s\n' "command" "wall s" "cpu s" "output bytes"
for r in "${rows[@]}"; do
  IFS=$'\t' read -r label wall cpu size <<< "$r"
  printf '%-32s %8s %8s %14s\n' "$label" "$wall" "$cpu" "$size"
done
full_wall=$(wall_of "hotsnap backup (full)")
delta_wall=$(wall_of "hotsnap backup --base (delta)")
delta_size=$(size_of "hotsnap backup --base (delta)")
info=$("$hotsnap" info --json "$delta")
stored=$(sed -n 's/.*"changed_chunks": *\([0-9]*\).*/\1/p' <<< "$info")
printf '\nchanged chunks (before/after compared): %s of %s; the delta stored %s\n' \
  "$changed_chunks" "$total_chunks" "$stored"
printf 'their compressed size in a full image: %s bytes\n' "$changed_compressed"
awk -v d="$delta_wall" -v f="$full_wall" -v dd="$(wall_of "dd | zstd")" -v pc="$(wall_of "partclone | zstd")" \
    -v ds="$delta_size" -v cc="$changed_compressed" 'BEGIN {
  printf "delta wall / full wall:            %.3f   (target <= 0.4)\n", d / f
  printf "delta wall / dd | zstd wall:       %.3f\n", d / dd
  printf "delta wall / partclone | zstd wall: %.3f\n", d / pc
  printf "full wall / dd | zstd wall:        %.3f\n", f / dd
  printf "full wall / partclone | zstd wall: %.3f\n", f / pc
  printf "delta image / changed compressed:  %.3f   (target <= 1.2)\n", ds / cc
}'
