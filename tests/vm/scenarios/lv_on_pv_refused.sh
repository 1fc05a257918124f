# A whole disk whose second partition is an LVM PV with a mounted LV: the LV is written
# through its own device-mapper device, which no freeze of the disk's filesystems covers, so
# a backup of the disk (auto, freeze, tracked) refuses (exit 3) naming the LV's device and
# suggesting --snapshot lvm and --allow-crash-consistent; --dry-run says the same; nothing is
# published, nothing stays frozen, no snapshot is made. --allow-crash-consistent with the LV
# copies the disk and the image's report lists it; naming the PV partition instead is a usage
# error. The suggested routes work: --snapshot lvm of the LV itself; deactivating the LV
# (unmounting it is not enough: the holder stays).
. /scenarios/lib.sh

DISK_FILE=/tmp/lvdisk.img
DISK=
VG=vgdisk
cleanup() {
  writer_stop
  umount /mnt/lvlv 2> /dev/null
  umount /mnt/lvp1 2> /dev/null
  vgchange -q -an "$VG" > /dev/null 2>&1
  [ -n "$DISK" ] && losetup -d "$DISK" 2> /dev/null
}
trap cleanup EXIT

# writable DIR: a write with fsync completes within 20 s (a frozen filesystem blocks it).
writable() {
  timeout 20 dd if=/dev/zero of="$1/probe" bs=4k count=1 conv=fsync 2> /dev/null ||
    fail "$1 is not writable (still frozen?)"
  rm -f "$1/probe"
}

# lvs_of_vg: the LV names of $VG, sorted, on one line.
lvs_of_vg() { lvs --noheadings -o lv_name "$VG" 2> /dev/null | tr -d ' ' | sort | tr '\n' ' '; }

step "setup: a GPT loop disk, ext4 on p1, a PV on p2 with an ext4 LV"
dd if=/dev/zero of="$DISK_FILE" bs=1M count=0 seek=72 2> /dev/null || fail "making $DISK_FILE"
printf 'label: gpt\nstart=2048, size=24MiB, type=linux\nsize=44MiB, type=lvm\n' |
  sfdisk -q "$DISK_FILE" || fail "sfdisk"
DISK=$(losetup -f) || fail "no free loop device"
losetup -P "$DISK" "$DISK_FILE" || fail "losetup -P $DISK"
P1=${DISK}p1
P2=${DISK}p2
t=0
until [ -b "$P1" ] && [ -b "$P2" ]; do
  t=$((t + 1)); [ $t -gt 50 ] && fail "the kernel did not scan the partitions of $DISK: $(ls /dev/loop*)"
  sleep 0.2
done
mkfs.ext4 -q -F -E nodiscard "$P1" || fail "mkfs $P1"
mkdir -p /mnt/lvp1 /mnt/lvlv
mount "$P1" /mnt/lvp1 || fail "mount $P1"
seed_data /mnt/lvp1 2
pvcreate -q -y -ff "$P2" > /dev/null || fail "pvcreate $P2"
vgcreate -q "$VG" "$P2" > /dev/null || fail "vgcreate $VG"
lvcreate -q -y -L 16M -n lv "$VG" > /dev/null || fail "lvcreate $VG/lv"
mkfs.ext4 -q -F -E nodiscard "/dev/$VG/lv" || fail "mkfs $VG/lv"
mount "/dev/$VG/lv" /mnt/lvlv || fail "mount $VG/lv"
seed_data /mnt/lvlv 1
grep -E "^($P1|/dev/mapper/$VG-lv) " /proc/mounts | grep -q ' rw,' || fail "not mounted rw: $(cat /proc/mounts)"
# The LV's device-mapper node (dm-N), from device-mapper itself.
LVDM=/dev/$(dmsetup info -c --noheadings -o blkdevname "$VG-lv" | tr -d ' ')
[ -b "$LVDM" ] || fail "no device node $LVDM for $VG/lv"
echo "disk $DISK, PV $P2, LV /dev/$VG/lv = $LVDM"
echo "holders of $P2: $(ls /sys/class/block/"${P2#/dev/}"/holders)"
LVS_BEFORE=$(lvs_of_vg)
[ "$LVS_BEFORE" = "lv " ] || fail "unexpected LVs in $VG: '$LVS_BEFORE'"

mkdir -p /tmp/out
# both_ways RC IMG ARGS...: `hotsnap backup ARGS -o IMG` and its --dry-run both exit RC with
# the same error message (the run's stderr stays in /tmp/run.err), and publish nothing.
both_ways() {
  want=$1 img=$2
  shift 2
  hotsnap backup "$@" -o "$img" --level 1 --no-progress 2> /tmp/run.err
  rc=$?
  cat /tmp/run.err
  [ "$rc" = "$want" ] || fail "backup $* exited $rc, expected $want"
  expect_no_image "$img"
  hotsnap backup "$@" -o "$img" --level 1 --no-progress --dry-run > /tmp/dry.out 2> /tmp/dry.err
  rc=$?
  [ "$rc" = "$want" ] ||
    { cat /tmp/dry.out /tmp/dry.err; fail "the dry run of backup $* exited $rc, expected $want"; }
  run_msg=$(grep "^hotsnap: error:" /tmp/run.err)
  dry_msg=$(grep "^hotsnap: error:" /tmp/dry.err)
  [ -n "$run_msg" ] && [ "$run_msg" = "$dry_msg" ] ||
    fail "the dry run's refusal differs from the run's: run '$run_msg', dry run '$dry_msg'"
  expect_no_image "$img"
  echo "(--dry-run: exit $rc, the same message)"
}

# refused_both_ways MODE: a backup of the disk in MODE, and its dry run, refuse naming the LV.
refused_both_ways() {
  mode=$1
  step "--snapshot $mode: refused, by the dry run alike"
  both_ways 3 "/tmp/out/disk-$mode.zst" "$DISK" --snapshot "$mode"
  expect_in /tmp/run.err "held by $LVDM (/dev/mapper/$VG-lv), stacked on $P2 " \
    "the refusal does not name the LV ($LVDM, /dev/mapper/$VG-lv) and the PV partition $P2"
  expect_in /tmp/run.err "--snapshot lvm" "the refusal does not suggest --snapshot lvm"
  expect_in /tmp/run.err "--allow-crash-consistent $LVDM" \
    "the refusal does not suggest --allow-crash-consistent $LVDM"
  writable /mnt/lvp1
  writable /mnt/lvlv
  [ "$(lvs_of_vg)" = "$LVS_BEFORE" ] || fail "LVs of $VG changed: '$(lvs_of_vg)'"
  expect_no_leftovers
}
for mode in auto freeze tracked; do refused_both_ways "$mode"; done

step "--allow-crash-consistent with the PV partition: a usage error (the member is the LV)"
both_ways 2 /tmp/out/disk.zst "$DISK" --allow-crash-consistent "$P2"
expect_in /tmp/run.err "no read-write mounted filesystem or stacked device" \
  "the usage error does not say that $P2 names no member"

step "--allow-crash-consistent /dev/$VG/lv: the disk is copied, the LV crash-consistent"
writer_start /mnt/lvlv
hotsnap backup "$DISK" -o /tmp/out/disk.zst --allow-crash-consistent "/dev/$VG/lv" --level 1 \
  --no-progress --dry-run > /tmp/dry.out 2>&1
rc=$?
cat /tmp/dry.out
[ "$rc" = 0 ] || fail "dry run with --allow-crash-consistent exited $rc"
expect_no_image /tmp/out/disk.zst
hotsnap backup "$DISK" -o /tmp/out/disk.zst --allow-crash-consistent "/dev/$VG/lv" --level 1 \
  --no-progress 2> /tmp/run.err
rc=$?
writer_stop
cat /tmp/run.err
[ "$rc" = 0 ] || fail "backup with --allow-crash-consistent /dev/$VG/lv exited $rc"
hotsnap info --json /tmp/out/disk.zst > /tmp/info.json || fail "info --json"
cat /tmp/info.json
tr -d ' \n' < /tmp/info.json | grep -q "\"crash_consistent\":\[\"$LVDM(/dev/mapper/$VG-lv)\"\]" ||
  fail "info --json does not list $LVDM (/dev/mapper/$VG-lv), alone, in crash_consistent"
hotsnap info /tmp/out/disk.zst | grep -q "not frozen: *$LVDM (/dev/mapper/$VG-lv)" ||
  fail "info does not say $LVDM was not frozen"
hotsnap verify /tmp/out/disk.zst || fail "verify the disk image"
writable /mnt/lvp1
[ "$(lvs_of_vg)" = "$LVS_BEFORE" ] || fail "LVs of $VG changed: '$(lvs_of_vg)'"
expect_no_leftovers

step "restore the disk image: the ext4 partition is fsck-clean"
hotsnap restore /tmp/out/disk.zst /tmp/restored.img --no-progress || fail "restore"
# Its first partition, read by byte range (24 MiB from 1 MiB), checked without the kernel.
dd if=/tmp/restored.img of=/tmp/restored-p1.img bs=1M skip=1 count=24 2> /dev/null ||
  fail "extracting p1"
e2fsck -fn /tmp/restored-p1.img || fail "the restored ext4 partition is not fsck-clean"
rm -f /tmp/restored.img /tmp/restored-p1.img /tmp/out/disk.zst

step "the suggested route: --snapshot lvm of the LV itself"
writer_start /mnt/lvlv
hotsnap backup "/dev/$VG/lv" -o /tmp/out/lv.zst --snapshot lvm --cow-size 8M --level 1 \
  --no-progress
rc=$?
writer_stop
[ "$rc" = 0 ] || fail "backup of /dev/$VG/lv --snapshot lvm exited $rc"
hotsnap info --json /tmp/out/lv.zst | grep -q '"snapshot_mode": *"lvm"' ||
  fail "the LV image's metadata does not say lvm"
hotsnap verify /tmp/out/lv.zst || fail "verify the LV image"
hotsnap restore /tmp/out/lv.zst /tmp/lv-restored.img --no-progress || fail "restore the LV image"
e2fsck -fn /tmp/lv-restored.img || fail "the restored LV filesystem is not fsck-clean"
[ "$(lvs_of_vg)" = "$LVS_BEFORE" ] || fail "LVs of $VG left after the lvm backup: '$(lvs_of_vg)'"
expect_no_leftovers

step "the other suggestion: unmounting the LV is not enough, deactivating it is"
umount /mnt/lvlv || fail "umount /mnt/lvlv"
both_ways 3 /tmp/out/disk.zst "$DISK"
expect_in /tmp/run.err "held by $LVDM" "the refusal does not name $LVDM"
expect_in /tmp/run.err "deactivate it" "the refusal does not suggest deactivating the LV"
vgchange -q -an "$VG" > /dev/null || fail "vgchange -an $VG"
[ -z "$(ls /sys/class/block/"${P2#/dev/}"/holders)" ] || fail "$P2 is still held"
hotsnap backup "$DISK" -o /tmp/out/disk.zst --level 1 --no-progress ||
  fail "backup of $DISK with $VG deactivated"
hotsnap info --json /tmp/out/disk.zst | tr -d ' \n' | grep -q '"crash_consistent":\[\]' ||
  fail "the image of the disk without holders lists crash-consistent members"
hotsnap verify /tmp/out/disk.zst || fail "verify"
echo "OK"
