# Publishing onto a 9p share (the VM's /host: 9p2000.L over virtio, QEMU's local driver). The
# 9p client refuses renameat2(RENAME_NOREPLACE) with EINVAL; hotsnap must publish with
# link()+unlink() and still never replace a file (check_publish in lib.sh).
. /scenarios/lib.sh

d=/host/publish-9p
rm -rf "$d"
mkdir -p "$d" || fail "mkdir $d"
check_publish "$d" 9p
rm -rf "$d"
echo "OK"
