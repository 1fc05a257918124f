#!/usr/bin/env bash
# hotsnap demo: backs up a loop-backed ext4 holding sample data, verifies the image,
# restores it to a second loop device, and checks the copy byte for byte, with e2fsck, and
# file by file. Everything it creates (mounts, loop devices, files) is removed on exit,
# also on failure or Ctrl-C. Exits non-zero if any step fails.
#
#   ./scripts/demo.sh
#
# Environment: as for scripts/setup.sh, plus
#   TMPDIR        where the work directory is made (default: /var/tmp)
#   DEMO_SIZE_MB  size of the demo devices in MiB (default: 512)
#   HOTSNAP_BIN   use this hotsnap binary instead of building build/hotsnap
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap_err_verbose
require_root

size_mb="${DEMO_SIZE_MB:-512}"

# --- Cleanup: registered before anything is created --------------------------------------
work=""
mounts=()  # mount points to unmount
loops=()   # loop devices to detach

cleanup() {
  local rc=$? m l
  trap - EXIT INT TERM ERR
  set +e
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
if [[ -n ${HOTSNAP_BIN:-} ]]; then
  HOTSNAP_SKIP_BUILD=1 "$HOTSNAP_ROOT/scripts/setup.sh"
  hotsnap=$HOTSNAP_BIN
else
  "$HOTSNAP_ROOT/scripts/setup.sh"
  build_dir="${HOTSNAP_BUILD_DIR:-build}"
  [[ $build_dir == /* ]] || build_dir="$HOTSNAP_ROOT/$build_dir"
  hotsnap="$build_dir/hotsnap"
fi
[[ -x $hotsnap ]] || die "hotsnap binary not found: $hotsnap"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/hotsnap-demo.XXXXXX")
image="$work/demo.img.zst"

# new_loop FILE: attach FILE and print the loop device; registered for cleanup.
# (Runs in the caller's shell, not a subshell, so that loops+= sticks.)
new_loop() {
  local dev
  dev=$(losetup -f --show "$1") || die "losetup failed for $1 (is the loop module loaded?)"
  loops+=("$dev")
  REPLY=$dev
}

# --- Source device with sample data --------------------------------------------------------
step "creating a ${size_mb} MiB sparse file on a loop device, ext4"
truncate -s "${size_mb}M" "$work/source.raw"
new_loop "$work/source.raw"; src_dev=$REPLY
# One inode per 8 KiB: the sample data is many small files.
mkfs.ext4 -q -F -i 8192 -L hotsnap-demo "$src_dev"
mkdir "$work/mnt-source" "$work/mnt-restored"
mount "$src_dev" "$work/mnt-source"; mounts+=("$work/mnt-source")

step "copying sample data (docs, headers, random bytes)"
# Fill the filesystem to roughly 40 %: 20 % docs, 15 % headers, 3 % man pages.
mib=$(( size_mb * 1024 * 1024 ))
copied=0
for spec in 20:/usr/share/doc 15:/usr/include 3:/usr/share/man; do
  n=$(copy_with_budget $(( mib * ${spec%%:*} / 100 )) "$work/mnt-source" "${spec#*:}")
  copied=$(( copied + n ))
done
mkdir -p "$work/mnt-source/random"
head -c $(( 8 * 1024 * 1024 )) /dev/urandom > "$work/mnt-source/random/urandom-8M.bin"
sync
files=$(find "$work/mnt-source" -type f | wc -l)
( cd "$work/mnt-source" && find . -type f -print0 | LC_ALL=C sort -z \
    | xargs -0 sha256sum ) > "$work/files.sha256"
umount "$work/mnt-source"
# Used = blocks allocated in the ext4 bitmaps (data and metadata, journal included).
used=$(dumpe2fs -h "$src_dev" 2>/dev/null | awk -F: '
  /^Block size/ { bs = $2 } /^Block count/ { bc = $2 } /^Free blocks/ { fb = $2 }
  END { printf "%d\n", (bc - fb) * bs }')
log "copied $(human "$copied") of system files + 8 MiB random: $files files, $(human "$used") used"

# --- Backup, verify, info ------------------------------------------------------------------
step "hotsnap backup $src_dev -o $image"
t=$(now)
"$hotsnap" backup "$src_dev" -o "$image"
t_backup=$(elapsed "$t")
image_size=$(stat -c %s "$image")
dev_size=$(blockdev --getsize64 "$src_dev")

step "hotsnap verify"
t=$(now)
"$hotsnap" verify "$image"
t_verify=$(elapsed "$t")

step "hotsnap info"
"$hotsnap" info "$image"

# --- Restore and compare -------------------------------------------------------------------
step "restoring to a second ${size_mb} MiB loop device"
truncate -s "${size_mb}M" "$work/restored.raw"
new_loop "$work/restored.raw"; dst_dev=$REPLY
t=$(now)
"$hotsnap" restore "$image" "$dst_dev"
t_restore=$(elapsed "$t")

step "cmp $src_dev $dst_dev"
cmp "$src_dev" "$dst_dev"

step "stock zstd -dc restores the same bytes"
zstd -q -dc "$image" | cmp - "$src_dev"

step "e2fsck -fn $dst_dev"
e2fsck -fn "$dst_dev"

step "mounting the restored copy read-only and checking file hashes"
mount -o ro "$dst_dev" "$work/mnt-restored"; mounts+=("$work/mnt-restored")
( cd "$work/mnt-restored" && sha256sum --quiet --strict -c "$work/files.sha256" )
umount "$work/mnt-restored"

# --- Summary -------------------------------------------------------------------------------
ratio=$(awk -v d="$dev_size" -v i="$image_size" 'BEGIN { printf "%.1f", d / i }')
used_ratio=$(awk -v u="$used" -v i="$image_size" 'BEGIN { printf "%.2f", u / i }')
cat <<SUMMARY

hotsnap demo: all checks passed
  device        $(human "$dev_size") ($dev_size bytes), ext4, $(human "$used") used, $files files
  image         $(human "$image_size") ($image_size bytes)
  ratio         device/image ${ratio}:1, used/image ${used_ratio}:1
  backup        ${t_backup} s
  verify        ${t_verify} s
  restore       ${t_restore} s
  checks        cmp devices, zstd -dc == source, e2fsck -fn, sha256 of $files files
SUMMARY
