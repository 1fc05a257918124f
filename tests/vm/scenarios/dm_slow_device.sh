# Slow devices (dm-delay): a backup of a source whose every I/O waits 200 ms, and a restore
# onto such a target, complete and are exact (slow is not an error); a backup whose reads
# take 5 s each ends promptly on SIGTERM (exit 143) and publishes nothing.
. /scenarios/lib.sh

step "setup"
setup_src_dst
dm_create hs-slow "0 $(sectors_of /dev/vg/src) delay /dev/vg/src 0 200"

step "backup of a slow source"
start=$(date +%s)
hotsnap backup /dev/mapper/hs-slow -o /tmp/slow.zst --snapshot none --all-blocks --level 1 \
  --no-progress || fail "backup of the slow device"
echo "took $(( $(date +%s) - start )) s"
hotsnap restore /tmp/slow.zst /tmp/slow.raw --no-progress || fail "restore into a file"
cmp /dev/vg/src /tmp/slow.raw || fail "the image of the slow device differs from it"
rm -f /tmp/slow.raw

step "restore onto a slow target"
dm_create hs-slowt "0 $(sectors_of /dev/vg/dst) delay /dev/vg/dst 0 200"
hotsnap restore /tmp/slow.zst /dev/mapper/hs-slowt --no-progress || fail "restore onto the slow device"
dmsetup remove hs-slowt || fail "dmsetup remove hs-slowt"
cmp /dev/vg/src /dev/vg/dst || fail "the slow target differs from the source"

step "SIGTERM while reads wait 5 s each"
# The read phase starts on a fast table (probing the source, libblkid's buffered reads, would
# otherwise take a slow read per probe, and is not interruptible: a known limitation, see
# tests/RELIABILITY.md); then every read waits 5 s. Swapping the table waits for the reads in
# flight. 4 MB/s lets a chunk start every second, so reads are waiting when SIGTERM comes.
dm_reload hs-slow "0 $(sectors_of /dev/vg/src) linear /dev/vg/src 0"
hotsnap backup /dev/mapper/hs-slow -o /tmp/stuck.zst --snapshot none --all-blocks --level 1 \
  --json --rate-limit 4 2> /tmp/err &
pid=$!
wait_for_phase /tmp/err read 60
dm_reload hs-slow "0 $(sectors_of /dev/vg/src) delay /dev/vg/src 0 5000"
sleep 2
kill -TERM "$pid"
start=$(date +%s)
wait "$pid"
rc=$?
secs=$(( $(date +%s) - start ))
cat /tmp/err
echo "stopped $secs s after SIGTERM"
[ "$rc" = 143 ] || fail "backup exited $rc after SIGTERM, expected 143"
# At most the reads in flight (5 s each, in parallel) are waited for.
[ "$secs" -le 15 ] || fail "backup took $secs s to stop after SIGTERM"
expect_no_image /tmp/stuck.zst
echo "OK"
