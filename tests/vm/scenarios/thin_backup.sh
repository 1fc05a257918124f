# --snapshot auto on a thin LV (picks lvm-thin) while a writer runs, with the used-block map.
# The image's free blocks are zeros, so it is compared to the snapshot file by file (a copy
# taken by a --while-frozen hook), and the restored filesystem must be fsck-clean.
. /scenarios/lib.sh

step "setup"
lvcreate -q -y -L 160M -T vg/pool > /dev/null || fail "lvcreate pool"
make_ext4_lv thin 48M thin pool
seed_data /mnt/thin 6

step "backup while writing"
writer_start /mnt/thin
hotsnap backup /dev/vg/thin -o /tmp/thin.zst --snapshot auto --level 1 --no-progress \
  --while-frozen "dd if=\$($SNAPSHOT_DEVICE_CMD) of=/tmp/copy.img bs=1M 2>/dev/null"
rc=$?
writer_stop
[ "$rc" = 0 ] || fail "backup exited $rc"
expect_no_leftovers

step "verify, restore, compare"
hotsnap info --json /tmp/thin.zst | grep -q '"snapshot_mode": *"lvm-thin"' || fail "auto did not pick lvm-thin"
hotsnap restore /tmp/thin.zst /tmp/restored.img --no-progress || fail "restore"
e2fsck -fn /tmp/restored.img || fail "restored filesystem is not fsck-clean"
e2fsck -fn /tmp/copy.img || fail "the snapshot copy is not fsck-clean"
mkdir -p /mnt/a /mnt/b
mount -o ro,loop,noload /tmp/copy.img /mnt/a || fail "mount copy"
mount -o ro,loop,noload /tmp/restored.img /mnt/b || fail "mount restored"
diff -r /mnt/a /mnt/b || fail "restored files differ from the snapshot's"
umount /mnt/a; umount /mnt/b
echo "OK"
