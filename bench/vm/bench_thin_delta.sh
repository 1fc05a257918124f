# Guest half of bench/bench_thin_delta.sh (busybox sh; run by tests/vm/run_vm.sh
# --scenario-dir bench/vm with the host's ext4 image as /dev/vdb). Not a test: it fails only
# when a step cannot run, never on a time.
#
# 1. a thin LV the size of /dev/vdb in a thin pool, the image copied onto it, mounted;
# 2. full:  hotsnap backup --snapshot lvm-thin --keep-snapshot; dd | zstd of the same LV;
# 3. change CHANGE_PERCENT of the used bytes in place (PIECE_KIB pieces from /dev/urandom,
#    spread over the largest files), sync;
# 4. delta: hotsnap backup --base full --snapshot lvm-thin --keep-snapshot;
# 5. the same change and delta once more with every lvm, dmsetup and thin_delta command the
#    backup runs timed by a wrapper on PATH: where the delta's time goes.
# Prints "BENCH key value" lines for the host; /host/bench.conf sets LEVEL, CHANGE_PERCENT,
# PIECE_KIB.
. /scenarios/lib.sh

LEVEL=3 CHANGE_PERCENT=1 PIECE_KIB=1024
[ -f /host/bench.conf ] && . /host/bench.conf

# Milliseconds of uptime, without starting a process (TCG makes every fork count).
now_ms() {
  read -r up _ < /proc/uptime
  s=${up%.*} f=${up#*.}
  f=${f#0}
  echo $((s * 1000 + ${f:-0} * 10))
}
json_field() { sed -n "s/.*\"$2\": *\"\{0,1\}\([^,\"}]*\).*/\1/p" "$1" | tail -n 1; }
phases() { sed -n 's/.*"phase_seconds": *\({[^}]*}\).*/\1/p' "$1" | tail -n 1; }
report() { echo "BENCH $*"; }

step "setup: the host's image on a thin LV"
dev_bytes=$(blockdev --getsize64 /dev/vdb) || fail "no /dev/vdb (run through bench/bench_thin_delta.sh)"
lvcreate -q -y -L $((dev_bytes * 2 / 1048576))M -T vg/benchpool > /dev/null || fail "lvcreate pool"
lvcreate -q -y -V "${dev_bytes}b" -T vg/benchpool -n bench > /dev/null || fail "lvcreate thin LV"
t0=$(now_ms)
dd if=/dev/vdb of=/dev/vg/bench bs=4M conv=fsync 2> /dev/null || fail "copying /dev/vdb"
report copy_ms $(( $(now_ms) - t0 ))
lvcreate -q -y -L $((dev_bytes / 1048576))M -n benchout vg > /dev/null || fail "lvcreate out"
mkfs.ext4 -q -F -E nodiscard /dev/vg/benchout || fail "mkfs out"
mkdir -p /mnt/out /mnt/bench
mount /dev/vg/benchout /mnt/out || fail "mount out"
mount /dev/vg/bench /mnt/bench || fail "mount the copied image"
report chunk_kib "$(lvs --noheadings --units k --nosuffix -o chunk_size vg/benchpool | tr -d ' ')"

run_backup() {  # NAME [ARGS...]: a timed backup of the LV, events in /tmp/ev-NAME
  name=$1
  shift
  t0=$(now_ms)
  hotsnap backup /dev/vg/bench -o "/mnt/out/$name.zst" --snapshot lvm-thin --keep-snapshot \
    --level "$LEVEL" --no-progress --json "$@" 2> "/tmp/ev-$name" || fail "backup $name: $(tail -n 3 /tmp/ev-$name)"
  ms=$(( $(now_ms) - t0 ))
  report "${name}_ms" "$ms"
  report "${name}_bytes_read" "$(json_field "/tmp/ev-$name" bytes_read)"
  report "${name}_used_bytes" "$(json_field "/tmp/ev-$name" used_bytes)"
  report "${name}_image_bytes" "$(stat -c %s "/mnt/out/$name.zst")"
  report "${name}_phases" "$(phases "/tmp/ev-$name")"
  source=$(json_field "/tmp/ev-$name" change_source)
  [ -n "$source" ] && report "${name}_change_source" "$source"
}

step "full backup, its snapshot kept"
sync
run_backup full

step "dd | zstd of the same LV"
t0=$(now_ms)
out_bytes=$(dd if=/dev/vg/bench bs=4M 2> /dev/null | zstd -q -T0 "-$LEVEL" -c | wc -c)
report ddzstd_ms $(( $(now_ms) - t0 ))
report ddzstd_bytes "$out_bytes"

# change N: rewrites CHANGE_PERCENT of the used bytes in PIECE_KIB pieces, one per file, in
# the middle of every k-th of the files at least a piece large (the same files each time,
# another piece of them: the N-th from the middle).
change() {
  used_kib=$(df -k /mnt/bench | awk 'NR == 2 { print $3 }')
  pieces=$(( used_kib * CHANGE_PERCENT / 100 / PIECE_KIB ))
  [ "$pieces" -ge 1 ] || pieces=1
  find /mnt/bench -type f -size +$((PIECE_KIB * 2))k > /tmp/big
  files=$(grep -c . /tmp/big)
  [ "$files" -ge "$pieces" ] || fail "only $files files of at least $((PIECE_KIB * 2)) KiB for $pieces pieces"
  every=$(( files / pieces ))
  n=0 i=0
  while read -r f; do
    i=$((i + 1))
    [ $(( (i - 1) % every )) = 0 ] && [ "$n" -lt "$pieces" ] || continue
    size_kib=$(( $(stat -c %s "$f") / 1024 ))
    seek=$(( size_kib / PIECE_KIB / 2 + $1 - 1 ))
    [ $(( (seek + 1) * PIECE_KIB )) -le "$size_kib" ] || seek=0
    dd if=/dev/urandom of="$f" bs=${PIECE_KIB}k count=1 seek="$seek" conv=notrunc 2> /dev/null || fail "rewrite $f"
    n=$((n + 1))
  done < /tmp/big
  sync
  report "change${1}_bytes" $(( n * PIECE_KIB * 1024 ))
}

step "change $CHANGE_PERCENT % of the used bytes"
change 1
step "delta from thin_delta"
run_backup delta --base /mnt/out/full.zst

step "the same once more, every lvm, dmsetup and thin_delta command timed"
mkdir -p /tmp/wrap
for tool in lvm dmsetup thin_delta; do
  cat > "/tmp/wrap/$tool" <<EOF
#!/bin/sh
read -r a _ < /proc/uptime
/usr/sbin/$tool "\$@"
rc=\$?
read -r b _ < /proc/uptime
echo "\$a \$b $tool \$1 \$2 \$3" >> /tmp/commands.log
exit \$rc
EOF
  chmod +x "/tmp/wrap/$tool"
done
change 2
: > /tmp/commands.log
plain_path=$PATH
export PATH=/tmp/wrap:$PATH
run_backup delta2 --base /mnt/out/delta.zst
export PATH=$plain_path
# One line per command (seconds from the first command's start, seconds it took), then the
# sums per kind.
awk 'NR == 1 { t0 = $1 } { printf "BENCH cmd %7.2f %5.2f %s\n", $1 - t0, $2 - $1, substr($0, index($0, $3)) }' /tmp/commands.log
awk '{ k = $3 " " ($3 == "lvm" ? $4 : ($3 == "dmsetup" ? $4 : "")); n[k]++; s[k] += $2 - $1; tot += $2 - $1; c++ }
     END { for (k in n) printf "BENCH cmdsum %-20s %3d %6.2f\n", k, n[k], s[k];
           printf "BENCH cmdtotal %d %.2f\n", c, tot }' /tmp/commands.log
umount /mnt/bench
umount /mnt/out
echo "OK"
