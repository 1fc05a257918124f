# A backup killed with SIGKILL mid-read leaves its snapshot; `hotsnap cleanup` removes it and
# a new run removes another one; foreign snapshots (untagged, or tagged hotsnap without a run
# tag) and the snapshot of a live run are left alone.
. /scenarios/lib.sh

step "setup"
make_ext4_lv data 48M
seed_data /mnt/data 6
lvcreate -q -y -s -L 8M -n foreign vg/data > /dev/null || fail "foreign snapshot"
lvcreate -q -y -s -L 8M -n hotsnap-data-manual --addtag hotsnap vg/data > /dev/null || fail "look-alike snapshot"

# start_slow_backup OUT: a backup that reads at 1 MB/s, in the background (pid in BACKUP_PID).
start_slow_backup() {
  hotsnap backup /dev/vg/data -o "$1" --snapshot lvm --cow-size 16M --all-blocks --level 1 \
    --no-progress --rate-limit 1 2> "$1.err" &
  BACKUP_PID=$!
  t=0
  until lvs --noheadings -o lv_name -S 'lv_name=~^hotsnap-data-[0-9a-f]+$' vg 2>/dev/null | grep -q .; do
    t=$((t + 1)); [ $t -gt 300 ] && fail "backup made no snapshot within 60 s: $(cat "$1.err")"
    sleep 0.2
  done
  sleep 2  # well into the read
}
run_lvs() { lvs --noheadings -o lv_name -S 'lv_name=~^hotsnap-data-[0-9a-f]+$' vg 2>/dev/null | tr -d ' '; }

step "SIGKILL mid-read, then hotsnap cleanup"
start_slow_backup /tmp/k1.zst
kill -9 "$BACKUP_PID"; wait "$BACKUP_PID" 2>/dev/null
[ "$(run_lvs | grep -c .)" = 1 ] || fail "expected one leftover snapshot, found: $(run_lvs)"
[ "$(count_leases)" = 1 ] || fail "expected one lease file"
hotsnap cleanup > /tmp/cleanup.out 2>&1 || { cat /tmp/cleanup.out; fail "cleanup failed"; }
cat /tmp/cleanup.out
grep -q "removed: LVM snapshot vg/hotsnap-data-" /tmp/cleanup.out || fail "cleanup did not report the removal"
[ -z "$(run_lvs)" ] || fail "leftover still there after cleanup: $(run_lvs)"
[ "$(count_leases)" = 0 ] || fail "lease file still there after cleanup"
lv_exists foreign || fail "cleanup removed the foreign snapshot"
lv_exists hotsnap-data-manual || fail "cleanup removed a hotsnap-tagged snapshot without a run tag"

step "a live run's snapshot survives cleanup"
start_slow_backup /tmp/k2.zst
hotsnap cleanup > /tmp/cleanup.out 2>&1 || { cat /tmp/cleanup.out; fail "cleanup failed"; }
cat /tmp/cleanup.out
[ "$(run_lvs | grep -c .)" = 1 ] || fail "cleanup removed a live run's snapshot"
grep -q "kept: vg/hotsnap-data-" /tmp/cleanup.out || fail "cleanup did not report the live snapshot as kept"

step "SIGKILL again, then a new run cleans up first"
kill -9 "$BACKUP_PID"; wait "$BACKUP_PID" 2>/dev/null
[ "$(run_lvs | grep -c .)" = 1 ] || fail "expected one leftover snapshot"
hotsnap backup /dev/vg/data -o /tmp/k3.zst --snapshot lvm --cow-size 16M --level 1 --no-progress \
  2> /tmp/k3.err || { cat /tmp/k3.err; fail "the new backup failed"; }
cat /tmp/k3.err
grep -q "removed leftover LVM snapshot vg/hotsnap-data-" /tmp/k3.err || fail "the new run did not report removing the leftover"
[ -z "$(run_lvs)" ] || fail "snapshots left: $(run_lvs)"
[ "$(count_leases)" = 0 ] || fail "lease files left"
lv_exists foreign || fail "the new run removed the foreign snapshot"
lv_exists hotsnap-data-manual || fail "the new run removed the look-alike snapshot"
hotsnap verify /tmp/k3.zst || fail "verify"
echo "OK"
