#!/usr/bin/env bash
# hotsnap demo: the main job, a whole disk backed up live. A loop-backed disk with a DOS
# partition table holds an ext4 (sample data) and an XFS, both mounted and busy: a writer
# appends transfer j to a log on the ext4, then to a log on the XFS, fsyncing each, all
# through the backup. hotsnap backs up the disk (both filesystems frozen together at the
# consistency point, only their used blocks read), the image is verified and restored onto a
# second loop disk, and the copy is checked: the table byte for byte, e2fsck and xfs_repair
# clean, every sample file's hash, and both logs from one moment (count(XFS) <= count(ext4)
# <= count(XFS) + 1). Everything it creates (mounts, loop devices, files, the writer) is
# removed on exit, also on failure or Ctrl-C. Exits non-zero if any step fails.
#
#   ./scripts/demo.sh
#
# Environment: as for scripts/setup.sh, plus
#   TMPDIR        where the work directory is made (default: /var/tmp)
#   DEMO_SIZE_MB  size of the demo disks in MiB (default: 640; at least 560: the XFS
#                 partition needs 320 MiB)
#   HOTSNAP_BIN   use this hotsnap binary instead of building build/hotsnap
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap_err_verbose
require_root

size_mb="${DEMO_SIZE_MB:-640}"
(( size_mb >= 560 )) || die "DEMO_SIZE_MB must be at least 560"

# --- Cleanup: registered before anything is created --------------------------------------
work=""
mounts=()  # mount points to unmount
loops=()   # loop devices to detach
writer=""  # the writer's process group

cleanup() {
  local rc=$? m l
  trap - EXIT INT TERM ERR
  set +e
  [[ -n $writer ]] && kill -KILL -- "-$writer" 2>/dev/null && wait "$writer" 2>/dev/null
  for m in "${mounts[@]}"; do
    if mountpoint -q "$m" 2>/dev/null; then
      umount "$m" 2>/dev/null || umount -l "$m"
    fi
  done
  for l in "${loops[@]}"; do
    losetup -d "$l" 2>/dev/null
  done
  [[ -n $work && -d $work ]] && rm -rf -- "$work"
  if [[ $rc -ne 0 ]]; then
    log "FAILED (exit $rc); everything the demo created has been removed"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

step() { log "== $*"; }

# --- Setup: packages and build -------------------------------------------------------------
step "setup (packages, build)"
hotsnap=""  # set by resolve_hotsnap_binary (scripts/lib.sh)
resolve_hotsnap_binary

work=$(mktemp -d "${TMPDIR:-/var/tmp}/hotsnap-demo.XXXXXX")
image="$work/demo.img.zst"

# new_disk FILE: attach FILE with partition scanning, make sure the kernel has the partition
# nodes (partx adds them where the kernel has no parser for the table), set REPLY to the
# loop device; registered for cleanup. (Runs in the caller's shell, so that loops+= sticks.)
new_disk() {
  local dev n
  dev=$(losetup -f --show -P "$1") || die "losetup failed for $1 (is the loop module loaded?)"
  loops+=("$dev")
  [[ -e ${dev}p1 ]] || partx -a "$dev" 2>/dev/null || true
  for n in 1 2; do
    udevadm settle 2>/dev/null || true
    [[ -e ${dev}p$n ]] || die "no ${dev}p$n after losetup -P and partx -a"
  done
  REPLY=$dev
}

# count_lines FILE: full lines in FILE.
count_lines() { wc -l < "$1"; }

# --- Source disk with sample data -----------------------------------------------------------
step "creating a ${size_mb} MiB disk: dos table, p1 ext4, p2 xfs (320 MiB)"
truncate -s "${size_mb}M" "$work/disk.raw"
ext4_mb=$(( size_mb - 322 ))
printf 'label: dos\nstart=2048,size=%d,type=83\nstart=%d,size=%d,type=83\n' \
  $(( ext4_mb * 2048 )) $(( 2048 + ext4_mb * 2048 )) $(( 320 * 2048 )) \
  | sfdisk -q "$work/disk.raw"
new_disk "$work/disk.raw"; disk=$REPLY
# One inode per 8 KiB: the sample data is many small files.
mkfs.ext4 -q -F -i 8192 -L demo-root "${disk}p1"
mkfs.xfs -q -f -L demo-data "${disk}p2"
mkdir "$work/ext4" "$work/xfs" "$work/r-ext4" "$work/r-xfs"
mount "${disk}p1" "$work/ext4"; mounts+=("$work/ext4")
mount "${disk}p2" "$work/xfs"; mounts+=("$work/xfs")

step "copying sample data (docs, headers, random bytes)"
mib=$(( ext4_mb * 1024 * 1024 ))
copied=0
for spec in 20:/usr/share/doc 15:/usr/include 3:/usr/share/man; do
  n=$(copy_with_budget $(( mib * ${spec%%:*} / 100 )) "$work/ext4" "${spec#*:}")
  copied=$(( copied + n ))
done
mkdir -p "$work/ext4/random" "$work/xfs/random"
head -c $(( 8 * 1024 * 1024 )) /dev/urandom > "$work/ext4/random/urandom-8M.bin"
head -c $(( 64 * 1024 * 1024 )) /dev/urandom > "$work/xfs/random/urandom-64M.bin"
sync
files=$(find "$work/ext4" "$work/xfs" -type f | wc -l)
( cd "$work" && find ext4 xfs -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum ) \
  > "$work/files.sha256"
used_ext4=$(df -B1 --output=used "$work/ext4" | tail -n 1)
used_xfs=$(df -B1 --output=used "$work/xfs" | tail -n 1)
log "copied $(human "$copied") of system files + 72 MiB random: $files files"

step "starting a writer on both filesystems (transfer j: ext4 log, then XFS log, fsync each)"
# shellcheck disable=SC2016  # expanded by the writer's shell
setsid bash -c 'j=0; while :; do
    printf "%08d\n" $j | dd of="$1/transfers.log" oflag=append conv=notrunc,fsync status=none || exit 1
    printf "%08d\n" $j | dd of="$2/transfers.log" oflag=append conv=notrunc,fsync status=none || exit 1
    j=$((j + 1)); done' writer "$work/ext4" "$work/xfs" &
writer=$!
for _ in $(seq 1 100); do
  [[ -s $work/xfs/transfers.log ]] && break
  sleep 0.1
done
[[ -s $work/xfs/transfers.log ]] || die "the writer did not start"

# --- Backup (live), verify, info ---------------------------------------------------------------
step "hotsnap backup $disk -o $image   (live: the writer keeps running)"
t=$(now)
"$hotsnap" backup "$disk" -o "$image"
t_backup=$(elapsed "$t")
kill -KILL -- "-$writer"; wait "$writer" 2>/dev/null || true; writer=""
written=$(count_lines "$work/ext4/transfers.log")
image_size=$(stat -c %s "$image")
dev_size=$(blockdev --getsize64 "$disk")

step "hotsnap verify"
t=$(now)
"$hotsnap" verify "$image"
t_verify=$(elapsed "$t")

step "hotsnap info"
"$hotsnap" info "$image"

# --- Restore and check -------------------------------------------------------------------------
step "restoring onto a second ${size_mb} MiB loop disk"
truncate -s "${size_mb}M" "$work/restored.raw"
dst=$(losetup -f --show "$work/restored.raw") || die "losetup failed"
loops+=("$dst")
t=$(now)
"$hotsnap" restore "$image" "$dst"
t_restore=$(elapsed "$t")
losetup -d "$dst"
new_disk "$work/restored.raw"; dst=$REPLY

step "partition table byte for byte"
cmp -n $(( 2048 * 512 )) "$disk" "$dst"

step "e2fsck -fn ${dst}p1; xfs_repair -n ${dst}p2 after replaying its log"
e2fsck -fn "${dst}p1"
mount -o nouuid "${dst}p2" "$work/r-xfs" && umount "$work/r-xfs"
xfs_repair -n "${dst}p2"

step "mounting the restored filesystems read-only: file hashes, and the two logs"
mount -o ro "${dst}p1" "$work/r-ext4"; mounts+=("$work/r-ext4")
mount -o ro,nouuid "${dst}p2" "$work/r-xfs"; mounts+=("$work/r-xfs")
( cd "$work" && sed -e 's#  ext4/#  r-ext4/#' -e 's#  xfs/#  r-xfs/#' files.sha256 \
    | sha256sum --quiet --strict -c - )
n_ext4=$(count_lines "$work/r-ext4/transfers.log")
n_xfs=$(count_lines "$work/r-xfs/transfers.log")
(( n_xfs <= n_ext4 && n_ext4 <= n_xfs + 1 )) \
  || die "the logs are not from one moment: ext4 $n_ext4 transfers, XFS $n_xfs"
umount "$work/r-ext4" "$work/r-xfs"

# --- Summary -------------------------------------------------------------------------------
ratio=$(awk -v d="$dev_size" -v i="$image_size" 'BEGIN { printf "%.1f", d / i }')
cat <<SUMMARY

hotsnap demo: all checks passed
  disk          $(human "$dev_size"), dos table: ext4 $(human "$used_ext4") used, XFS $(human "$used_xfs") used, $files files
  image         $(human "$image_size") ($image_size bytes), device/image ${ratio}:1
  backup        ${t_backup} s, live: $written transfers written by the end of it
  verify        ${t_verify} s
  restore       ${t_restore} s
  checks        table, e2fsck -fn, xfs_repair -n, sha256 of $files files,
                logs from one moment (ext4 $n_ext4, XFS $n_xfs transfers)
SUMMARY
