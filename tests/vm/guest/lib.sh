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
