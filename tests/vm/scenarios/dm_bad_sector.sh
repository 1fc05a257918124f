# EIO at a chosen offset, from the kernel: a device-mapper table whose 4 KiB at 13 MiB (source)
# or 21 MiB (target) is the "error" target. A backup of such a device, through io_uring and
# through pread, exits 3 naming the device and the failing chunk's byte offset and publishes
# nothing; a restore onto such a device exits 4 naming the target and the offset and says the
# device now holds a partial image. A device held by device-mapper is refused as a target.
. /scenarios/lib.sh

step "setup"
setup_src_dst
dm_bad_block hs-badsrc /dev/vg/src $((13 * MIB))

for reader in io_uring pread; do
  step "backup of a device with a bad sector ($reader)"
  opt=
  [ "$reader" = pread ] && opt=--no-io-uring
  hotsnap backup /dev/mapper/hs-badsrc -o /tmp/bad.zst --snapshot none --all-blocks --level 1 \
    --no-progress $opt 2> /tmp/err
  rc=$?
  cat /tmp/err
  [ "$rc" = 3 ] || fail "backup exited $rc, expected 3"
  expect_in /tmp/err /dev/mapper/hs-badsrc "the error does not name the device"
  expect_in /tmp/err "byte offset 12582912" "the error does not name the failing chunk's offset (chunk 3)"
  expect_in /tmp/err "Input/output error" "the error does not say EIO"
  expect_no_image /tmp/bad.zst
done

step "restore onto a device with a bad sector"
hotsnap backup /dev/vg/src -o /tmp/good.zst --snapshot none --all-blocks --level 1 --no-progress \
  || fail "backup of the intact volume"
dm_bad_block hs-baddst /dev/vg/dst $((21 * MIB))
hotsnap restore /tmp/good.zst /dev/mapper/hs-baddst --no-progress 2> /tmp/err
rc=$?
cat /tmp/err
[ "$rc" = 4 ] || fail "restore exited $rc, expected 4"
expect_in /tmp/err "writing /dev/mapper/hs-baddst at byte offset 20971520" "the error does not name the target and offset (chunk 5)"
expect_in /tmp/err "Input/output error" "the error does not say EIO"
expect_in /tmp/err "holds a partial image" "the error does not say the target holds a partial image"

step "a device held by device-mapper is refused as a restore target"
before=$(md5sum < /dev/vg/dst)
hotsnap restore /tmp/good.zst /dev/vg/dst --no-progress 2> /tmp/err
rc=$?
cat /tmp/err
[ "$rc" = 4 ] || fail "restore onto a held device exited $rc, expected 4"
expect_in /tmp/err "held by dm-" "the error does not name the device-mapper holder"
[ "$(md5sum < /dev/vg/dst)" = "$before" ] || fail "the held device was written"
echo "OK"
