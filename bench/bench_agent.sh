#!/usr/bin/env bash
# Benchmark: the nightly job, as the agent runs it (issue 16). On a copy of the reference disk,
# attached to a loop device and mounted (ext4), a real `hotsnap agent run` with one job (that
# device, snapshot "freeze", a repository in the scratch directory, schedule "yearly": it runs
# only when triggered) is asked to run twice with `hotsnap job run`:
#   run 1  full: the first image of the repository
#   change CHANGE_PERCENT of the used bytes rewritten through the mount (bench_delta.sh's
#          pattern: 256 KiB pieces spread over the kept files, AES-CTR bytes), then sync
#   run 2  delta: the agent's change log (the writes its tracker recorded since run 1)
#          names the chunks to read
# and, for reference, on the same changed disk: `hotsnap backup --base RUN1 --snapshot freeze`
# (a delta without a change log: every used block read and hashed) and `dd | zstd`.
# A benchmark, not a test: it prints the ratio beside the target and never fails on it.
#
#   bench/bench_agent.sh [--keep]
#
#   --keep   keep the cached reference disk for the next run (default: leave it as found)
#
# Environment: BENCH_DIR (default /var/tmp/hotsnap-bench), HOTSNAP_BIN, LEVEL (zstd level,
# default 3), CHANGE_PERCENT (default 1), DISK: 4g (default: bench_backup.sh's 4 GiB ext4,
# ~1.6 GB used, built with bench_backup.sh --image-only if not cached) or 1g (for a quicker
# run: bench/reference_disk.sh's 1 GiB ext4, nearly full).
#
# Times: each agent run is timed twice: the agent's own report (the status JSON's
# "seconds" of the image, and the metrics textfile's hotsnap_job_last_duration_seconds) and
# this script's wall clock from `job run` to the status showing the run finished (polled:
# the job's last result changes). The page cache is warm before every measured command.
# Target (issue 16): delta (change log) wall <= 0.05 x full wall.
set -euo pipefail

# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
trap_err_verbose
require_root

keep=0
for arg in "$@"; do
  case $arg in
    --keep) keep=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown option: $arg (see --help)" ;;
  esac
done
command -v jq >/dev/null || die "jq is needed to read the agent's status"

bench_dir="${BENCH_DIR:-/var/tmp/hotsnap-bench}"
level="${LEVEL:-3}"
change_percent="${CHANGE_PERCENT:-1}"
disk="${DISK:-4g}"
mkdir -p "$bench_dir"

loop="" mnt="" build_loop="" scratch="" agent_pid="" built_here=0 image=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM ERR
  set +e
  if [[ -n $agent_pid ]] && kill -0 "$agent_pid" 2>/dev/null; then
    kill -TERM "$agent_pid"; wait "$agent_pid"
  fi
  if [[ -n $mnt ]] && mountpoint -q "$mnt"; then umount "$mnt" || umount -l "$mnt"; fi
  [[ -n $mnt ]] && rmdir "$mnt" 2>/dev/null
  [[ -n $build_loop ]] && losetup -d "$build_loop"
  [[ -n $loop ]] && losetup -d "$loop"
  [[ -n $scratch ]] && rm -rf "$scratch"
  if [[ $built_here -eq 1 && $keep -eq 0 && -n $image ]]; then rm -f "$image" "${image%.img}.recipe"; fi
  [[ $rc -ne 0 ]] && log "FAILED (exit $rc); agent stopped, loop devices and scratch files removed"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

hotsnap=""
resolve_hotsnap_binary

# --- The reference disk (cached) ------------------------------------------------------------
case $disk in
  4g)
    image="$bench_dir/ext4-4g.img"
    if [[ ! -f $image ]]; then
      log "the reference disk is not cached: building it with bench_backup.sh --image-only"
      BENCH_DIR="$bench_dir" "$HOTSNAP_ROOT/bench/bench_backup.sh" --image-only
      built_here=1
    fi ;;
  1g)
    # shellcheck source=reference_disk.sh
    source "$HOTSNAP_ROOT/bench/reference_disk.sh"
    # shellcheck disable=SC2154  # source_img: set by reference_disk.sh
    [[ -f $source_img ]] || built_here=1
    ensure_reference_disk
    image=$source_img ;;
  *) die "DISK must be 4g or 1g, not '$disk'" ;;
esac

scratch=$(mktemp -d "$bench_dir/agent.XXXXXX")
work="$scratch/work.img"
log "copying the reference disk ($image)"
cp --sparse=always "$image" "$work"
loop=$(losetup -f --show "$work")
dev=$loop
read -r block_size block_count free_blocks < <(dumpe2fs -h "$dev" 2>/dev/null | awk -F: '
  /^Block size/ { bs = $2 } /^Block count/ { bc = $2 } /^Free blocks/ { fb = $2 }
  END { print bs + 0, bc + 0, fb + 0 }')
used=$(( (block_count - free_blocks) * block_size ))
dev_size=$(blockdev --getsize64 "$dev")
mnt=$(mktemp -d "$scratch/mnt.XXXXXX")
mount "$dev" "$mnt"

warm() { log "warming the page cache"; cat "$work" > /dev/null; cat "$dev" > /dev/null; }

# --- The agent ----------------------------------------------------------------------------
job=nightly
sock="$scratch/agent.sock" prom="$scratch/hotsnap.prom" repo="$scratch/repo"
cfg="$scratch/hotsnap.toml"
cat > "$cfg" <<EOF
[agent]
state_dir = "$scratch/state"
socket = "$sock"
metrics_textfile = "$prom"

[[job]]
name = "$job"
sources = ["$dev"]
repository = "$repo"
schedule = "yearly"
persistent = false
snapshot = "freeze"
level = $level
EOF
"$hotsnap" agent check-config --config "$cfg" >/dev/null
log "starting the agent (log: $scratch/agent.log)"
"$hotsnap" agent run --config "$cfg" > "$scratch/agent.log" 2>&1 &
agent_pid=$!

# status: the agent's status JSON, or nothing while it does not answer.
status() { "$hotsnap" agent status --json --socket "$sock" 2>/dev/null || true; }
job_json() { status | jq -c --arg j "$job" '.jobs[]? | select(.name == $j)'; }
# Wait until the agent answers on its socket (it creates it once started).
until [[ -n $(job_json) ]]; do
  kill -0 "$agent_pid" 2>/dev/null || { cat "$scratch/agent.log" >&2; die "the agent exited"; }
  sleep 0.1
done

# run_job LABEL: triggers the job, polls the status until its last result changes; sets
# run_wall (trigger to finished, this script's clock) and run_last (the job's "last" JSON).
run_job() {
  local before t0 j
  before=$(job_json | jq -r '.last.finished_utc_us // 0')
  sync
  log "agent run: $1"
  t0=$(now)
  "$hotsnap" job run "$job" --socket "$sock" >/dev/null
  while :; do
    j=$(job_json)
    [[ -n $j ]] || { cat "$scratch/agent.log" >&2; die "the agent stopped answering"; }
    if [[ $(jq -r '.running' <<< "$j") == false &&
          $(jq -r '.last.finished_utc_us // 0' <<< "$j") != "$before" ]]; then break; fi
    sleep 0.05
  done
  run_wall=$(elapsed "$t0")
  run_last=$(jq -c '.last' <<< "$j")
  [[ $(jq -r '.ok' <<< "$run_last") == true ]] ||
    { cat "$scratch/agent.log" >&2; die "$1 failed: $(jq -r '.message' <<< "$run_last")"; }
}
img() { jq -r ".images[0].$1" <<< "$run_last"; }
metric_duration() {
  awk -v j="$job" '$1 ~ /^hotsnap_job_last_duration_seconds\{/ && index($1, "\"" j "\"") { print $2 }' "$prom"
}

# --- Run 1: full --------------------------------------------------------------------------
warm
run_job "full"
full_wall=$run_wall full_s=$(img seconds) full_read=$(img bytes_read) full_image=$(img image)
full_metric=$(metric_duration)
log "full: $full_image, report ${full_s} s, metrics ${full_metric} s, wall ${full_wall} s, read $full_read bytes"

# --- Change -------------------------------------------------------------------------------
target_bytes=$(( used * change_percent / 100 ))
piece=$((256 * 1024))
log "rewriting $target_bytes bytes ($change_percent % of $used used bytes) in place, through the mount"
mapfile -t files < <(find "$mnt/kept" -type f -size +1M | sort)
[[ ${#files[@]} -gt 0 ]] || die "no kept files to rewrite"
openssl enc -aes-128-ctr -pbkdf2 -nosalt -pass "pass:hotsnap-delta" < /dev/zero 2>/dev/null \
  | head -c "$target_bytes" > "$scratch/new-bytes" || true
written=0 i=0
while [[ $written -lt $target_bytes ]]; do
  f=${files[$(( (i * 7919) % ${#files[@]} ))]}
  size=$(stat -c %s "$f")
  off=$(( ((i * 104729) % (size / piece)) * piece ))
  dd if="$scratch/new-bytes" of="$f" bs=$piece count=1 iflag=skip_bytes skip=$written \
    seek=$((off / piece)) conv=notrunc status=none
  written=$((written + piece)); i=$((i + 1))
done
rm -f "$scratch/new-bytes"
sync

# --- Run 2: delta from the change log -----------------------------------------------------
warm
run_job "delta (change log)"
cl_wall=$run_wall cl_s=$(img seconds) cl_read=$(img bytes_read) cl_source=$(img change_source)
cl_reason=$(img change_reason) cl_base=$(img base) cl_changed=$(img changed_chunks)
cl_chunks=$(img chunks) cl_image_bytes=$(img image_bytes)
cl_metric=$(metric_duration)
log "delta: change source \"$cl_source\" ($cl_reason); base $cl_base"
log "delta: report ${cl_s} s, metrics ${cl_metric} s, wall ${cl_wall} s, read $cl_read bytes"
[[ $cl_source == "change log" ]] || log "WARNING: the delta's change source is \"$cl_source\", not \"change log\""

# --- References on the same changed disk --------------------------------------------------
# measure LABEL CMD: wall seconds of CMD (bash -c) under GNU time, into m_wall.
measure() {
  local tf="$scratch/time" rc=0
  sync
  log "running: $1"
  /usr/bin/time -f '%e' -o "$tf" bash -c "set -o pipefail; $2" 2> "$scratch/stderr" || rc=$?
  if [[ $rc -ne 0 ]]; then cat "$scratch/stderr" >&2; die "$1 failed (exit $rc)"; fi
  m_wall=$(tail -n 1 "$tf")
}
q() { printf '%q' "$1"; }
warm
hc="$scratch/delta-hash.zst"
measure "hotsnap backup --base (hash compare)" \
  "$(q "$hotsnap") backup $(q "$dev") -o $(q "$hc") --base $(q "$full_image") --snapshot freeze --level $level --no-progress --json 2> $(q "$scratch/hc.json")"
hc_wall=$m_wall
hc_read=$(jq -rs '[.[] | .. | objects | select(has("bytes_read")) | .bytes_read] | last // empty' "$scratch/hc.json")
hc_source=$(jq -rs '[.[] | .. | objects | select(has("change_source")) | .change_source] | last // empty' "$scratch/hc.json")
log "hash compare: change source \"$hc_source\", read ${hc_read:-?} bytes"
rm -f "$hc"
warm
measure "dd | zstd" \
  "dd if=$(q "$dev") bs=4M iflag=direct status=none | zstd -q -T0 -$level > $(q "$scratch/dd.zst")"
dd_wall=$m_wall
rm -f "$scratch/dd.zst"

# --- Table --------------------------------------------------------------------------------
read -r load1 load5 load15 _ < /proc/loadavg
f2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
printf '\nhotsnap agent benchmark: %s ext4 (%s), %s used bytes, %s %% rewritten (%s bytes), zstd -%s, %s cores, load average %s %s %s\n' \
  "$(numfmt --to=iec "$dev_size")" "$disk" "$used" "$change_percent" "$written" "$level" "$(nproc)" "$load1" "$load5" "$load15"
printf '%-40s %8s %8s %8s %14s\n' "run" "wall s" "report s" "metric s" "bytes read"
printf '%-40s %8s %8s %8s %14s\n' "agent run 1: full" "$full_wall" "$(f2 "$full_s")" "$(f2 "$full_metric")" "$full_read"
printf '%-40s %8s %8s %8s %14s\n' "agent run 2: delta (change log)" "$cl_wall" "$(f2 "$cl_s")" "$(f2 "$cl_metric")" "$cl_read"
printf '%-40s %8s %8s %8s %14s\n' "backup --base (${hc_source:-hash compare})" "$hc_wall" "-" "-" "${hc_read:-?}"
printf '%-40s %8s %8s %8s %14s\n' "dd | zstd" "$dd_wall" "-" "-" "$dev_size"
printf '\ndelta change source: "%s" (%s)\n' "$cl_source" "$cl_reason"
printf 'delta: %s of %s chunks changed, image %s bytes; bytes read / bytes rewritten: %s\n' \
  "$cl_changed" "$cl_chunks" "$cl_image_bytes" "$(f2 "$(awk -v r="$cl_read" -v w="$written" 'BEGIN { print r / w }')")"
awk -v d="$cl_wall" -v f="$full_wall" -v ds="$cl_s" -v fs="$full_s" -v h="$hc_wall" -v dd="$dd_wall" 'BEGIN {
  printf "delta (change log) / full, wall:        %.3f   (target <= 0.05)\n", d / f
  printf "delta (change log) / full, agent report: %.3f\n", ds / fs
  printf "delta (change log) / delta (hash compare), wall: %.3f\n", d / h
  printf "delta (change log) / dd | zstd, wall:   %.3f\n", d / dd
}'
