#!/usr/bin/env bash
# Builds the initramfs the VM tests boot: busybox, lvm2, thin-provisioning-tools, e2fsprogs,
# sfdisk, zstd, the NFS server and client tools and the hotsnap binary with their shared libraries
# (found with ldd), the kernel modules for virtio, 9p, ext4, device-mapper (snapshot, thin,
# delay), nfsd and the NFSv4 client in dependency order, the guest scripts
# (tests/vm/guest) and the scenarios (tests/vm/scenarios).
#
#   build_initramfs.sh KERNEL_VERSION HOTSNAP_BINARY OUT.cpio [TEST_BINARY...]
#
# TEST_BINARY (e.g. the build's tests/vm/thin_probe) goes to /usr/bin under its own name,
# like hotsnap: with its shared libraries, stripped of debug info.
#
# HOTSNAP_VM_EXTRA_SCENARIOS (a folder, e.g. bench/vm): its *.sh go to /scenarios too.
#
# Installs nothing; the packages it needs are in scripts/packages.txt.
set -euo pipefail

kver=$1
hotsnap_bin=$2
out=$3
shift 3
test_bins=("$@")
here=$(cd "$(dirname "$0")" && pwd)
moddir=/lib/modules/$kver

die() { echo "build_initramfs: $*" >&2; exit 1; }
[[ -f $moddir/modules.dep ]] || die "no $moddir/modules.dep (package linux-image-amd64)"
[[ -x $hotsnap_bin ]] || die "no hotsnap binary at $hotsnap_bin"
command -v cpio >/dev/null || die "cpio not found"

root=$(mktemp -d "${TMPDIR:-/tmp}/hotsnap-initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc/lvm,proc,sys,dev,run,tmp,mnt,host,modules,scenarios}

# Copies a file to the same path under $root (following symlinks to the real content).
copy_file() {
  local src=$1 dst=${2:-$1}
  mkdir -p "$root$(dirname "$dst")"
  cp -L "$src" "$root$dst"
}

# Copies an executable and every shared library ldd reports for it.
copy_binary() {
  local bin=$1 dst=${2:-$1}
  [[ -e $bin ]] || die "missing $bin"
  copy_file "$bin" "$dst"
  local lib
  while read -r lib; do
    [[ -n $lib && -e $root$lib ]] || copy_file "$lib"
  done < <(ldd "$bin" 2>/dev/null | sed -n -e 's/.*=> \(\/[^ ]*\) .*/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\) .*/\1/p')
}

# busybox-static: every applet as a symlink in /bin.
bb=$(command -v busybox) || die "busybox not found (package busybox-static)"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list); do
  [[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
done

# The real tools, ahead of busybox on PATH.
copy_binary /usr/sbin/lvm
for cmd in lvs vgs pvs lvcreate lvremove lvchange lvrename lvextend vgcreate vgchange pvcreate vgremove vgmknodes; do
  ln -sf lvm "$root/usr/sbin/$cmd"
done
copy_binary /usr/sbin/dmsetup
copy_binary /usr/sbin/pdata_tools
for cmd in thin_check thin_repair thin_dump thin_restore thin_delta thin_ls; do ln -sf pdata_tools "$root/usr/sbin/$cmd"; done
copy_binary /usr/sbin/mke2fs
ln -sf mke2fs "$root/usr/sbin/mkfs.ext4"
copy_binary /usr/sbin/e2fsck
# sfdisk (package fdisk): a partitioned loop disk for the lv_on_pv_refused scenario.
copy_binary /usr/sbin/sfdisk
[[ -f /etc/mke2fs.conf ]] && copy_file /etc/mke2fs.conf
copy_binary "$(command -v zstd)" /usr/bin/zstd
# NFS server and client userland (nfs-kernel-server, nfs-common) for the publish_nfs scenario.
for tool in rpc.nfsd rpc.mountd exportfs mount.nfs; do copy_binary "/usr/sbin/$tool"; done
ln -sf mount.nfs "$root/usr/sbin/mount.nfs4"
ln -sf mount.nfs "$root/sbin/mount.nfs4"
ln -sf /usr/sbin/mount.nfs "$root/sbin/mount.nfs"
for f in /etc/netconfig /etc/services /etc/protocols; do [[ -f $f ]] && copy_file "$f"; done
mkdir -p "$root/var/lib/nfs/v4recovery" "$root/srv"
ln -sf /proc/mounts "$root/etc/mtab"
copy_binary "$hotsnap_bin" /usr/bin/hotsnap
# Debug info is most of the binary's size, and the guest unpacks the initramfs into RAM.
strip --strip-debug "$root/usr/bin/hotsnap" 2>/dev/null || true
for bin in ${test_bins[@]+"${test_bins[@]}"}; do
  copy_binary "$bin" "/usr/bin/$(basename "$bin")"
  strip --strip-debug "$root/usr/bin/$(basename "$bin")" 2>/dev/null || true
done

# Kernel modules, dependencies first (modules.dep lists each module's dependencies).
declare -A dep_of=() loaded=() path_of=()
while IFS=: read -r mod deps; do
  dep_of[$mod]=$deps
  base=${mod##*/}
  base=${base%%.ko*}
  path_of[${base//-/_}]=$mod
done < "$moddir/modules.dep"
order=()
visit() {
  local mod=$1 dep
  [[ -n ${loaded[$mod]:-} ]] && return
  loaded[$mod]=1
  for dep in ${dep_of[$mod]}; do visit "$dep"; done
  order+=("$mod")
}
find_module() {
  local key=${1//-/_}
  [[ -n ${path_of[$key]:-} ]] || die "module $1 not found in $moddir/modules.dep"
  echo "${path_of[$key]}"
}
for name in virtio_pci virtio_blk 9pnet_virtio 9p crc32c_generic ext4 loop dm-mod dm-snapshot dm-thin-pool \
    dm-delay nfsd nfsv4; do
  visit "$(find_module "$name")"
done
: > "$root/modules/order"
for mod in "${order[@]}"; do
  file=${mod##*/}
  case $file in
    *.ko.xz) xz -dc "$moddir/$mod" > "$root/modules/${file%.xz}"; file=${file%.xz} ;;
    *.ko.zst) zstd -qdc "$moddir/$mod" > "$root/modules/${file%.zst}"; file=${file%.zst} ;;
    *.ko.gz) gzip -dc "$moddir/$mod" > "$root/modules/${file%.gz}"; file=${file%.gz} ;;
    *) cp "$moddir/$mod" "$root/modules/$file" ;;
  esac
  echo "$file" >> "$root/modules/order"
done

# LVM without udev: it must create device nodes itself and not wait for udev.
cat > "$root/etc/lvm/lvm.conf" <<'EOF'
devices {
  obtain_device_list_from_udev = 0
}
activation {
  udev_sync = 0
  udev_rules = 0
  verify_udev_operations = 1
  monitoring = 0
}
global {
  thin_check_executable = "/usr/sbin/thin_check"
}
backup {
  backup = 0
  archive = 0
}
EOF
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"

cp "$here/guest/init" "$root/init"
cp "$here/guest/lib.sh" "$root/scenarios/lib.sh"
cp "$here"/scenarios/*.sh "$root/scenarios/"
if [[ -n ${HOTSNAP_VM_EXTRA_SCENARIOS:-} ]]; then cp "$HOTSNAP_VM_EXTRA_SCENARIOS"/*.sh "$root/scenarios/"; fi
chmod +x "$root/init"

(cd "$root" && find . | cpio -o -H newc --quiet) > "$out"
