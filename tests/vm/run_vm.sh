#!/usr/bin/env bash
# Runs the LVM scenarios in a VM: Debian's kernel under QEMU with software emulation (TCG;
# KVM hangs on these machines), an initramfs built from this machine's binaries, a sparse
# virtio disk for the volume group, and a 9p shared folder for the results.
#
#   run_vm.sh --build-dir DIR [--work-dir DIR] [--timeout SECONDS] [--scenario-dir DIR]
#             [--drive FILE] [--disk-size SIZE] [--share-file FILE] [SCENARIO...]
#
# SCENARIO is a file name from tests/vm/scenarios (or --scenario-dir) without .sh; default:
# all of tests/vm/scenarios. --scenario-dir adds a folder of scenarios (benchmarks keep theirs
# in bench/vm), --drive attaches FILE read-only as the second virtio disk (/dev/vdb),
# --disk-size sizes the volume group's sparse disk (default 1G), --share-file copies FILE into
# the shared folder (the guest's /host) before the boot.
# Exit 0 when every scenario passed; 1 when one failed or the VM did not finish; 77 (skip)
# when QEMU or the kernel is missing and CI is not set (under CI=true that is a failure).
# Environment: HOTSNAP_VM_KERNEL (a version in /lib/modules), HOTSNAP_VM_CPUS (default 1),
# HOTSNAP_VM_MEMORY (MiB, default 1024).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build_dir=
work_dir=
timeout_s=480
scenarios=()
scenario_dir=
drive=
disk_size=1G
share_files=()
while (($#)); do
  case $1 in
    --build-dir) build_dir=$2; shift 2 ;;
    --work-dir) work_dir=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --scenario-dir) scenario_dir=$(cd "$2" && pwd); shift 2 ;;
    --drive) drive=$(realpath "$2"); shift 2 ;;
    --disk-size) disk_size=$2; shift 2 ;;
    --share-file) share_files+=("$(realpath "$2")"); shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "run_vm.sh: unknown option $1" >&2; exit 2 ;;
    *) scenarios+=("$1"); shift ;;
  esac
done
[[ -n $build_dir ]] || { echo "run_vm.sh: --build-dir is required" >&2; exit 2; }
build_dir=$(cd "$build_dir" && pwd)
work_dir=${work_dir:-$build_dir/tests/vm/work}
if ((${#scenarios[@]} == 0)); then
  for f in "$here"/scenarios/*.sh; do scenarios+=("$(basename "$f" .sh)"); done
fi

# Missing prerequisites: skip outside CI, fail under CI.
unavailable() {
  echo "run_vm.sh: $*" >&2
  if [[ ${CI:-} == true ]]; then
    echo "run_vm.sh: CI=true, so this is a failure, not a skip (scripts/packages.txt lists the packages)" >&2
    exit 1
  fi
  echo "run_vm.sh: skipping the VM tests" >&2
  exit 77
}

# The kernel: the version linux-image-amd64 depends on, else the newest with modules.
pick_kernel() {
  if [[ -n ${HOTSNAP_VM_KERNEL:-} ]]; then echo "$HOTSNAP_VM_KERNEL"; return; fi
  local dep
  dep=$(dpkg-query -W -f='${Depends}' linux-image-amd64 2>/dev/null | grep -o 'linux-image-[0-9][^ ,]*' | head -1 || true)
  if [[ -n $dep && -f /boot/vmlinuz-${dep#linux-image-} ]]; then echo "${dep#linux-image-}"; return; fi
  local v
  for v in $(ls /lib/modules 2>/dev/null | sort -rV); do
    if [[ -f /boot/vmlinuz-$v && -f /lib/modules/$v/modules.dep ]]; then echo "$v"; return; fi
  done
}

command -v qemu-system-x86_64 >/dev/null || unavailable "qemu-system-x86_64 not found (package qemu-system-x86)"
kver=$(pick_kernel)
[[ -n $kver ]] || unavailable "no kernel with modules in /boot and /lib/modules (package linux-image-amd64)"
for tool in busybox lvm pdata_tools mke2fs e2fsck sfdisk zstd cpio rpc.nfsd rpc.mountd exportfs mount.nfs; do
  command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null ||
    unavailable "$tool not found (see scripts/packages.txt)"
done
[[ -x $build_dir/hotsnap ]] || { echo "run_vm.sh: no $build_dir/hotsnap; build first" >&2; exit 1; }
# thin_probe (tests/vm/CMakeLists.txt) runs the thin-pool functions hotsnap has no command for;
# the thin_delta_* scenarios need it.
probe=
[[ -x $build_dir/tests/vm/thin_probe ]] && probe=$build_dir/tests/vm/thin_probe
if [[ -z $probe && " ${scenarios[*]} " == *" thin_delta_"* ]]; then
  echo "run_vm.sh: no $build_dir/tests/vm/thin_probe (the thin_delta_* scenarios need it); build first" >&2
  exit 1
fi

# boot_vm DIR SCENARIO...: one VM in DIR (fresh) running the scenarios; prints their logs and
# the summary. Status 0 when all passed, 1 when one failed, 2 when the VM did not finish
# (timeout or crash) without any scenario failing.
boot_vm() {
  local dir=$1
  shift
  local list=("$@")
  rm -rf "$dir"
  mkdir -p "$dir/share"
  ((${#share_files[@]} == 0)) || cp "${share_files[@]}" "$dir/share/"
  HOTSNAP_VM_EXTRA_SCENARIOS=$scenario_dir \
    "$here/build_initramfs.sh" "$kver" "$build_dir/hotsnap" "$dir/initramfs.cpio" ${probe:+"$probe"}
  truncate -s "$disk_size" "$dir/disk.img"
  {
    echo "SCENARIOS='${list[*]}'"
    echo "SCENARIO_TIMEOUT=$((timeout_s - 30))"
  } > "$dir/share/run.conf"

  # no_timer_check: on a loaded host, TCG's timer can look broken to the kernel's IO-APIC
  # check, which then panics at boot ("IO-APIC + timer doesn't work"), seen under load.
  local started qemu_rc
  started=$(date +%s)
  set +e
  timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 -accel tcg \
    ${HOTSNAP_VM_CPU_MODEL:+-cpu "$HOTSNAP_VM_CPU_MODEL"} -smp "${HOTSNAP_VM_CPUS:-1}" -m "${HOTSNAP_VM_MEMORY:-1024}" \
    -nographic -no-reboot -monitor none \
    -kernel "/boot/vmlinuz-$kver" -initrd "$dir/initramfs.cpio" \
    -append "console=ttyS0 quiet panic=-1 no_timer_check rdinit=/init" \
    -drive "file=$dir/disk.img,if=virtio,format=raw,cache=unsafe" \
    ${drive:+-drive "file=$drive,if=virtio,format=raw,readonly=on"} \
    -virtfs "local,path=$dir/share,mount_tag=host0,security_model=none,id=host0" \
    < /dev/null > "$dir/console.log" 2>&1
  qemu_rc=$?
  set -e
  echo "run_vm.sh: VM ran $(( $(date +%s) - started )) s (qemu exit $qemu_rc); console: $dir/console.log"

  local results=$dir/share/results s finished=1 passed=0 failed=0
  for s in "${list[@]}"; do
    if [[ -f $results/$s.log ]]; then
      echo "===== $s"
      cat "$results/$s.log"
    fi
  done
  echo "===== summary"
  if [[ -f $results/summary ]]; then cat "$results/summary"; fi
  if ! grep -qx done "$results/summary" 2>/dev/null; then
    echo "run_vm.sh: the VM did not finish (timeout ${timeout_s}s or crash); last console lines:"
    tail -n 40 "$dir/console.log"
    [[ -f $results/boot ]] && cat "$results/boot"
    finished=0
  fi
  unfinished=()
  for s in "${list[@]}"; do
    if grep -q "^PASS $s " "$results/summary" 2>/dev/null; then
      passed=$((passed + 1))
    else
      grep -q "^FAIL $s " "$results/summary" 2>/dev/null || unfinished+=("$s")
      failed=$((failed + 1))
    fi
  done
  echo "$passed passed, $failed failed"
  if ((failed == 0 && finished == 1)); then return 0; fi
  if ((finished == 0 && failed == ${#unfinished[@]})); then return 2; fi
  return 1
}

echo "run_vm.sh: kernel $kver; scenarios: ${scenarios[*]}"
status=0
boot_vm "$work_dir" "${scenarios[@]}" || status=$?
# A VM that stops making progress with no scenario failed (guest tasks blocked for minutes
# under software emulation on a loaded host, seen once in dm-thin setup) gets one more boot
# for the scenarios it did not finish. A scenario that failed is never retried.
if ((status == 2)); then
  echo "run_vm.sh: the VM hung; booting once more for: ${unfinished[*]}"
  status=0
  boot_vm "$work_dir/retry" "${unfinished[@]}" || status=$?
fi
((status == 0))
