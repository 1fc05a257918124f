#include "cli/mount_commands.h"

#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>

#include "agent/progress.h"
#include "base/log.h"
#include "cli/parse.h"
#include "io/stale_temp_files.h"
#include "mount/extract_job.h"
#include "mount/mount_job.h"
#include "snapshot/lvm_lease.h"

namespace po = boost::program_options;

namespace hotsnap {
namespace {

const char* kRandomAccessNote =
    "IMAGE must be a regular file: random access needs the seek table at its end. A stream\n"
    "(- or ssh://...) is refused; copy it to a file first, or restore it in full. A delta\n"
    "image (backup --base) is read with its parents (beside it, or in --chain DIR).";

}  // namespace

Status RunCatCommand(const std::vector<std::string>& args) {
  po::options_description d("cat options");
  ExtractOptions o;
  uint64_t length = 0;
  d.add_options()
      ("offset", po::value<uint64_t>(&o.offset_bytes)->default_value(0), "first device byte to extract")
      ("length", po::value<uint64_t>(&length), "bytes to extract (default: to the end of the device)")
      ("output,o", po::value<std::string>(&o.output)->default_value("-"), "output file, or - for stdout")
      ("overwrite", "replace the output file if it exists");
  std::string chain_dir;
  AddChainOption(&d, &chain_dir);
  auto p = Parse(args, "hotsnap cat IMAGE [--offset N] [--length N] [-o FILE|-]",
                 std::string("Write device bytes [offset, offset+length) stored in IMAGE to FILE or stdout,\n"
                             "decoding only the chunks they lie in. Every chunk is checked against its hash;\n"
                             "a corrupt one fails the command (exit 5) naming the chunk and its offsets.\n") +
                     kRandomAccessNote,
                 d, {"IMAGE"});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  o.image = p->vm["IMAGE"].as<std::string>();
  if (p->vm.count("length")) o.length_bytes = length;
  o.overwrite = p->vm.count("overwrite") > 0;
  auto chain = ChainOptionsFor(chain_dir);
  if (!chain.ok()) return chain.status();
  o.chain = *chain;
  auto r = ExtractRange(o);
  if (!r.ok()) return r.status();
  if (o.output != "-") {
    Notice("wrote " + std::to_string(r->bytes_written) + " bytes to " + o.output + " (" +
           std::to_string(r->chunks_decoded) + " chunks decoded)");
  }
  return Status::Ok();
}

// "partition 2 (ext4) at /mnt/p2 via /dev/loop5" (or "ext4 at /mnt via /dev/loop5") for each
// filesystem of a mount.
std::string DescribeParts(const MountRecord& r) {
  std::string text;
  for (const MountedPart& p : r.parts) {
    if (!text.empty()) text += ", ";
    std::string what = p.partition == 0 ? p.fs_type
                                        : "partition " + std::to_string(p.partition) + " (" + p.fs_type + ")";
    text += what + " at " + p.mount_point + " via " + p.loop_device;
  }
  return text;
}

Status RunMountCommand(const std::vector<std::string>& args) {
  po::options_description d("mount options");
  MountOptions o;
  d.add_options()
      ("foreground,f", "serve in this process until Ctrl-C/SIGTERM (which unmounts), instead of in "
       "a background server")
      ("cache-chunks", po::value<size_t>(&o.cache_chunks)->default_value(16),
       "decoded chunks kept in memory (each is one chunk, 4 MiB)")
      ("partition", po::value<int>(&o.partition)->default_value(0),
       "with the image of a whole disk: mount partition N (as 'hotsnap info' numbers them) alone, at "
       "MOUNTPOINT itself");
  std::string chain_dir;
  AddChainOption(&d, &chain_dir);
  auto p = Parse(args, "hotsnap mount IMAGE MOUNTPOINT [--foreground] [--partition N]",
                 std::string("Mount the filesystem stored in IMAGE read-only at MOUNTPOINT, without restoring\n"
                             "it: the image is served as a file through FUSE (decoding only the chunks read),\n"
                             "attached to a read-only loop device, and mounted with the options that keep\n"
                             "it from writing (ext2/3/4: ro,noload; xfs: ro,norecovery,nouuid; always\n"
                             "nosuid,nodev). A chunk that fails its hash gives EIO to the reads touching it.\n"
                             "With the image of a whole disk (a partition table; 'hotsnap info' lists it), each\n"
                             "partition holding ext2/3/4, xfs or vfat is mounted that way at MOUNTPOINT/pN (N as\n"
                             "'hotsnap info' numbers it; the directory is made if missing and removed at unmount),\n"
                             "through a loop device of its own over its byte range; the other partitions (swap,\n"
                             "LUKS, LVM, none, or a filesystem this kernel has no driver for) are skipped with\n"
                             "a notice saying why. If one partition fails to mount, those mounted before it are\n"
                             "undone and the error names it (number, filesystem, byte offset); nothing is left.\n"
                             "--partition N mounts partition N alone at MOUNTPOINT.\n"
                             "Undo with 'hotsnap umount MOUNTPOINT'; state is kept in /run/hotsnap/mounts.\n") +
                     kRandomAccessNote,
                 d, {"IMAGE", "MOUNTPOINT"});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  o.image = p->vm["IMAGE"].as<std::string>();
  o.mount_point = p->vm["MOUNTPOINT"].as<std::string>();
  o.foreground = p->vm.count("foreground") > 0;
  auto chain = ChainOptionsFor(chain_dir);
  if (!chain.ok()) return chain.status();
  o.chain = *chain;
  if (o.cache_chunks < 1 || o.cache_chunks > 1024) return Status(Code::kUsage, "--cache-chunks must be 1-1024");
  if (o.partition < 0) return Status(Code::kUsage, "--partition must be a partition number, 1 or more");
  o.on_ready = [&o](const MountRecord& r) {
    for (const std::string& skipped : r.skipped) Notice(skipped);
    Notice("mounted " + r.image + " read-only: " + DescribeParts(r) +
           (o.foreground ? "; Ctrl-C or 'hotsnap umount " + r.mount_point + "' unmounts"
                         : "; server pid " + std::to_string(r.pid) + "; 'hotsnap umount " + r.mount_point +
                               "' unmounts"));
  };
  auto r = RunMount(o);
  if (!r.ok()) return r.status();
  return Status::Ok();
}

Status RunUmountCommand(const std::vector<std::string>& args) {
  po::options_description d("umount options");
  auto p = Parse(args, "hotsnap umount MOUNTPOINT",
                 "Undo 'hotsnap mount': unmount the filesystem, or every MOUNTPOINT/pN of a whole-disk\n"
                 "image (refused, with nothing changed, while a process uses one), detach the loop\n"
                 "devices, remove the pN directories it made, unmount the FUSE file, stop the server.",
                 d, {"MOUNTPOINT"});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  return RunUmount(p->vm["MOUNTPOINT"].as<std::string>());
}

Status RunCleanupCommand(const std::vector<std::string>& all_args) {
  // DIR...: directories to clear of the temporary files of dead runs (io/stale_temp_files.h).
  std::vector<std::string> args, dirs;
  for (const std::string& a : all_args) (a.empty() || a[0] != '-' ? dirs : args).push_back(a);
  po::options_description d("cleanup options");
  auto p = Parse(args, "hotsnap cleanup [DIR...]",
                 "Remove what crashed hotsnap processes left behind: LVM snapshots of backups whose\n"
                 "process died (tagged hotsnap, leased in /run/hotsnap/leases), mounts of images whose server\n"
                 "died (their filesystem, loop device, stale FUSE mount \"Transport endpoint is not\n"
                 "connected\", and state files). Live mounts are left alone. With DIR...: also the\n"
                 "temporary files .NAME.hotsnap-PID.tmp of backups and restores whose process PID died\n"
                 "(killed before publishing); those of running processes are left alone.",
                 d, {});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  MountCleanupReport report;
  Status s = RunMountCleanup(&report);
  // LVM snapshots of dead backup runs (see snapshot/lvm_lease.h).
  LvmCleanupReport lvm_report;
  Status lvm = CleanupLvmLeftovers(RealLvmControl(), kDefaultLeaseDir, &lvm_report);
  report.removed.insert(report.removed.end(), lvm_report.removed.begin(), lvm_report.removed.end());
  report.skipped.insert(report.skipped.end(), lvm_report.kept.begin(), lvm_report.kept.end());
  if (s.ok()) s = lvm;
  for (const std::string& dir : dirs) {
    StaleTempReport temp;
    Status t = RemoveStaleTemporaryFiles(dir, &temp);
    report.removed.insert(report.removed.end(), temp.removed.begin(), temp.removed.end());
    report.skipped.insert(report.skipped.end(), temp.kept.begin(), temp.kept.end());
    if (s.ok()) s = t;
  }
  for (const std::string& line : report.removed) std::printf("removed: %s\n", line.c_str());
  for (const std::string& line : report.skipped) std::printf("kept: %s\n", line.c_str());
  if (report.removed.empty() && s.ok()) std::printf("nothing to clean up\n");
  return s;
}

}  // namespace hotsnap
