# Publishing onto NFSv4.2: the kernel's nfsd exports a tmpfs over loopback (Debian's rpc.nfsd,
# rpc.mountd and exportfs), the kernel client mounts it (mount.nfs). The NFS client refuses
# renameat2(RENAME_NOREPLACE) with EINVAL; hotsnap must publish with link()+unlink() and still
# never replace a file (check_publish in lib.sh).
. /scenarios/lib.sh

stop_nfs() {
  umount /mnt/nfs 2> /dev/null
  rpc.nfsd 0 2> /dev/null
  exportfs -ua 2> /dev/null
  killall rpc.mountd 2> /dev/null
  umount /srv/nfs 2> /dev/null
  umount /proc/fs/nfsd 2> /dev/null
}
trap 'writer_stop; stop_nfs' EXIT

step "NFS server and client"
ip link set lo up || fail "ip link set lo up"
grep -q " /proc/fs/nfsd nfsd " /proc/mounts || mount -t nfsd nfsd /proc/fs/nfsd || fail "mount nfsd"
mkdir -p /srv/nfs /var/lib/nfs/v4recovery /mnt/nfs
mount -t tmpfs -o size=64m tmpfs /srv/nfs || fail "tmpfs for the export"
: > /var/lib/nfs/etab
echo "/srv/nfs 127.0.0.1(rw,no_root_squash,no_subtree_check,insecure,fsid=0)" > /etc/exports
exportfs -ra || fail "exportfs"
rpc.mountd --no-nfs-version 3 --no-udp || fail "rpc.mountd"
rpc.nfsd --no-nfs-version 3 --no-udp 2 || fail "rpc.nfsd"
# A fresh server has no clients to wait for: end the grace period now, not in 90 s.
echo Y > /proc/fs/nfsd/v4_end_grace 2> /dev/null || echo "note: cannot end the NFSv4 grace period early"
mount -t nfs4 -o vers=4.2,proto=tcp 127.0.0.1:/ /mnt/nfs || fail "mount 127.0.0.1:/"
grep " /mnt/nfs nfs4 " /proc/mounts || fail "/mnt/nfs is not an NFSv4 mount"

check_publish /mnt/nfs NFS
echo "OK"
