#!/usr/bin/env bash
# Benchmark: hotsnap backup over ssh to 127.0.0.1 against `dd | zstd | ssh 'cat > x'` on the
# cached 4 GiB ext4 image of bench/bench_backup.sh, and the --rate-limit check (50 MB/s by
# default: it should read at 50 MB/s ± 10 %). A benchmark, not a test: it prints, it does not judge.
#
#   bench/bench_ssh.sh [--rate MB/s] [--no-rate]
#
# The source image must exist: run `bench/bench_backup.sh --keep` once to build it.
# A private sshd is started on a free port of 127.0.0.1 with keys generated for this run (as in
# tests/ssh_remote_test.cc); the system's ssh service is neither needed nor touched.
#
# Environment: BENCH_DIR (default /var/tmp/hotsnap-bench), HOTSNAP_BIN (default: build with
# scripts/setup.sh and use build/hotsnap), LEVEL (zstd level, default 3).
set -euo pipefail

# shellcheck source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
trap_err_verbose
require_root

rate=50 do_rate=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --rate) rate=$2; shift ;;
    --no-rate) do_rate=0 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  shift
done

bench_dir="${BENCH_DIR:-/var/tmp/hotsnap-bench}"
level="${LEVEL:-3}"
image="$bench_dir/ext4-4g.img"
[[ -f $image ]] || die "no source image $image: run bench/bench_backup.sh --keep first"

loop="" scratch="" sshd_pid=""
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM ERR
  set +e
  if [[ -n $sshd_pid ]]; then
    pkill -KILL -P "$sshd_pid" 2>/dev/null  # its sessions, by parent id
    kill "$sshd_pid" 2>/dev/null
    wait "$sshd_pid" 2>/dev/null
  fi
  [[ -n $loop ]] && losetup -d "$loop"
  [[ -n $scratch ]] && rm -rf "$scratch"
  [[ $rc -ne 0 ]] && log "FAILED (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

hotsnap=""  # set by resolve_hotsnap_binary (scripts/lib.sh)
resolve_hotsnap_binary
scratch=$(mktemp -d "$bench_dir/ssh.XXXXXX")

# --- A private sshd on 127.0.0.1 -------------------------------------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N '' -f "$scratch/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$scratch/id"
cp "$scratch/id.pub" "$scratch/authorized_keys"
mkdir -p /run/sshd && chmod 0755 /run/sshd
cat > "$scratch/sshd_config" <<CONF
Port $port
ListenAddress 127.0.0.1
HostKey $scratch/host_key
PidFile $scratch/sshd.pid
AuthorizedKeysFile $scratch/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
LogLevel ERROR
CONF
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$scratch/host_key.pub")" > "$scratch/known_hosts"
/usr/sbin/sshd -D -e -f "$scratch/sshd_config" 2> "$scratch/sshd.log" &
sshd_pid=$!
ssh_opts=(-o BatchMode=yes -o "UserKnownHostsFile=$scratch/known_hosts" -o GlobalKnownHostsFile=/dev/null
          -o "IdentityFile=$scratch/id" -o IdentitiesOnly=yes -p "$port")
for _ in $(seq 100); do
  ssh "${ssh_opts[@]}" root@127.0.0.1 true 2>/dev/null && break
  sleep 0.2
done
ssh "${ssh_opts[@]}" root@127.0.0.1 true || die "the private sshd did not come up: $(cat "$scratch/sshd.log")"
hotsnap_ssh=(--ssh-option "UserKnownHostsFile=$scratch/known_hosts" --ssh-option GlobalKnownHostsFile=/dev/null
             --ssh-option "IdentityFile=$scratch/id" --ssh-option IdentitiesOnly=yes)
mkdir "$scratch/remote"

# --- Source --------------------------------------------------------------------------------
loop=$(losetup -f --show -r "$image")
log "warming the page cache ($image)"
cat "$image" > /dev/null
cat "$loop" > /dev/null

timed() {  # timed OUT_VAR CMD...: wall seconds of CMD into OUT_VAR
  local var=$1 t0
  shift
  t0=$(now)
  "$@"
  printf -v "$var" '%s' "$(elapsed "$t0")"
}

t_hotsnap="" t_dd=""  # set by timed
url="ssh://root@127.0.0.1:$port$scratch/remote/hotsnap.zst"
log "running: hotsnap backup -> $url"
timed t_hotsnap "$hotsnap" backup "$loop" -o "$url" --level "$level" --quiet "${hotsnap_ssh[@]}"
s_hotsnap=$(stat -c %s "$scratch/remote/hotsnap.zst")
"$hotsnap" verify "$scratch/remote/hotsnap.zst" > /dev/null || die "the image that arrived does not verify"
rm -f "$scratch/remote/hotsnap.zst"

log "running: dd | zstd -T0 -$level | ssh 'cat > x'"
# shellcheck disable=SC2317,SC2029  # run through timed; the path is meant to expand here
dd_pipe() {
  dd if="$loop" bs=4M iflag=direct status=none | zstd -q -T0 "-$level" |
    ssh "${ssh_opts[@]}" root@127.0.0.1 "cat > '$scratch/remote/dd.zst'"
}
timed t_dd dd_pipe
s_dd=$(stat -c %s "$scratch/remote/dd.zst")
rm -f "$scratch/remote/dd.zst"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
printf '\nhotsnap over ssh benchmark  (%s)\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf '  machine   %s, %s cores; ssh %s to 127.0.0.1 (private sshd)\n' "$(uname -r)" "$(nproc)" \
  "$(ssh -V 2>&1 | cut -d, -f1)"
printf '  source    %s (%s), page cache warm; zstd -%s\n\n' "$image" "$(human "$(blockdev --getsize64 "$loop")")" "$level"
printf '%-40s %8s %14s\n' "command" "wall s" "bytes sent"
printf '%-40s %8s %14s\n' "hotsnap backup -o ssh://" "$t_hotsnap" "$s_hotsnap"
printf '%-40s %8s %14s\n' "dd | zstd -T0 | ssh 'cat > x'" "$t_dd" "$s_dd"
printf '\nratio hotsnap / dd|zstd|ssh: wall %s, size %s\n' "$(ratio "$t_hotsnap" "$t_dd")" "$(ratio "$s_hotsnap" "$s_dd")"

# --- --rate-limit --------------------------------------------------------------------------
if [[ $do_rate -eq 1 ]]; then
  log "running: hotsnap backup --rate-limit $rate (to a local file)"
  "$hotsnap" backup "$loop" -o "$scratch/rate.zst" --level "$level" --rate-limit "$rate" --quiet \
    --events-fd 3 3> "$scratch/rate.jsonl"
  read -r bytes_read seconds read_rate < <(python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
print(r["bytes_read"], r["phase_seconds"].get("read", r["seconds"]), r["read_rate_bytes_per_s"])' "$scratch/rate.jsonl")
  read_phase_rate=$(awk -v b="$bytes_read" -v s="$seconds" 'BEGIN { printf "%.1f", b / s / 1e6 }')
  whole_rate=$(awk -v r="$read_rate" 'BEGIN { printf "%.1f", r / 1e6 }')
  printf '\n--rate-limit %s: %s MB read; read phase %.1f s -> %s MB/s (%+.1f %%); whole run %s MB/s\n' \
    "$rate" "$(awk -v b="$bytes_read" 'BEGIN { printf "%.0f", b / 1e6 }')" "$seconds" "$read_phase_rate" \
    "$(awk -v m="$read_phase_rate" -v r="$rate" 'BEGIN { print (m - r) / r * 100 }')" "$whole_rate"
fi
exit 0
