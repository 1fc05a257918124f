# Helpers for the VM scenarios (busybox sh). Each scenario sources this, sets up its own
# LVs in the volume group "vg", and exits non-zero on the first failed expectation.
set -u

LEASES=/run/hotsnap/leases

step() { echo "--- $*"; }
fail() { echo "FAIL: $*"; exit 1; }

# expect_exit CODE CMD...: runs CMD, fails unless it exits with CODE.
expect_exit() {
  want=$1; shift
  "$@"
  got=$?
  [ "$got" = "$want" ] || fail "'$*' exited $got, expected $want"
}

# Names of the LVs in vg carrying the hotsnap tag.
our_lvs() { lvs --noheadings -o lv_name @hotsnap 2>/dev/null | tr -d ' '; }
count_our_lvs() { our_lvs | grep -c . ; }
count_leases() { ls "$LEASES" 2>/dev/null | grep -c '\.json$'; }
lv_exists() { lvs "vg/$1" > /dev/null 2>&1; }

expect_no_leftovers() {
  n=$(count_our_lvs)
  [ "$n" = 0 ] || fail "hotsnap snapshots left behind: $(our_lvs | tr '\n' ' ')"
  n=$(count_leases)
  [ "$n" = 0 ] || fail "lease files left behind: $(ls $LEASES)"
}

# make_ext4_lv NAME SIZE [thin POOL]: creates, formats and mounts /dev/vg/NAME at /mnt/NAME.
make_ext4_lv() {
  name=$1 size=$2
  if [ "${3:-}" = thin ]; then
    lvcreate -q -y -V "$size" -T "vg/$4" -n "$name" > /dev/null || fail "lvcreate thin $name"
  else
    lvcreate -q -y -L "$size" -n "$name" vg > /dev/null || fail "lvcreate $name"
  fi
  mkfs.ext4 -q -F -E nodiscard "/dev/vg/$name" || fail "mkfs $name"
  mkdir -p "/mnt/$name"
  mount "/dev/vg/$name" "/mnt/$name" || fail "mount $name"
}

# seed_data DIR MIB: incompressible data and a tree of small files.
seed_data() {
  dd if=/dev/urandom of="$1/seed.bin" bs=1M count="$2" 2>/dev/null || fail "seeding $1"
  mkdir -p "$1/tree"
  cp -a /usr/sbin /scenarios "$1/tree/" || fail "copying a tree into $1"
  sync
}

# A writer that keeps changing the filesystem while the backup runs: rewrites a few files in
# place (bounded copy-on-write use) and creates and deletes small ones.
WRITER_PID=
writer_start() {
  dir=$1
  (
    i=0
    while :; do
      dd if=/dev/urandom of="$dir/w$((i % 4))" bs=64k count=4 conv=notrunc,fsync 2>/dev/null
      echo "$i" > "$dir/f$i"
      rm -f "$dir/f$((i - 8))"
      i=$((i + 1))
      sleep 0.1
    done
  ) &
  WRITER_PID=$!
}
writer_stop() {
  [ -n "$WRITER_PID" ] && kill "$WRITER_PID" 2>/dev/null && wait "$WRITER_PID" 2>/dev/null
  WRITER_PID=
}
trap 'writer_stop' EXIT

# The device of our (only) snapshot, for hooks.
SNAPSHOT_DEVICE_CMD='lvs --noheadings -o lv_path @hotsnap | tr -d " "'

# wait_for_our_snapshot SECONDS: until a hotsnap-tagged LV exists.
wait_for_our_snapshot() {
  t=0
  while [ "$(count_our_lvs)" = 0 ]; do
    t=$((t + 1))
    [ $t -gt $(( $1 * 5 )) ] && fail "no hotsnap snapshot appeared within $1 s"
    sleep 0.2
  done
}

# ---- Device-mapper fault devices (the dm_* scenarios) ----------------------------------
# Without udev, libdevmapper creates the /dev/mapper nodes itself and waits for nobody.
export DM_DISABLE_UDEV=1
MIB=1048576

# Names of our own dm devices start with "hs-"; init removes any a scenario left.
# dm_create NAME TABLE: creates /dev/mapper/NAME from TABLE (lines "start length target args").
dm_create() {
  printf '%s\n' "$2" | dmsetup create "$1" || fail "dmsetup create $1 with table: $2"
  dmsetup mknodes "$1" 2> /dev/null
  [ -b "/dev/mapper/$1" ] || fail "/dev/mapper/$1 did not appear"
}
# dm_reload NAME TABLE: swaps the table of a live device (suspend, load, resume).
dm_reload() {
  printf '%s\n' "$2" | dmsetup load "$1" || fail "dmsetup load $1"
  dmsetup resume "$1" || fail "dmsetup resume $1"
}
sectors_of() { blockdev --getsz "$1"; }

# dm_bad_block NAME DEV OFFSET_BYTES: DEV mapped linearly, except the 4 KiB at OFFSET_BYTES,
# which fail every read and write with EIO (the "error" target).
dm_bad_block() {
  total=$(sectors_of "$2") bad=$(( $3 / 512 ))
  dm_create "$1" "0 $bad linear $2 0
$bad 8 error
$((bad + 8)) $((total - bad - 8)) linear $2 $((bad + 8))"
}

# fill_mixed DEV: 32 MiB of random data in chunks 0, 3 and 5 (4 MiB each), zeros elsewhere.
fill_mixed() {
  dd if=/dev/zero of="$1" bs=1M count=32 conv=fsync 2> /dev/null || fail "zeroing $1"
  for at in 0 12 20; do
    dd if=/dev/urandom of="$1" bs=1M seek="$at" count=4 conv=notrunc,fsync 2> /dev/null || fail "filling $1"
  done
}

# setup_src_dst: the device-fault scenarios' volumes: vg/src (32 MiB, fill_mixed) and vg/dst
# (32 MiB of zeros).
setup_src_dst() {
  lvcreate -q -y -L 32M -n src vg > /dev/null || fail "lvcreate src"
  lvcreate -q -y -L 32M -n dst vg > /dev/null || fail "lvcreate dst"
  fill_mixed /dev/vg/src
  dd if=/dev/zero of=/dev/vg/dst bs=1M count=32 conv=fsync 2> /dev/null || fail "zeroing dst"
}

# expect_no_image PATH: neither PATH nor a temporary file for it exists.
expect_no_image() {
  ls "$1" > /dev/null 2>&1 && fail "an image was published at $1"
  ls "$(dirname "$1")"/.*hotsnap-*.tmp > /dev/null 2>&1 &&
    fail "a temporary file was left: $(ls "$(dirname "$1")"/.*hotsnap-*.tmp)"
  return 0
}

# expect_in FILE TEXT WHY: FILE contains TEXT.
expect_in() { grep -q -- "$2" "$1" || fail "$3 (looked for '$2' in: $(cat "$1"))"; }

# wait_for_phase EVENTS PHASE SECONDS: until the --json events file shows PHASE.
wait_for_phase() {
  t=0
  until grep -q "\"phase\": *\"$2\"" "$1" 2> /dev/null; do
    t=$((t + 1))
    [ $t -gt $(( $3 * 5 )) ] && fail "no '$2' phase within $3 s: $(cat "$1")"
    sleep 0.2
  done
}

# ---- Publishing onto network filesystems (the publish_* scenarios) -------------------------

# check_publish DIR LABEL: backs up a small file into DIR (on a filesystem that refuses
# renameat2(RENAME_NOREPLACE): 9p, NFS) and expects: published with link()+unlink() (the
# notice says so), a valid image that restores byte-identical, no temporary file; an existing
# name refused up front (exit 4) and, when it appears mid-backup, at publishing time (exit 4,
# left alone); --overwrite replaces; a crash between link() and unlink() leaves a temporary
# name that `hotsnap cleanup DIR` removes while the image stays.
check_publish() {
  dir=$1 label=$2
  src=/tmp/publish-src.img
  if [ ! -f "$src" ]; then
    dd if=/dev/zero of="$src" bs=1M count=8 2> /dev/null || fail "making $src"
    dd if=/dev/urandom of="$src" bs=1M count=2 seek=3 conv=notrunc 2> /dev/null || fail "filling $src"
  fi
  img=$dir/img.zst
  rm -f "$img"

  step "$label: publish"
  hotsnap backup "$src" -o "$img" --all-blocks --level 1 --no-progress 2> /tmp/publish.err
  rc=$?
  cat /tmp/publish.err
  [ "$rc" = 0 ] || fail "backup onto $label exited $rc"
  expect_in /tmp/publish.err "refuses renameat2(RENAME_NOREPLACE)" \
    "the kernel accepted RENAME_NOREPLACE on $label: the link() fallback went untested"
  ls "$dir"/.*hotsnap-*.tmp > /dev/null 2>&1 && fail "temporary file left: $(ls -a "$dir")"
  hotsnap verify "$img" || fail "verify on $label"
  hotsnap restore "$img" /tmp/publish-restored.img --no-progress || fail "restore from $label"
  cmp "$src" /tmp/publish-restored.img || fail "restored image differs from the source"
  rm -f /tmp/publish-restored.img

  step "$label: an existing name is refused"
  sum=$(sha256sum "$img")
  expect_exit 4 hotsnap backup "$src" -o "$img" --all-blocks --level 1 --no-progress
  [ "$(sha256sum "$img")" = "$sum" ] || fail "the existing image was changed"

  step "$label: a name that appears mid-backup is not replaced"
  rm -f "$img"
  hotsnap backup "$src" -o "$img" --all-blocks --level 1 --no-progress --rate-limit 1 \
    2> /tmp/publish.err &
  pid=$!
  t=0
  until ls "$dir"/.img.zst.hotsnap-*.tmp > /dev/null 2>&1; do
    t=$((t + 1)); [ $t -gt 300 ] && fail "no temporary file within 60 s: $(cat /tmp/publish.err)"
    sleep 0.2
  done
  echo "someone else's" > "$img"
  wait "$pid"
  rc=$?
  cat /tmp/publish.err
  [ "$rc" = 4 ] || fail "backup exited $rc, expected 4, when $img appeared meanwhile"
  expect_in /tmp/publish.err "appeared while the backup ran" "the refusal does not say why"
  [ "$(cat "$img")" = "someone else's" ] || fail "the file that appeared was replaced"
  ls "$dir"/.*hotsnap-*.tmp > /dev/null 2>&1 && fail "temporary file left: $(ls -a "$dir")"

  step "$label: --overwrite replaces"
  hotsnap backup "$src" -o "$img" --all-blocks --level 1 --no-progress --overwrite ||
    fail "--overwrite onto $label"
  hotsnap verify "$img" || fail "verify after --overwrite"

  step "$label: a crash between link() and unlink(), then hotsnap cleanup"
  rm -f "$img"
  HOTSNAP_CRASH_AT=after-link hotsnap backup "$src" -o "$img" --all-blocks --level 1 --no-progress
  rc=$?
  [ "$rc" = 137 ] || fail "the crash point did not fire (exit $rc)"
  ls "$dir"/.img.zst.hotsnap-*.tmp > /dev/null 2>&1 || fail "no temporary name after the crash"
  hotsnap cleanup "$dir" > /tmp/cleanup.out 2>&1 || { cat /tmp/cleanup.out; fail "cleanup $dir"; }
  cat /tmp/cleanup.out
  ls "$dir"/.*hotsnap-*.tmp > /dev/null 2>&1 && fail "cleanup left: $(ls -a "$dir")"
  hotsnap verify "$img" || fail "the image did not survive the crash and the cleanup"
  rm -f "$img"
}
