# The LVM-thin building blocks of incremental backups, through thin_probe (tests/vm/thin_probe.cc):
# ThinChangedRanges between two thin snapshots covers every chunk that differs (compared byte
# by byte) and little more, exactly the chunks dd wrote on an unmounted LV; the pool's metadata
# snapshot is released after every call, also when thin_delta fails, and someone else's is left
# alone; kept snapshots (LvmViewOptions::keep_snapshot): kept inactive and skip-flagged after a
# success, replaced by the next, left alone by `hotsnap cleanup`, untouched by a failed or a
# killed backup and by a crash at each step of the replacement, and dropped on request.
. /scenarios/lib.sh

CHUNK=65536
KIB=1024

# covers RANGES DIFFS: every "OFFSET LENGTH" line of DIFFS lies inside one line of RANGES.
covers() {
  [ -s "$1" ] || fail "no changed ranges reported, but the devices differ: $(cat "$2")"
  awk 'NR == FNR { s[NR] = $1; e[NR] = $1 + $2; n = NR; next }
       { ok = 0
         for (i = 1; i <= n; i++) if ($1 >= s[i] && $1 + $2 <= e[i]) { ok = 1; break }
         if (!ok) { print "not covered: " $1 " +" $2; bad = 1 } }
       END { exit bad }' "$1" "$2"
}
total() { awk '{ t += $2 } END { print t + 0 }' "$1"; }
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
record() { grep '^name=' "$1"; }
expect_held() {
  got=$(thin_probe held vg pool) || fail "thin_probe held failed"
  [ "$got" = "$1" ] || fail "the pool's metadata snapshot is $got, expected $1 ($2)"
}
lv_attr() { lvs --noheadings -o lv_attr "vg/$1" | tr -d ' '; }
run_lvs() { lvs --noheadings -o lv_name -S 'lv_name=~^hotsnap-data-[0-9a-f]+$' vg 2>/dev/null | tr -d ' '; }

step "setup: a thin pool (64 KiB chunks), an ext4 thin LV and an unmounted one"
lvcreate -q -y -L 96M -T vg/pool --chunksize 64k > /dev/null || fail "lvcreate pool"
lvcreate -q -y -V 32M -T vg/pool -n data > /dev/null || fail "lvcreate data"
# No lazy init: the kernel's background zeroing of inode tables would change blocks between
# the snapshots that no test write made.
mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 /dev/vg/data || fail "mkfs"
mkdir -p /mnt/data
mount /dev/vg/data /mnt/data || fail "mount"
dd if=/dev/urandom of=/mnt/data/seed.bin bs=1M count=4 conv=fsync 2> /dev/null || fail "seed"
lvcreate -q -y -V 16M -T vg/pool -n raw > /dev/null || fail "lvcreate raw"
dd if=/dev/urandom of=/dev/vg/raw bs=1M count=8 conv=fsync 2> /dev/null || fail "filling raw"
sync

step "changed ranges of a mounted ext4 between snapshots A and B"
lvcreate -q -y -s -n snapA vg/data > /dev/null || fail "snapshot A"
dd if=/dev/urandom of=/mnt/data/new1 bs=64k count=16 conv=fsync 2> /dev/null || fail "new1"
dd if=/dev/urandom of=/mnt/data/new2 bs=1k count=200 conv=fsync 2> /dev/null || fail "new2"
dd if=/dev/urandom of=/mnt/data/seed.bin bs=4k count=3 seek=300 conv=notrunc,fsync 2> /dev/null || fail "rewrite"
written=$(( 1024 * KIB + 200 * KIB + 12 * KIB ))
sync
lvcreate -q -y -s -n snapB vg/data > /dev/null || fail "snapshot B"
thin_probe ranges vg snapA snapB > /tmp/ranges.txt || fail "thin_probe ranges snapA snapB"
lvchange -ay -K vg/snapA vg/snapB > /dev/null || fail "activating the snapshots"
thin_probe diff-chunks /dev/vg/snapA /dev/vg/snapB $CHUNK > /tmp/diff.txt || fail "diff-chunks"
lvchange -an vg/snapA vg/snapB > /dev/null
reported=$(total /tmp/ranges.txt) differing=$(total /tmp/diff.txt)
echo "written $written bytes; chunks that differ: $differing bytes; reported changed: $reported bytes"
cat /tmp/ranges.txt
[ "$differing" -ge "$written" ] || fail "the snapshots differ by less than was written"
covers /tmp/ranges.txt /tmp/diff.txt || fail "a chunk that differs is not in the reported ranges"
# Beyond the chunks that differ, only chunks rewritten with the same bytes (ext4's own
# metadata, the journal) can be reported: bounded well below the 32 MiB device.
[ "$reported" -le $(( differing + 1024 * KIB )) ] ||
  fail "$reported bytes reported, more than the $differing that differ plus 1 MiB"
thin_probe ranges vg snapB snapB > /tmp/self.txt || fail "thin_probe ranges snapB snapB"
[ ! -s /tmp/self.txt ] || fail "a snapshot compared with itself has changes: $(cat /tmp/self.txt)"
expect_held free "after ranges"

step "changed ranges of dd writes to an unmounted thin LV are exactly the chunks written"
lvcreate -q -y -s -n rawA vg/raw > /dev/null || fail "snapshot rawA"
# write OFFSET LENGTH (bytes): random bytes at OFFSET.
write() {
  dd if=/dev/urandom of=/dev/vg/raw bs="$2" count=1 seek="$1" iflag=fullblock oflag=seek_bytes \
    conv=notrunc,fsync 2> /dev/null || fail "writing $2 bytes at $1 of raw"
}
write 1048576 4096              # one aligned page of a mapped chunk (chunk 16)
write $(( 5 * 1048576 + 12345 )) 100  # 100 bytes inside chunk 80
write $(( 3 * 1048576 - 1 )) 65538    # across chunks 47-49
write 10485760 262144           # unmapped before (right_only): chunks 160-163
write $(( 16 * 1048576 - 512 )) 512   # the last sector: chunk 255
lvcreate -q -y -s -n rawB vg/raw > /dev/null || fail "snapshot rawB"
thin_probe ranges vg rawA rawB > /tmp/raw.txt || fail "thin_probe ranges rawA rawB"
cat > /tmp/raw.want <<EOF
1048576 65536
3080192 196608
5242880 65536
10485760 262144
16711680 65536
EOF
cat /tmp/raw.txt
cmp -s /tmp/raw.txt /tmp/raw.want || fail "raw ranges differ from the chunks written: $(cat /tmp/raw.txt)"
expect_held free "after the raw ranges"

step "the metadata snapshot is released when thin_delta fails, and someone else's is left alone"
thin_probe ranges-by-id vg pool 1 4242 > /dev/null 2> /tmp/bad.err
rc=$?
cat /tmp/bad.err
[ "$rc" = 1 ] || fail "thin_delta with an unknown thin id: exit $rc, expected 1"
expect_in /tmp/bad.err "Unable to find mapping tree" "the error does not quote thin_delta"
expect_in /tmp/bad.err "vg/pool" "the error does not name the pool"
expect_held free "after thin_delta failed"
dmsetup message vg-pool-tpool 0 reserve_metadata_snap || fail "reserving a metadata snapshot by hand"
thin_probe ranges vg snapA snapB > /dev/null 2> /tmp/busy.err
rc=$?
cat /tmp/busy.err
[ "$rc" = 3 ] || fail "with the metadata snapshot held elsewhere: exit $rc, expected 3 (busy)"
expect_in /tmp/busy.err "already holds a metadata snapshot" "the busy error does not say why"
expect_held held "someone else's metadata snapshot was released"
dmsetup message vg-pool-tpool 0 release_metadata_snap || fail "releasing by hand"
expect_held free "after releasing by hand"
lvremove -q -y vg/snapA vg/snapB vg/rawA vg/rawB > /dev/null || fail "lvremove"

step "keep: a successful backup keeps its thin snapshot, inactive and skip-flagged"
thin_probe keep /dev/vg/data > /tmp/k1.out || fail "thin_probe keep"
cat /tmp/k1.out
k1=$(record /tmp/k1.out)
[ "$(field "$k1" name)" = vg/hotsnap-keep-data ] || fail "kept under another name: $k1"
[ "$(field "$k1" run_id)" = "$(field "$(head -1 /tmp/k1.out)" run_id)" ] || fail "the record names another run"
[ "$(field "$k1" created)" -gt 0 ] || fail "no creation time in $k1"
attr=$(lv_attr hotsnap-keep-data)
[ "$(echo "$attr" | cut -c5)" = - ] || fail "the kept snapshot is active ($attr)"
[ "$(echo "$attr" | cut -c10)" = k ] || fail "the kept snapshot is not skip-flagged ($attr)"
tags=$(lvs --noheadings -o lv_tags vg/hotsnap-keep-data | tr -d ' ')
echo "tags: $tags"
echo ",$tags," | grep -q ',hotsnap,' || fail "kept snapshot not tagged hotsnap"
echo ",$tags," | grep -q ',hotsnap_keep,' || fail "kept snapshot not tagged hotsnap_keep"
[ -z "$(run_lvs)" ] || fail "the run's snapshot is still there: $(run_lvs)"
[ "$(count_leases)" = 0 ] || fail "lease left: $(ls $LEASES)"
[ "$(thin_probe find vg data)" = "$k1" ] || fail "find does not give the kept record"
vgchange -ay vg > /dev/null
[ "$(lv_attr hotsnap-keep-data | cut -c5)" = - ] || fail "vgchange -ay activated the kept snapshot"

step "hotsnap cleanup leaves the kept snapshot"
hotsnap cleanup > /tmp/cleanup.out 2>&1 || { cat /tmp/cleanup.out; fail "cleanup failed"; }
cat /tmp/cleanup.out
lv_exists hotsnap-keep-data || fail "cleanup removed the kept snapshot"
grep -q "kept: vg/hotsnap-keep-data" /tmp/cleanup.out || fail "cleanup does not report the kept snapshot"

step "changes since the kept (inactive) snapshot"
dd if=/dev/urandom of=/mnt/data/new3 bs=64k count=8 conv=fsync 2> /dev/null || fail "new3"
sync
lvcreate -q -y -s -n snapC vg/data > /dev/null || fail "snapshot C"
thin_probe ranges vg hotsnap-keep-data snapC > /tmp/kc.txt || fail "ranges from the kept snapshot"
n=$(total /tmp/kc.txt)
echo "changed since the kept snapshot: $n bytes"
[ "$n" -ge $(( 512 * KIB )) ] && [ "$n" -le $(( 2048 * KIB )) ] || fail "$n bytes changed, expected 512 KiB to 2 MiB"
lvremove -q -y vg/snapC > /dev/null || fail "lvremove snapC"

step "keep again: the old kept snapshot is replaced"
thin_probe keep /dev/vg/data > /tmp/k2.out || fail "second thin_probe keep"
k2=$(record /tmp/k2.out)
echo "$k2"
[ "$(field "$k2" thin_id)" != "$(field "$k1" thin_id)" ] || fail "the kept snapshot was not replaced"
[ "$(field "$k2" run_id)" != "$(field "$k1" run_id)" ] || fail "the same run id twice"
[ "$(thin_probe find vg data)" = "$k2" ] || fail "find does not give the new record"
lv_exists hotsnap-prev-data && fail "the replaced snapshot is still there"
[ -z "$(lvs --noheadings -o lv_name -S "thin_id=$(field "$k1" thin_id)" vg | tr -d ' ')" ] ||
  fail "the old kept snapshot (thin id $(field "$k1" thin_id)) is still there"

step "a failed backup leaves the kept snapshot as it was"
thin_probe keep-fail /dev/vg/data > /tmp/kf.out || fail "thin_probe keep-fail"
[ "$(thin_probe find vg data)" = "$k2" ] || fail "a failed backup changed the kept snapshot"
[ -z "$(run_lvs)" ] || fail "the failed run's snapshot is still there"
[ "$(count_leases)" = 0 ] || fail "lease left after a failed backup"

step "a killed backup leaves the kept snapshot; cleanup removes only the run's own"
thin_probe keep-crash /dev/vg/data > /tmp/kk.out
rc=$?
[ "$rc" = 137 ] || fail "keep-crash exited $rc"
[ "$(run_lvs | grep -c .)" = 1 ] || fail "expected the killed run's snapshot, found: $(run_lvs)"
[ "$(thin_probe find vg data)" = "$k2" ] || fail "a killed backup changed the kept snapshot"
hotsnap cleanup > /tmp/cleanup.out 2>&1 || { cat /tmp/cleanup.out; fail "cleanup failed"; }
cat /tmp/cleanup.out
[ -z "$(run_lvs)" ] || fail "cleanup left the killed run's snapshot"
[ "$(thin_probe find vg data)" = "$k2" ] || fail "cleanup changed the kept snapshot"

for point in keep-retired keep-renamed; do
  step "a crash while replacing ($point): the old kept snapshot is back"
  HOTSNAP_CRASH_AT=$point thin_probe keep /dev/vg/data > /tmp/kp.out
  rc=$?
  [ "$rc" = 137 ] || fail "the crash point $point did not fire (exit $rc)"
  lvs -o lv_name,lv_tags vg
  [ "$(thin_probe find vg data)" = "$k2" ] || fail "after a crash at $point the old kept snapshot is not back"
  lv_exists hotsnap-prev-data && fail "hotsnap-prev-data left after a crash at $point"
  hotsnap cleanup > /tmp/cleanup.out 2>&1 || { cat /tmp/cleanup.out; fail "cleanup failed"; }
  [ -z "$(run_lvs)" ] || fail "cleanup left the crashed run's snapshot"
  [ "$(thin_probe find vg data)" = "$k2" ] || fail "cleanup after $point changed the kept snapshot"
done

step "a crash right after the commit: the new one is kept, cleanup removes the old one"
HOTSNAP_CRASH_AT=keep-committed thin_probe keep /dev/vg/data > /tmp/kp.out
rc=$?
[ "$rc" = 137 ] || fail "the crash point keep-committed did not fire (exit $rc)"
lv_exists hotsnap-prev-data || fail "no hotsnap-prev-data after a crash between commit and removal"
hotsnap cleanup > /tmp/cleanup.out 2>&1 || { cat /tmp/cleanup.out; fail "cleanup failed"; }
cat /tmp/cleanup.out
grep -q "removed: LVM snapshot vg/hotsnap-prev-data" /tmp/cleanup.out || fail "cleanup did not report removing the replaced one"
lv_exists hotsnap-prev-data && fail "cleanup left hotsnap-prev-data"
k3=$(thin_probe find vg data)
[ "$(field "$k3" run_id)" = "$(field "$(head -1 /tmp/kp.out)" run_id)" ] || fail "the committed snapshot is not the kept one: $k3"
[ -z "$(run_lvs)" ] && [ "$(count_leases)" = 0 ] || fail "leftovers after cleanup"

step "drop"
thin_probe drop vg data || fail "thin_probe drop"
[ "$(thin_probe find vg data)" = none ] || fail "still kept after drop"
lv_exists hotsnap-keep-data && fail "hotsnap-keep-data still there"
expect_held free "at the end"
echo "OK"
