# A device that disappears while in use: `dmsetup remove --force --deferred` swaps the table
# for one that fails all I/O and removes the device once its last user closes it. A backup
# reading it exits 3 naming the device and publishes nothing; a restore writing it exits 4
# naming the target. Neither hangs, and both let go of the device (it is gone afterwards).
. /scenarios/lib.sh

# remove_mid PID DEVICE PHASE: once hotsnap (PID, events in /tmp/err) has been in PHASE for
# 2 s, removes DEVICE (deferred: the table fails all I/O until its last user lets go); sets
# rc to hotsnap's exit code and prints its output.
remove_mid() {
  wait_for_phase /tmp/err "$3" 60
  sleep 2
  dmsetup remove --force --deferred "$2" || fail "dmsetup remove --force --deferred $2"
  wait "$1"
  rc=$?
  cat /tmp/err
}

step "setup"
setup_src_dst
hotsnap backup /dev/vg/src -o /tmp/good.zst --snapshot none --all-blocks --level 1 --no-progress \
  || fail "backup of the intact volume"

step "the source disappears mid-read"
dm_create hs-gone "0 $(sectors_of /dev/vg/src) linear /dev/vg/src 0"
# 2 MB/s: the 32 MiB read takes about 17 s. Events (--json) say when the read began.
hotsnap backup /dev/mapper/hs-gone -o /tmp/gone.zst --snapshot none --all-blocks --level 1 \
  --json --rate-limit 2 2> /tmp/err &
remove_mid $! hs-gone read
[ "$rc" = 3 ] || fail "backup exited $rc, expected 3"
expect_in /tmp/err "reading /dev/mapper/hs-gone at byte offset" "the error does not name the device and offset"
expect_in /tmp/err "Input/output error" "the error does not say EIO"
expect_no_image /tmp/gone.zst
sleep 1
dmsetup info hs-gone > /dev/null 2>&1 && fail "the device is still there: hotsnap did not close it"

step "the target disappears mid-write"
# Writes wait 3 s in dm-delay, so the restore is still writing when the device goes away.
dm_create hs-gonet "0 $(sectors_of /dev/vg/dst) delay /dev/vg/dst 0 0 /dev/vg/dst 0 3000"
hotsnap restore /tmp/good.zst /dev/mapper/hs-gonet --json 2> /tmp/err &
remove_mid $! hs-gonet write
[ "$rc" = 4 ] || fail "restore exited $rc, expected 4"
expect_in /tmp/err "/dev/mapper/hs-gonet" "the error does not name the target"
expect_in /tmp/err "Input/output error" "the error does not say EIO"
sleep 1
dmsetup info hs-gonet > /dev/null 2>&1 && fail "the target is still there: hotsnap did not close it"
echo "OK"
