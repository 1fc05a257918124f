#!/usr/bin/env bash
# Benchmark: hotsnap backup against `dd | zstd` and `partclone | zstd` on one 4 GiB ext4
# loop device (about 1.6 GB used, plus deleted files whose blocks still hold data), all
# in one run so the numbers compare. A benchmark, not a test: it prints, and sets the
# ratios beside the targets of the issues, but it never fails on them.
#
#   bench/bench_backup.sh [--keep] [--all-blocks] [--tib] [--rebuild-image] [--image-only]
#
#   --keep           keep the cached source image(s) for the next run (default: remove them)
#   --all-blocks     also time `hotsnap backup --all-blocks` (if this hotsnap accepts it)
#   --tib            also time hotsnap on a 1 TiB sparse-file loop device holding the same
#                    data (see build_tib_image); bench/bench_used_blocks.sh runs
#                    `--all-blocks --tib`
#   --rebuild-image  build the source image(s) anew even if cached ones exist
#   --image-only     build (or reuse) the cached source image(s), keep them, measure nothing
#                    (for the benchmarks that run on this disk: bench_agent.sh)
#
# Environment:
#   BENCH_DIR    cache and scratch directory (default: /var/tmp/hotsnap-bench); needs about
#                4 GiB for the sparse image (~2.9 GB allocated) + 2.5 GB for outputs;
#                with --tib another ~4 GB (the 1 TiB file is sparse: written blocks only)
#   HOTSNAP_BIN  hotsnap binary to measure (default: build with scripts/setup.sh, which
#                honours HOTSNAP_BUILD_DIR, and use build/hotsnap)
#   LEVEL        zstd level for every compressor (default: 3)
#
# What is measured, per command, with GNU time (/usr/bin/time):
#   wall  elapsed time of the whole command or pipeline (`bash -c 'A | B'` under time)
#   cpu   user + system time of every process of it (children of that bash, summed)
#   rss   peak resident set size: for a pipeline, the sum of each component's own peak
#         (GNU time on each component; they run at the same time, so the sum bounds the
#         pipeline's footprint from above); the components are listed below the table
#   size  bytes of the output file
# The device is unmounted and the page cache is warm (the backing file and the device are
# read once first), so the readers compete on CPU, not on the disk. Outputs are written to
# BENCH_DIR (page cache absorbs them; each is deleted after it is measured).
set -euo pipefail

# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
trap_err_verbose
require_root

keep=0 all_blocks=0 rebuild=0 tib=0 image_only=0
for arg in "$@"; do
  case $arg in
    --keep) keep=1 ;;
    --all-blocks) all_blocks=1 ;;
    --tib) tib=1 ;;
    --rebuild-image) rebuild=1 ;;
    --image-only) image_only=1; keep=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown option: $arg (see --help)" ;;
  esac
done

bench_dir="${BENCH_DIR:-/var/tmp/hotsnap-bench}"
level="${LEVEL:-3}"
image="$bench_dir/ext4-4g.img"
recipe_file="$bench_dir/ext4-4g.recipe"
# Bump when the recipe below changes, so stale cached images are rebuilt.
recipe="v2: 4 GiB ext4; kept: /usr/lib 800 MB, /usr/share 300 MB, 320 MiB aes-ctr;
deleted: /usr/include 250 MB, /usr/bin 300 MB, 384 MiB aes-ctr"
tib_image="$bench_dir/ext4-1t.img"
tib_recipe_file="$bench_dir/ext4-1t.recipe"
tib_recipe="v1: 1 TiB sparse ext4, assume_storage_prezeroed; kept: /kept of [$recipe];
deleted: the same deleted set"

# --- Cleanup ------------------------------------------------------------------------------
mnt="" src_mnt="" build_loop="" bench_loop="" tib_loop="" src_loop="" scratch="" shm_raw=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM ERR
  set +e
  if [[ -n $mnt ]] && mountpoint -q "$mnt"; then umount "$mnt" || umount -l "$mnt"; fi
  [[ -n $mnt ]] && rmdir "$mnt" 2>/dev/null
  if [[ -n $src_mnt ]] && mountpoint -q "$src_mnt"; then umount "$src_mnt" || umount -l "$src_mnt"; fi
  [[ -n $src_mnt ]] && rmdir "$src_mnt" 2>/dev/null
  [[ -n $build_loop ]] && losetup -d "$build_loop"
  [[ -n $src_loop ]] && losetup -d "$src_loop"
  [[ -n $bench_loop ]] && losetup -d "$bench_loop"
  [[ -n $tib_loop ]] && losetup -d "$tib_loop"
  [[ -n $shm_raw ]] && rm -f "$shm_raw"
  [[ -n $scratch ]] && rm -rf "$scratch"
  rm -f "$image.tmp" "$tib_image.tmp"
  if [[ $keep -eq 0 ]]; then
    rm -f "$image" "$recipe_file" "$tib_image" "$tib_recipe_file"
    rmdir "$bench_dir" 2>/dev/null
  fi
  [[ $rc -ne 0 ]] && log "FAILED (exit $rc); loop devices and scratch files removed"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# --- The binary ---------------------------------------------------------------------------
hotsnap=""  # set by resolve_hotsnap_binary (scripts/lib.sh)
resolve_hotsnap_binary

mkdir -p "$bench_dir"
scratch=$(mktemp -d "$bench_dir/run.XXXXXX")

# --- The source image (cached) ------------------------------------------------------------
# write_random NAME BYTES FILE: deterministic incompressible bytes (AES-128-CTR keystream
# of zeros under a key derived from NAME), the same on every machine.
write_random() {
  openssl enc -aes-128-ctr -pbkdf2 -nosalt -pass "pass:hotsnap-$1" < /dev/zero 2>/dev/null \
    | head -c "$2" > "$3" || true  # head closing the pipe makes openssl fail: expected
  [[ $(stat -c %s "$3") -eq $2 ]] || die "short random file $3"
}

# write_and_delete MNT: data that is written and then deleted: its blocks are free but
# still hold it, which a whole-device copy (dd) carries and a used-blocks copy (partclone,
# hotsnap) skips.
write_and_delete() {
  local mb=$((1000 * 1000)) i
  mkdir -p "$1/deleted"
  copy_with_budget $((250 * mb)) "$1/deleted" /usr/include >/dev/null
  copy_with_budget $((300 * mb)) "$1/deleted" /usr/bin >/dev/null
  mkdir -p "$1/deleted/random"
  for i in 1 2 3 4 5 6; do write_random "deleted-$i" $((64 * 1024 * 1024)) "$1/deleted/random/$i.bin"; done
  sync
  rm -rf "$1/deleted"
  sync
}

build_image() {
  local mb=$((1000 * 1000)) t i
  t=$(now)
  log "building the source image (once; cached in $bench_dir with --keep)"
  rm -f "$image" "$recipe_file" "$image.tmp"
  truncate -s 4G "$image.tmp"
  build_loop=$(losetup -f --show "$image.tmp")
  # Fixed UUID and hash seed, inode tables written now (no lazy init running later).
  mkfs.ext4 -q -F -L hotsnap-bench -U 6b1d6e0c-2f0e-4f7c-9d55-0b3c1f1e7a11 \
    -E lazy_itable_init=0,lazy_journal_init=0,hash_seed=0d8b3f2a-4a55-4a3e-8c61-7f0d2c9b5e42 \
    "$build_loop"
  mnt=$(mktemp -d "$bench_dir/mnt.XXXXXX")
  mount "$build_loop" "$mnt"

  # Data that stays: compressible system files and incompressible bytes.
  mkdir -p "$mnt/kept" "$mnt/deleted"
  copy_with_budget $((800 * mb)) "$mnt/kept" /usr/lib >/dev/null
  copy_with_budget $((300 * mb)) "$mnt/kept" /usr/share >/dev/null
  mkdir -p "$mnt/kept/random"
  for i in 1 2 3 4 5; do write_random "kept-$i" $((64 * 1024 * 1024)) "$mnt/kept/random/$i.bin"; done
  sync

  write_and_delete "$mnt"

  umount "$mnt"; rmdir "$mnt"; mnt=""
  e2fsck -fn "$build_loop" >/dev/null || die "e2fsck found errors in the new image"
  losetup -d "$build_loop"; build_loop=""
  mv "$image.tmp" "$image"
  printf '%s\n' "$recipe" > "$recipe_file"
  log "source image built in $(elapsed "$t") s"
}

# The 1 TiB image: what a 1 TiB volume holding the same data looks like. A fresh mkfs.ext4
# on the 1 TiB file (its metadata scales with the size: 8192 block groups, 64 Mi inodes in
# 16 GiB of inode tables, a 1 GiB journal), the 4 GiB image's kept files copied in from it
# (mounted read-only), and the same files written and deleted. The data lands where ext4's
# allocator puts it on a big filesystem, spread over groups, not packed into the first
# 4 GiB as resize2fs of the small image would leave it. assume_storage_prezeroed: the
# sparse file reads as zeros, so mkfs need not write 17 GiB of zeros (the groups are
# marked ITABLE_ZEROED, as on a volume whose lazy init has long finished).
build_tib_image() {
  local t
  t=$(now)
  log "building the 1 TiB source image (once; cached in $bench_dir with --keep)"
  rm -f "$tib_image" "$tib_recipe_file" "$tib_image.tmp"
  truncate -s 1T "$tib_image.tmp"
  build_loop=$(losetup -f --show "$tib_image.tmp")
  mkfs.ext4 -q -F -L hotsnap-bench-1t -U 3c0f8a52-1b7e-4d6a-a0c4-5e2d9b7f1a20 \
    -E assume_storage_prezeroed=1,hash_seed=0d8b3f2a-4a55-4a3e-8c61-7f0d2c9b5e42 \
    "$build_loop"
  mnt=$(mktemp -d "$bench_dir/mnt.XXXXXX")
  src_mnt=$(mktemp -d "$bench_dir/src.XXXXXX")
  # noinit_itable: no lazy-init thread touching the inode tables (they are zero already).
  mount -o noinit_itable "$build_loop" "$mnt"
  src_loop=$(losetup -f --show -r "$image")
  mount -o ro "$src_loop" "$src_mnt"
  tar -C "$src_mnt" -cf - kept | tar -C "$mnt" -xf -
  sync
  umount "$src_mnt"; rmdir "$src_mnt"; src_mnt=""
  losetup -d "$src_loop"; src_loop=""
  write_and_delete "$mnt"
  umount "$mnt"; rmdir "$mnt"; mnt=""
  e2fsck -fn "$build_loop" >/dev/null || die "e2fsck found errors in the new 1 TiB image"
  losetup -d "$build_loop"; build_loop=""
  mv "$tib_image.tmp" "$tib_image"
  printf '%s\n' "$tib_recipe" > "$tib_recipe_file"
  log "1 TiB source image built in $(elapsed "$t") s ($(du -h "$tib_image" | cut -f 1) allocated)"
}

if [[ $rebuild -eq 1 || ! -f $image || ! -f $recipe_file || "$(cat "$recipe_file")" != "$recipe" ]]; then
  build_image
else
  log "reusing cached source image $image"
fi
if [[ $tib -eq 1 ]]; then
  if [[ $rebuild -eq 1 || ! -f $tib_image || ! -f $tib_recipe_file ||
        "$(cat "$tib_recipe_file")" != "$tib_recipe" ]]; then
    build_tib_image
  else
    log "reusing cached 1 TiB source image $tib_image"
  fi
fi

[[ $image_only -eq 1 ]] && { log "source image(s) kept in $bench_dir"; exit 0; }

# --- Attach and warm ----------------------------------------------------------------------
bench_loop=$(losetup -f --show -r "$image")
dev=$bench_loop
dev_size=$(blockdev --getsize64 "$dev")
read -r block_size block_count free_blocks < <(dumpe2fs -h "$dev" 2>/dev/null | awk -F: '
  /^Block size/ { bs = $2 } /^Block count/ { bc = $2 } /^Free blocks/ { fb = $2 }
  END { print bs + 0, bc + 0, fb + 0 }')
used=$(( (block_count - free_blocks) * block_size ))
log "warming the page cache (reading $image and $dev once)"
cat "$image" > /dev/null
cat "$dev" > /dev/null

# busy_pct: how busy the CPUs are (all processes, %) over the next 2 seconds.
busy_pct() {
  local a b
  a=$(head -n 1 /proc/stat); sleep 2; b=$(head -n 1 /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {
    n = split(a, x, " "); split(b, y, " "); tot = 0
    for (i = 2; i <= n; i++) tot += y[i] - x[i]
    idle = (y[5] - x[5]) + (y[6] - x[6])
    printf "%d", (tot > 0 ? 100 * (tot - idle) / tot : 0) }'
}
busy_start=$(busy_pct)

# --- Measuring ----------------------------------------------------------------------------
rows=()   # label, wall, cpu, rss_kib, size; tab-separated (labels contain '|')
notes=()  # per-component RSS lines

# T NAME: the GNU time prefix that records one component's peak RSS (KiB) in scratch.
T() { printf '/usr/bin/time -f %%M -o %q ' "$scratch/rss.$1"; }

# measure LABEL KEY OUTPUT CMD: runs CMD (a bash -c string) once under GNU time and adds
# a row. A failing CMD is fatal, except that with optional=1 a usage error (exit 2, an
# option this hotsnap does not know) returns 1 instead.
optional=0
measure() {
  local label=$1 key=$2 out=$3 cmd=$4 tf="$scratch/time.$2" f rss_sum=0 comp detail="" rc=0
  rm -f "$out" "$scratch"/rss."$key".*
  sync  # earlier outputs' writeback must not land inside this measurement
  log "running: $label"
  /usr/bin/time -f '%e %U %S %M' -o "$tf" bash -c "set -o pipefail; $cmd" \
    2> "$scratch/stderr.$key" || rc=$?
  if [[ $rc -eq 2 && $optional -eq 1 ]]; then
    log "$label: usage error, skipping the row: $(head -n 1 "$scratch/stderr.$key")"
    return 1
  elif [[ $rc -ne 0 ]]; then
    cat "$scratch/stderr.$key" >&2
    die "$label failed (exit $rc)"
  fi
  read -r wall user sys _ < <(tail -n 1 "$tf")
  for f in "$scratch"/rss."$key".*; do
    comp=${f##*.}
    rss=$(tail -n 1 "$f")
    rss_sum=$((rss_sum + rss))
    detail+=" $comp $((rss / 1024)) MiB,"
  done
  notes+=("$(printf '%-22s%s' "$label:" "${detail%,}")")
  size=$(stat -c %s "$out")
  rows+=("$(printf '%s\t%s\t%s\t%s\t%s' "$label" "$wall" \
    "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')" "$rss_sum" "$size")")
  rm -f "$out"
}

q() { printf '%q' "$1"; }
out_hotsnap="$scratch/hotsnap.zst" out_dd="$scratch/dd.zst" out_pc="$scratch/partclone.zst"

measure "hotsnap backup" hotsnap "$out_hotsnap" \
  "$(T hotsnap.hotsnap)$(q "$hotsnap") backup $(q "$dev") -o $(q "$out_hotsnap") --level $level"

if [[ $all_blocks -eq 1 ]]; then
  optional=1
  measure "hotsnap --all-blocks" hotsnap_all "$out_hotsnap" \
    "$(T hotsnap_all.hotsnap)$(q "$hotsnap") backup $(q "$dev") -o $(q "$out_hotsnap") --level $level --all-blocks" \
    || true
  optional=0
fi

measure "dd | zstd" dd "$out_dd" \
  "$(T dd.dd)dd if=$(q "$dev") bs=4M iflag=direct status=none | $(T dd.zstd)zstd -q -T0 -$level > $(q "$out_dd")"

# partclone: -c clone to its image format, -s source, -o - stdout; default CRC32 checksums
# (-a1), as a user would run it. Progress goes to stderr (kept in scratch).
measure "partclone | zstd" partclone "$out_pc" \
  "$(T partclone.partclone)partclone.ext4 -c -s $(q "$dev") -o - | $(T partclone.zstd)zstd -q -T0 -$level > $(q "$out_pc")"

# Reference: zstd alone over the used blocks, already in memory. partclone -a0 (no
# checksums) writes the used blocks plus a small header and bitmap (~128 KiB) to tmpfs.
shm_free=$(df -B1 --output=avail /dev/shm 2>/dev/null | tail -n 1 | tr -d ' ' || echo 0)
if [[ ${shm_free:-0} -gt $((used + 512 * 1024 * 1024)) ]]; then
  shm_raw=$(mktemp /dev/shm/hotsnap-bench-used.XXXXXX)
  log "capturing the used blocks to tmpfs for the reference row"
  partclone.ext4 -c -a0 -s "$dev" -o - > "$shm_raw" 2> "$scratch/stderr.partclone-raw" \
    || { cat "$scratch/stderr.partclone-raw" >&2; die "partclone -a0 capture failed"; }
  raw_size=$(stat -c %s "$shm_raw")
  measure "zstd, used bytes in RAM" ref "$scratch/ref.zst" \
    "$(T ref.zstd)zstd -q -T0 -$level < $(q "$shm_raw") > $(q "$scratch/ref.zst")"
  rm -f "$shm_raw"; shm_raw=""
else
  log "not enough room in /dev/shm for the reference row; skipping it"
  raw_size=""
fi

# With --all-blocks, a second reference: zstd alone over every byte of the device, already
# in memory: what one zstd process needs for every byte at this level. hotsnap --all-blocks
# compares with it in the ratio rows (it can beat it: zero chunks are never compressed).
if [[ $all_blocks -eq 1 ]]; then
  shm_free=$(df -B1 --output=avail /dev/shm 2>/dev/null | tail -n 1 | tr -d ' ' || echo 0)
  if [[ ${shm_free:-0} -gt $((dev_size + 512 * 1024 * 1024)) ]]; then
    shm_raw=$(mktemp /dev/shm/hotsnap-bench-all.XXXXXX)
    log "copying the whole device to tmpfs for the all-bytes reference row"
    dd if="$dev" of="$shm_raw" bs=4M status=none
    measure "zstd, all bytes in RAM" ref_all "$scratch/ref-all.zst" \
      "$(T ref_all.zstd)zstd -q -T0 -$level < $(q "$shm_raw") > $(q "$scratch/ref-all.zst")"
    rm -f "$shm_raw"; shm_raw=""
  else
    log "not enough room in /dev/shm for the all-bytes reference row; skipping it"
  fi
fi

# The 1 TiB device: hotsnap only (dd or partclone of 1 TiB would take minutes and prove
# nothing new). Warmed by one untimed hotsnap run, which reads exactly what the timed run
# reads: the whole device cannot be warmed with cat as the 4 GiB one is.
if [[ $tib -eq 1 ]]; then
  tib_loop=$(losetup -f --show -r "$tib_image")
  tib_size=$(blockdev --getsize64 "$tib_loop")
  read -r tbs tbc tfb < <(dumpe2fs -h "$tib_loop" 2>/dev/null | awk -F: '
    /^Block size/ { bs = $2 } /^Block count/ { bc = $2 } /^Free blocks/ { fb = $2 }
    END { print bs + 0, bc + 0, fb + 0 }')
  tib_used=$(( (tbc - tfb) * tbs ))
  log "warming the page cache for the 1 TiB device (one untimed hotsnap run)"
  "$hotsnap" backup "$tib_loop" -o "$scratch/warm.zst" --level "$level" 2> "$scratch/stderr.warm" \
    || { cat "$scratch/stderr.warm" >&2; die "hotsnap on the 1 TiB device failed"; }
  rm -f "$scratch/warm.zst"
  measure "hotsnap, 1 TiB device" tib "$scratch/tib.zst" \
    "$(T tib.hotsnap)$(q "$hotsnap") backup $(q "$tib_loop") -o $(q "$scratch/tib.zst") --level $level"
fi

# --- Report -------------------------------------------------------------------------------
field() {  # field LABEL N: the Nth field (1-based) of the row with LABEL
  local r
  for r in "${rows[@]}"; do
    [[ ${r%%$'\t'*} == "$1" ]] && { cut -f "$2" <<<"$r"; return; }
  done
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

printf '\nhotsnap backup benchmark  (%s)\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf '  machine   %s, %s cores, %s RAM\n' "$(uname -r)" "$(nproc)" \
  "$(human "$(awk '/MemTotal/ { print $2 * 1024 }' /proc/meminfo)")"
printf '  hotsnap   %s (%s)\n' "$hotsnap" \
  "$(git -C "$HOTSNAP_ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
printf '  tools     zstd %s, partclone %s, dd (coreutils) %s\n' \
  "$(zstd -V | grep -o 'v[0-9.]*' | head -n 1)" \
  "$(partclone.ext4 -v 2>&1 | grep -o 'v[0-9.]*' | head -n 1)" \
  "$(dd --version | head -n 1 | awk '{ print $NF }')"
printf '  source    %s, %s ext4 (%s used), page cache warm, unmounted\n' \
  "$dev" "$(human "$dev_size")" "$(human "$used")"
[[ -n $raw_size ]] && printf '  used      partclone -a0 raw stream: %s\n' "$(human "$raw_size")"
# hotsnap's own used bytes for the 1 TiB device, from its summary line "(..., ext4, X used)".
[[ $tib -eq 1 ]] && printf '  1 TiB     %s, %s ext4 (%s used by dumpe2fs, %s by hotsnap), same files, %s allocated\n' \
  "$tib_loop" "$(human "$tib_size")" "$(human "$tib_used")" \
  "$(grep -o 'ext4, [0-9.]* [KMGT]*i*B used' "$scratch/stderr.tib" | head -n 1 | sed 's/^ext4, //; s/ used$//')" \
  "$(du -h "$tib_image" | cut -f 1)"
printf '  level     zstd -%s for all; hotsnap and zstd use all cores\n' "$level"
printf '  busy      CPUs %s%% busy with other work just before, %s%% just after\n' \
  "$busy_start" "$(busy_pct)"
if [[ ${busy_start:-0} -gt 10 ]]; then
  printf '  WARNING   the machine was busy: wall times are inflated; compare cpu instead\n'
fi
printf '\n'

printf '%-24s %8s %8s %10s %16s\n' "command" "wall s" "cpu s" "rss MiB" "output"
printf '%-24s %8s %8s %10s %16s\n' "------------------------" "------" "-----" "-------" "------"
for r in "${rows[@]}"; do
  IFS=$'\t' read -r label wall cpu rss size <<<"$r"
  printf '%-24s %8s %8s %10d %16s\n' "$label" "$wall" "$cpu" $((rss / 1024)) \
    "$(printf '%.2f GB' "$(awk -v s="$size" 'BEGIN { print s / 1e9 }')")"
done

printf '\n%-24s %8s %8s %8s\n' "ratio" "wall" "cpu" "size"
printf '%-24s %8s %8s %8s\n' "------------------------" "----" "---" "----"
# ratio_row NAME A B: A's wall, cpu and size over B's (rows that were not run are skipped).
ratio_row() {
  [[ -n $(field "$2" 2) && -n $(field "$3" 2) ]] || return 0
  printf '%-24s %8s %8s %8s\n' "$1" \
    "$(ratio "$(field "$2" 2)" "$(field "$3" 2)")" \
    "$(ratio "$(field "$2" 3)" "$(field "$3" 3)")" \
    "$(ratio "$(field "$2" 5)" "$(field "$3" 5)")"
}
for other in "dd | zstd" "partclone | zstd"; do
  ratio_row "hotsnap / ${other%% *}" "hotsnap backup" "$other"
done
ratio_row "hotsnap / zstd used" "hotsnap backup" "zstd, used bytes in RAM"
ratio_row "--all-blocks / dd" "hotsnap --all-blocks" "dd | zstd"
ratio_row "--all-blocks / partclone" "hotsnap --all-blocks" "partclone | zstd"
ratio_row "--all-blocks / zstd all" "hotsnap --all-blocks" "zstd, all bytes in RAM"
ratio_row "zstd all / partclone" "zstd, all bytes in RAM" "partclone | zstd"
ratio_row "1 TiB / 4 GiB hotsnap" "hotsnap, 1 TiB device" "hotsnap backup"

# The issues' targets beside the measured value (a benchmark does not fail; this says which
# were met in this run).
target() {  # target NAME VALUE LIMIT
  [[ -n $2 && $2 != "-" ]] || return 0
  printf '  %-34s %8s  <= %-6s %s\n' "$1" "$2" "$3" \
    "$(awk -v v="$2" -v l="$3" 'BEGIN { print (v <= l ? "met" : "MISSED") }')"
}
printf '\ntargets (issue 3 used blocks; --all-blocks: foundation issue)\n'
target "hotsnap / dd | zstd, wall" "$(ratio "$(field "hotsnap backup" 2)" "$(field "dd | zstd" 2)")" 0.40
target "hotsnap / partclone | zstd, wall" \
  "$(ratio "$(field "hotsnap backup" 2)" "$(field "partclone | zstd" 2)")" 0.35
target "hotsnap / zstd used bytes, wall" \
  "$(ratio "$(field "hotsnap backup" 2)" "$(field "zstd, used bytes in RAM" 2)")" 1.20
target "hotsnap / partclone | zstd, size" \
  "$(ratio "$(field "hotsnap backup" 5)" "$(field "partclone | zstd" 5)")" 1.05
if [[ -n $(field "hotsnap --all-blocks" 2) ]]; then
  target "--all-blocks / dd | zstd, wall" \
    "$(ratio "$(field "hotsnap --all-blocks" 2)" "$(field "dd | zstd" 2)")" 0.65
  target "--all-blocks / partclone | zstd, wall" \
    "$(ratio "$(field "hotsnap --all-blocks" 2)" "$(field "partclone | zstd" 2)")" 0.40
fi
if [[ -n $(field "hotsnap, 1 TiB device" 2) ]]; then
  target "1 TiB / 4 GiB hotsnap, wall" \
    "$(ratio "$(field "hotsnap, 1 TiB device" 2)" "$(field "hotsnap backup" 2)")" 1.50
  target "1 TiB hotsnap peak RSS, MiB" "$(( $(field "hotsnap, 1 TiB device" 4) / 1024 ))" 256
fi

printf '\npeak RSS per component (rss above is their sum):\n'
printf '  %s\n' "${notes[@]}"
printf '\nsizes in bytes:'
for r in "${rows[@]}"; do printf ' %s: %s;' "${r%%$'\t'*}" "$(cut -f 5 <<<"$r")"; done
printf '\n'
[[ $keep -eq 1 ]] && log "kept the source image(s) in $bench_dir (reused by the next run)"
exit 0
