# --snapshot lvm (classic) of a mounted ext4 LV while a writer runs. A --while-frozen hook
# copies the snapshot device (it runs once the snapshot exists, before the read); the image
# (--all-blocks) must equal that copy byte for byte and the restored filesystem be fsck-clean.
. /scenarios/lib.sh

step "setup"
make_ext4_lv data 48M
seed_data /mnt/data 6
lvcreate -q -y -L 48M -n copy vg > /dev/null || fail "lvcreate copy"

step "backup while writing"
writer_start /mnt/data
hotsnap backup /dev/vg/data -o /tmp/classic.zst --snapshot lvm --cow-size 32M --all-blocks \
  --level 1 --no-progress \
  --while-frozen "dd if=\$($SNAPSHOT_DEVICE_CMD) of=/dev/vg/copy bs=1M conv=fsync 2>/dev/null"
rc=$?
writer_stop
[ "$rc" = 0 ] || fail "backup exited $rc"
expect_no_leftovers

step "verify, restore, compare"
hotsnap verify /tmp/classic.zst || fail "verify"
hotsnap info --json /tmp/classic.zst | grep -q '"snapshot_mode": *"lvm"' || fail "image metadata does not say lvm"
hotsnap restore /tmp/classic.zst /tmp/restored.img --no-progress || fail "restore"
cmp /dev/vg/copy /tmp/restored.img || fail "restored image differs from the snapshot's content"
e2fsck -fn /tmp/restored.img || fail "restored filesystem is not fsck-clean"
echo "OK"
