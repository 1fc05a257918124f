#!/usr/bin/env bash
# Benchmark: reading files out of a mounted image (`hotsnap mount`) against restoring it
# (`hotsnap restore`). A benchmark, not a test: it prints, it does not judge.
#
#   bench/bench_mount.sh [--keep]
#
#   --keep   keep the cached source image (and the image made from it) for the next run
#
# The source is bench/bench_backup.sh's cached 4 GiB ext4 image ($BENCH_DIR/ext4-4g.img) if it
# exists; otherwise a 1 GiB ext4 image is built here (system files, 1 MiB files, a 320 MiB
# random file). It is backed up once with `hotsnap backup`, then:
#   mount       wall time of `hotsnap mount` until the filesystem is usable
#   first read  page cache dropped (echo 3 > /proc/sys/vm/drop_caches), then one ~1 MiB
#               file read with dd: the latency a user sees opening a file in a fresh mount
#   seq read    page cache dropped, the largest files read with dd bs=4M: MB/s through
#               FUSE + loop + the filesystem
#   restore     page cache dropped, `hotsnap restore IMAGE FILE` onto tmpfs (or BENCH_DIR when
#               tmpfs is too small): MB/s of device bytes, and of the non-zero chunks it wrote
#
# Environment: BENCH_DIR (default /var/tmp/hotsnap-bench), HOTSNAP_BIN (default: build with
# scripts/setup.sh and use build/hotsnap), LEVEL (zstd level of the backup, default 3).
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

bench_dir="${BENCH_DIR:-/var/tmp/hotsnap-bench}"
level="${LEVEL:-3}"
shared_source="$bench_dir/ext4-4g.img"   # bench_backup.sh's cache, never removed here
own_source="$bench_dir/mount-ext4-1g.img"

# --- Cleanup ------------------------------------------------------------------------------
mnt="" src_mnt="" loop="" scratch="" restored="" built_own=0
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM ERR
  set +e
  if [[ -n $mnt ]] && mountpoint -q "$mnt"; then HOTSNAP_RUN_DIR="$scratch/run" "$hotsnap" umount "$mnt"; fi
  [[ -n $scratch ]] && HOTSNAP_RUN_DIR="$scratch/run" "$hotsnap" cleanup >/dev/null 2>&1
  if [[ -n $src_mnt ]] && mountpoint -q "$src_mnt"; then umount "$src_mnt"; fi
  [[ -n $loop ]] && losetup -d "$loop"
  [[ -n $restored ]] && rm -f "$restored"
  [[ -n $scratch ]] && rm -rf "$scratch"
  if [[ $keep -eq 0 && $built_own -eq 1 ]]; then rm -f "$own_source"; fi
  [[ $rc -ne 0 ]] && log "FAILED (exit $rc); mounts and loop devices removed"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# --- The binary ---------------------------------------------------------------------------
hotsnap=""  # set by resolve_hotsnap_binary (scripts/lib.sh)
resolve_hotsnap_binary
"$hotsnap" mount --help >/dev/null 2>&1 || die "$hotsnap has no mount command"

mkdir -p "$bench_dir"
scratch=$(mktemp -d "$bench_dir/mount-run.XXXXXX")
export HOTSNAP_RUN_DIR="$scratch/run"   # our mounts only; never another run's

# --- The source ---------------------------------------------------------------------------
build_own_source() {
  local t i
  t=$(now)
  log "no cached 4 GiB image from bench_backup.sh; building a 1 GiB ext4 image"
  rm -f "$own_source"
  truncate -s 1G "$own_source.tmp"
  loop=$(losetup -f --show "$own_source.tmp")
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$loop"
  src_mnt=$(mktemp -d "$scratch/src.XXXXXX")
  mount "$loop" "$src_mnt"
  mkdir -p "$src_mnt/kept/files" "$src_mnt/kept/random"
  copy_with_budget $((300 * 1000 * 1000)) "$src_mnt/kept" /usr/lib >/dev/null
  for i in $(seq 1 32); do
    openssl enc -aes-128-ctr -pbkdf2 -nosalt -pass "pass:hotsnap-file-$i" < /dev/zero 2>/dev/null \
      | head -c $((1024 * 1024)) > "$src_mnt/kept/files/$i.bin" || true
  done
  openssl enc -aes-128-ctr -pbkdf2 -nosalt -pass "pass:hotsnap-big" < /dev/zero 2>/dev/null \
    | head -c $((320 * 1024 * 1024)) > "$src_mnt/kept/random/big.bin" || true
  sync
  umount "$src_mnt"; rmdir "$src_mnt"; src_mnt=""
  losetup -d "$loop"; loop=""
  mv "$own_source.tmp" "$own_source"
  built_own=1
  log "source image built in $(elapsed "$t") s"
}

if [[ -f $shared_source ]]; then
  source_img=$shared_source
  log "using bench_backup.sh's cached image $source_img"
elif [[ -f $own_source ]]; then
  source_img=$own_source
  log "reusing $own_source"
else
  build_own_source
  source_img=$own_source
fi

image="$scratch/image.zst"
loop=$(losetup -f --show -r "$source_img")
log "backing up $source_img (hotsnap backup, level $level)"
"$hotsnap" backup "$loop" -o "$image" --level "$level" --no-progress --quiet
losetup -d "$loop"; loop=""
device_bytes=$(stat -c %s "$source_img")
image_bytes=$(stat -c %s "$image")

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# mb_per_s BYTES SECONDS
mb_per_s() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", b / s / 1e6; else print "-" }'; }

# --- Mount and read -----------------------------------------------------------------------
# Numbers on a shared machine move with its load: it is printed with them.
load_start=$(cut -d ' ' -f 1-3 /proc/loadavg)
mnt="$scratch/mnt"
mkdir -p "$mnt"
drop_caches
t=$(now)
"$hotsnap" mount "$image" "$mnt" 2>/dev/null
mount_s=$(elapsed "$t")

# The file closest to 1 MiB, and the largest files (up to 1 GiB of them).
small=$(find "$mnt/kept" -type f -size +900k -size -1200k -printf '%s\t%p\n' | sort -n \
  | awk -F '\t' '{ d = $1 - 1048576; if (d < 0) d = -d; if (best == "" || d < bd) { best = $2; bd = d } }
                 END { print best }')
[[ -n $small ]] || die "no file of about 1 MiB in the image"
small_bytes=$(stat -c %s "$small")
mapfile -t big_files < <(find "$mnt/kept" -type f -size +16M -printf '%s\t%p\n' | sort -rn \
  | awk -F '\t' '{ if (total < 1073741824) { print $2; total += $1 } }')
[[ ${#big_files[@]} -gt 0 ]] || die "no large file in the image"
big_bytes=0
for f in "${big_files[@]}"; do big_bytes=$((big_bytes + $(stat -c %s "$f"))); done

# dd_ms FILE: milliseconds dd itself reports for reading FILE (open to last byte; no
# process start-up, which on a loaded machine would dominate a 1 MiB read).
dd_ms() {
  LC_ALL=C dd if="$1" of=/dev/null bs=1M 2>&1 | awk '/copied/ { for (i = 1; i <= NF; i++)
    if ($(i + 1) == "s,") { printf "%.1f", $i * 1000; exit } }'
}
drop_caches
first_ms=$(dd_ms "$small")
# The same once more, from the page cache, for reference.
warm_ms=$(dd_ms "$small")

drop_caches
t=$(now)
for f in "${big_files[@]}"; do dd if="$f" of=/dev/null bs=4M status=none; done
seq_s=$(elapsed "$t")

t=$(now)
"$hotsnap" umount "$mnt"
umount_s=$(elapsed "$t")

# --- Restore ------------------------------------------------------------------------------
shm_free=$(df -B1 --output=avail /dev/shm 2>/dev/null | tail -n 1 | tr -d ' ' || echo 0)
if [[ ${shm_free:-0} -gt $((device_bytes + 256 * 1024 * 1024)) ]]; then
  restored=$(mktemp -u /dev/shm/hotsnap-bench-restore.XXXXXX)
  target_kind="tmpfs"
else
  restored="$scratch/restored.raw"
  target_kind="disk ($bench_dir)"
fi
drop_caches
t=$(now)
restore_out=$("$hotsnap" restore "$image" "$restored" --no-progress 2>&1)
restore_s=$(elapsed "$t")
zero_chunks=$(grep -o '[0-9]* zero chunks' <<<"$restore_out" | awk '{ print $1 }')
chunks=$(( (device_bytes + 4194303) / 4194304 ))
written_bytes=$(( (chunks - ${zero_chunks:-0}) * 4194304 ))
rm -f "$restored"; restored=""

# --- Report -------------------------------------------------------------------------------
seq_mbs=$(mb_per_s "$big_bytes" "$seq_s")
restore_dev_mbs=$(mb_per_s "$device_bytes" "$restore_s")
restore_data_mbs=$(mb_per_s "$written_bytes" "$restore_s")
printf '\nhotsnap mount benchmark  (%s)\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf '  machine   %s, %s cores, %s RAM\n' "$(uname -r)" "$(nproc)" \
  "$(human "$(awk '/MemTotal/ { print $2 * 1024 }' /proc/meminfo)")"
printf '  load      %s at the start, %s at the end (1, 5, 15 min)\n' "$load_start" \
  "$(cut -d ' ' -f 1-3 /proc/loadavg)"
printf '  image     %s of ext4 in %s (%s), level %s\n' "$(human "$device_bytes")" "$(human "$image_bytes")" \
  "$(basename "$source_img")" "$level"
printf '\n'
printf '  %-34s %10s s\n' "hotsnap mount (until usable)" "$mount_s"
printf '  %-34s %10s ms   (%s, %s; warm: %s ms)\n' "first read of a ~1 MiB file" "$first_ms" \
  "${small#"$mnt"/}" "$(human "$small_bytes")" "$warm_ms"
printf '  %-34s %10s MB/s (%d files, %s in %s s, caches dropped)\n' "sequential read through the mount" \
  "$seq_mbs" "${#big_files[@]}" "$(human "$big_bytes")" "$seq_s"
printf '  %-34s %10s MB/s of device bytes, %s MB/s of non-zero chunks (%s s to %s)\n' \
  "hotsnap restore" "$restore_dev_mbs" "$restore_data_mbs" "$restore_s" "$target_kind"
printf '  %-34s %10s s\n' "hotsnap umount" "$umount_s"
printf '\n  mount read / restore (non-zero chunks): %s\n' \
  "$(awk -v a="$seq_mbs" -v b="$restore_data_mbs" 'BEGIN { if (b > 0) printf "%.0f %%", 100 * a / b; else print "-" }')"
exit 0
