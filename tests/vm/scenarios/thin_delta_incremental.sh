# Incremental backups of a thin LV through its pool's metadata: `--snapshot lvm-thin
# --keep-snapshot` keeps the snapshot of each backup; a delta with `--base` then asks thin_delta
# what changed since the parent's kept snapshot, reads only those chunks (and those whose used
# blocks changed: a deleted file's data must not survive) and restores to the snapshot's files.
# When the parent's kept snapshot is gone, the delta falls back to hash compare and says why.
# Prints the full and delta wall times (the benchmark of issue 15 for thin_delta, under TCG).
. /scenarios/lib.sh

# The snapshot device of the running backup (not the kept one, which is tagged hotsnap too).
RUN_SNAPSHOT_CMD='lvs --noheadings -o lv_path -S "lv_name=~^hotsnap-inc-" vg | tr -d " "'
json_field() { sed -n "s/.*\"$2\": *\"\{0,1\}\([^,\"}]*\).*/\1/p" "$1" | tail -n 1; }
now_ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }

# same_files IMAGE_FILE REFERENCE_FILE: both mount (read-only, no journal replay) to equal trees.
same_files() {
  mkdir -p /mnt/a /mnt/b
  mount -o ro,loop,noload "$2" /mnt/a || fail "mount the reference $2"
  mount -o ro,loop,noload "$1" /mnt/b || { umount /mnt/a; fail "mount the restored $1"; }
  diff -r /mnt/a /mnt/b > /tmp/diff.out 2>&1
  rc=$?
  umount /mnt/a; umount /mnt/b
  [ "$rc" = 0 ] || fail "restored files differ from the snapshot's: $(head -c 600 /tmp/diff.out)"
  e2fsck -fn "$1" > /dev/null 2>&1 || fail "restored $1 is not fsck-clean"
}

step "setup: a thin LV with ext4 and data"
lvcreate -q -y -L 200M -T vg/incpool > /dev/null || fail "lvcreate pool"
make_ext4_lv inc 64M thin incpool
seed_data /mnt/inc 24
# The marker is made here, not written out: seed_data copies this very script into the fs.
MARKER="hotsnap-thin-doomed-mark$((6 * 7))"
yes "$MARKER" | head -c 1048576 > /mnt/inc/doomed
sync

step "full backup, its snapshot kept"
t0=$(now_ms)
hotsnap backup /dev/vg/inc -o /tmp/full.zst --snapshot lvm-thin --keep-snapshot --level 1 --no-progress \
  || fail "full backup"
full_ms=$(( $(now_ms) - t0 ))
lv_exists hotsnap-keep-inc || fail "no kept snapshot vg/hotsnap-keep-inc after the full backup"
case $(lvs --noheadings -o lv_attr vg/hotsnap-keep-inc | tr -d ' ') in
  ????a*) fail "the kept snapshot is left active" ;;
esac
hotsnap info --json /tmp/full.zst | grep -q '"kept_snapshot"' || fail "the full image does not record its kept snapshot"

step "change: rewrite part of a file, delete the marker file, add one"
dd if=/dev/urandom of=/mnt/inc/seed.bin bs=64k count=8 seek=20 conv=notrunc,fsync 2> /dev/null || fail "rewrite"
rm /mnt/inc/doomed
dd if=/dev/urandom of=/mnt/inc/new1 bs=64k count=16 conv=fsync 2> /dev/null || fail "new1"
sync

step "delta from thin_delta"
t0=$(now_ms)
hotsnap backup /dev/vg/inc -o /tmp/d1.zst --base /tmp/full.zst --snapshot lvm-thin --keep-snapshot \
  --level 1 --no-progress --json \
  --while-frozen "dd if=\$($RUN_SNAPSHOT_CMD) of=/tmp/ref1.img bs=1M 2>/dev/null" 2> /tmp/ev1 \
  || fail "delta backup: $(tail -n 3 /tmp/ev1)"
delta_ms=$(( $(now_ms) - t0 ))
source=$(json_field /tmp/ev1 change_source)
[ "$source" = thin_delta ] || fail "change source is '$source', not thin_delta: $(json_field /tmp/ev1 change_reason)"
read_bytes=$(json_field /tmp/ev1 bytes_read)
used=$(json_field /tmp/ev1 used_bytes)
[ -n "$read_bytes" ] && [ -n "$used" ] || fail "no bytes_read/used_bytes in the result event"
[ $((read_bytes * 3)) -lt "$used" ] || fail "thin_delta delta read $read_bytes of $used used bytes"
echo "thin_delta delta read $read_bytes of $used used bytes"
hotsnap restore /tmp/d1.zst /tmp/r1.img --no-progress || fail "restore d1"
same_files /tmp/r1.img /tmp/ref1.img
if grep -q -a "$MARKER" /tmp/r1.img; then fail "the deleted file's data survived into the delta"; fi
lv_exists hotsnap-keep-inc || fail "no kept snapshot after the delta"
rm -f /tmp/ref1.img /tmp/r1.img
echo "timing (TCG): full backup ${full_ms} ms, thin_delta delta ${delta_ms} ms"
awk -v d="$delta_ms" -v f="$full_ms" 'BEGIN { printf "thin_delta delta / full wall: %.3f\n", d / f }'

step "fallback: the parent's kept snapshot removed"
lvremove -q -f vg/hotsnap-keep-inc > /dev/null || fail "lvremove kept"
dd if=/dev/urandom of=/mnt/inc/new2 bs=64k count=8 conv=fsync 2> /dev/null || fail "new2"
sync
hotsnap backup /dev/vg/inc -o /tmp/d2.zst --base /tmp/d1.zst --snapshot lvm-thin --level 1 --no-progress --json \
  --while-frozen "dd if=\$($RUN_SNAPSHOT_CMD) of=/tmp/ref2.img bs=1M 2>/dev/null" 2> /tmp/ev2 \
  || fail "fallback delta backup: $(tail -n 3 /tmp/ev2)"
source=$(json_field /tmp/ev2 change_source)
[ "$source" = "hash compare" ] || fail "change source is '$source', not hash compare"
grep -q '"change_reason": *"[^"]*gone' /tmp/ev2 || fail "the fallback does not say the snapshot is gone: $(json_field /tmp/ev2 change_reason)"
hotsnap restore /tmp/d2.zst /tmp/r2.img --no-progress || fail "restore d2"
same_files /tmp/r2.img /tmp/ref2.img
lv_exists hotsnap-keep-inc && fail "a backup without --keep-snapshot kept its snapshot"
[ "$(count_leases)" = 0 ] || fail "lease files left behind"
umount /mnt/inc
echo "OK"
