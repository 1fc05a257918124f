# A 4 MiB copy-on-write area and 12 MiB written to the origin while the snapshot exists: the
# kernel invalidates the snapshot, the backup fails cleanly with exit code 3 and says so, the
# snapshot and its lease are gone, and no image exists.
. /scenarios/lib.sh

step "setup"
make_ext4_lv data 48M
seed_data /mnt/data 6

step "backup with a tiny COW under heavy writes"
writer_start /mnt/data
hotsnap backup /dev/vg/data -o /tmp/tiny.zst --snapshot lvm --cow-size 4M --all-blocks \
  --level 1 --no-progress \
  --while-frozen "dd if=/dev/urandom of=/mnt/data/big bs=1M count=12 conv=fsync 2>/dev/null" \
  2> /tmp/err
rc=$?
writer_stop
cat /tmp/err
[ "$rc" = 3 ] || fail "backup exited $rc, expected 3"
grep -q "ran out of copy-on-write space" /tmp/err || fail "the error does not say the COW area filled up"
grep -q -- "--cow-size" /tmp/err || fail "the error does not say how to size it"
ls /tmp/tiny.zst* > /dev/null 2>&1 && fail "an image (or its temporary file) exists: $(ls /tmp/tiny.zst*)"
expect_no_leftovers
echo "OK"
