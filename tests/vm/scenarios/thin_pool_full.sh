# A thin pool above 80 % data use: --snapshot lvm-thin refuses before creating anything.
. /scenarios/lib.sh

step "setup: fill the pool to ~88 %"
lvcreate -q -y -L 64M -T vg/pool2 > /dev/null || fail "lvcreate pool"
lvcreate -q -y -V 128M -T vg/pool2 -n thin2 > /dev/null || fail "lvcreate thin"
dd if=/dev/urandom of=/dev/vg/thin2 bs=1M count=56 conv=fsync 2>/dev/null || fail "filling"
lvs -o lv_name,data_percent,metadata_percent vg/pool2
before=$(lvs --noheadings -o lv_name vg | sort | tr -d ' ' | tr '\n' ' ')

step "backup is refused"
hotsnap backup /dev/vg/thin2 -o /tmp/full.zst --snapshot lvm-thin --no-progress 2> /tmp/err
rc=$?
cat /tmp/err
[ "$rc" = 3 ] || fail "backup exited $rc, expected 3"
grep -q "too full" /tmp/err || fail "the error does not say the pool is too full"
after=$(lvs --noheadings -o lv_name vg | sort | tr -d ' ' | tr '\n' ' ')
[ "$before" = "$after" ] || fail "LVs changed: before '$before', after '$after'"
ls /tmp/full.zst* > /dev/null 2>&1 && fail "an image exists"
expect_no_leftovers
echo "OK"
