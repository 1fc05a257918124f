# Guest half of bench/bench_thin_delta.sh (busybox sh; run by tests/vm/run_vm.sh
# --scenario-dir bench/vm with the host's ext4 image as /dev/vdb). Not a test: it fails only
# when a step cannot run, never on a time.
#
# 1. a thin LV the size of /dev/vdb in a thin pool, the image copied onto it, mounted;
# 2. full:  hotsnap backup --snapshot lvm-thin --keep-snapshot; dd | zstd of the same LV;
# 3. for each pattern of PATTERNS (in that order): change CHANGE_PERCENT of the used bytes,
#    sync, then a delta: hotsnap backup --base PREVIOUS --snapshot lvm-thin --keep-snapshot
#    (the first one's base is the full, the next one's the delta before it: each measures
#    only its own change). The patterns:
#      scattered  PIECE_KIB pieces from /dev/urandom rewritten in place, one per file, spread
#                 over the files at least two pieces large;
#      files      whole files: 70 % of the bytes as existing files (FILE_MIN_KIB..FILE_MAX_KIB,
#                 default 16 KiB..8 MiB, spread over the filesystem) rewritten in place with new content of the same size, 30 %
#                 as new files in a new folder, and about as many bytes of other files deleted
#                 (a server's nightly change: logs written and rotated, a few files replaced);
# 4. the first pattern's change and delta once more with every lvm, dmsetup and thin_delta
#    command the backup runs timed by a wrapper on PATH: where the delta's time goes.
# Prints "BENCH key value" lines for the host; /host/bench.conf sets LEVEL, CHANGE_PERCENT,
# PIECE_KIB, PATTERNS, FILE_MIN_KIB, FILE_MAX_KIB.
. /scenarios/lib.sh

LEVEL=3 CHANGE_PERCENT=1 PIECE_KIB=1024 PATTERNS="scattered files" FILE_MIN_KIB=16 FILE_MAX_KIB=8192
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
  report "${name}_chunks" "$(json_field "/tmp/ev-$name" chunks)"
  report "${name}_changed_chunks" "$(json_field "/tmp/ev-$name" changed_chunks)"
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

# change_scattered N: rewrites CHANGE_PERCENT of the used bytes in PIECE_KIB pieces, one per file, in
# the middle of every k-th of the files at least a piece large (the same files each time,
# another piece of them: the N-th from the middle).
change_scattered() {
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
  report "scattered${1}_written_bytes" $(( n * PIECE_KIB * 1024 ))
  report "scattered${1}_files" "$n"
}

# change_files N: whole files (see the header): every k-th of the files of FILE_MIN_KIB..FILE_MAX_KIB
# rewritten in place (`1<>` opens without truncating: the same blocks, as an in-place writer
# would) until 70 % of CHANGE_PERCENT of the used bytes, 30 % written as new 1 MiB files in
# /mnt/bench/new-N, and every k'-th of the others deleted until as many bytes.
# One `find -exec stat {} +` lists the sizes: no process per candidate file.
change_files() {
  used_kib=$(df -k /mnt/bench | awk 'NR == 2 { print $3 }')
  budget=$(( used_kib * 1024 / 100 * CHANGE_PERCENT ))
  rewrite_budget=$(( budget * 7 / 10 ))
  new_budget=$(( budget - rewrite_budget ))
  find /mnt/bench -path /mnt/bench/lost+found -prune -o -type f -size +"${FILE_MIN_KIB}k" -size -"${FILE_MAX_KIB}k" \
    -exec stat -c '%s %n' {} + > /tmp/cands
  total=$(awk '{ t += $1 } END { print t + 0 }' /tmp/cands)
  [ "$total" -gt $((rewrite_budget * 4)) ] || fail "only $total bytes in files of $FILE_MIN_KIB..$FILE_MAX_KIB KiB"
  # pick K BUDGET OFF [EXCLUDED]: every K-th candidate (from OFF), then the ones after those
  # in further passes, until BUDGET bytes: spread over the whole list, the budget reached.
  pick() {
    awk -v k="$1" -v b="$2" -v off="$3" '
      FILENAME != "/tmp/cands" { skip[$0] = 1; next }
      { line[NR] = $0; size[NR] = $1 }
      END { for (p = 0; p < k && t < b; p++)
              for (i = 1 + (off + p) % k; i <= NR && t < b; i += k)
                if (!(line[i] in skip) && !(i in took)) { took[i] = 1; t += size[i]; print line[i] } }' \
      ${4:+"$4"} /tmp/cands
  }
  pick $(( total / rewrite_budget )) "$rewrite_budget" "$1" > /tmp/rewrite
  pick $(( total / new_budget )) "$new_budget" $(( total / new_budget / 2 + $1 )) /tmp/rewrite > /tmp/delete
  rewritten=0 nrw=0
  while read -r size f; do
    head -c "$size" /dev/urandom 1<> "$f" || fail "rewrite $f"
    rewritten=$((rewritten + size)) nrw=$((nrw + 1))
  done < /tmp/rewrite
  deleted=0 ndel=0
  while read -r size f; do
    rm -f "$f" || fail "delete $f"
    deleted=$((deleted + size)) ndel=$((ndel + 1))
  done < /tmp/delete
  mkdir -p "/mnt/bench/new-$1"
  new=0 nnew=0
  while [ "$new" -lt "$new_budget" ]; do
    nnew=$((nnew + 1))
    dd if=/dev/urandom of="/mnt/bench/new-$1/log.$nnew" bs=1M count=1 2> /dev/null || fail "new file"
    new=$((new + 1048576))
  done
  sync
  report "files${1}_written_bytes" $(( rewritten + new ))
  report "files${1}_files" "$nrw rewritten ($rewritten bytes), $nnew new ($new bytes), $ndel deleted ($deleted bytes)"
}

base=/mnt/out/full.zst
for pattern in $PATTERNS; do
  case $pattern in scattered|files) ;; *) fail "unknown pattern $pattern" ;; esac
  step "$pattern: change $CHANGE_PERCENT % of the used bytes"
  "change_$pattern" 1
  step "$pattern: delta from thin_delta"
  run_backup "delta_$pattern" --base "$base"
  base="/mnt/out/delta_$pattern.zst"
done
first=${PATTERNS%% *}

step "$first once more, every lvm, dmsetup and thin_delta command timed"
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
"change_$first" 2
: > /tmp/commands.log
plain_path=$PATH
export PATH=/tmp/wrap:$PATH
run_backup delta2 --base "$base"
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
