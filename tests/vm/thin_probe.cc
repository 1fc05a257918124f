// thin_probe: the LVM-thin building blocks of incremental backups (snapshot/thin_delta.h,
// snapshot/lvm_kept.h, LvmSnapshotView's keep_snapshot) as commands, for the VM scenario
// tests/vm/scenarios/thin_delta_changes.sh. The guest has no compiler and hotsnap does not
// expose these functions yet, so this small binary is built beside hotsnap and copied into the
// initramfs the same way (tests/vm/build_initramfs.sh). Not installed; not a user tool.
//
//   thin_probe ranges VG OLD_LV NEW_LV             ThinChangedRanges: "OFFSET LENGTH" per line,
//   bytes thin_probe ranges-by-id VG POOL OLD_ID NEW_ID  ThinChangedRangesById, the same output
//   thin_probe held VG POOL                        "held" or "free": the pool's metadata snapshot
//   thin_probe keep DEVICE                         a thin snapshot of DEVICE (an LV) kept as by a
//                                                  successful backup; prints the kept record
//   thin_probe keep-fail DEVICE                    the same snapshot, then Release(): a failed
//   backup thin_probe keep-crash DEVICE                   the same snapshot, then SIGKILL: a killed
//   backup thin_probe find VG ORIGIN                      FindKeptSnapshot: the record, or "none"
//   thin_probe drop VG ORIGIN                      DropKeptSnapshot
//   thin_probe diff-chunks DEV_A DEV_B CHUNK_BYTES the CHUNK_BYTES pieces in which the two devices
//                                                  differ, merged: "OFFSET LENGTH" per line
//
// A record is one line: "name=VG/LV thin_id=N created=UNIX run_id=ID origin=LV".
// Exit status: 0 on success; 1 and the error on stderr on failure, 2 for bad arguments, 3
// when the error is kBusy.
#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "snapshot/lvm_kept.h"
#include "snapshot/lvm_view.h"
#include "snapshot/thin_delta.h"

namespace hotsnap {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "thin_probe: %s\n", s.message().c_str());
  return s.code() == Code::kBusy ? 3 : 1;
}

int PrintRanges(const Result<std::vector<ByteExtent>>& ranges) {
  if (!ranges.ok()) return Fail(ranges.status());
  for (const ByteExtent& e : ranges.value()) {
    std::printf("%llu %llu\n", static_cast<unsigned long long>(e.offset_bytes),
                static_cast<unsigned long long>(e.length_bytes));
  }
  return 0;
}

void PrintKept(const KeptSnapshot& k) {
  std::printf("name=%s thin_id=%llu created=%lld run_id=%s origin=%s\n", k.full_name().c_str(),
              static_cast<unsigned long long>(k.thin_id), static_cast<long long>(k.created_unix),
              k.run_id.c_str(), k.origin_lv.c_str());
}

uint64_t Number(const char* s) { return std::strtoull(s, nullptr, 10); }

// keep, keep-fail, keep-crash: a view as a backup with keep_snapshot takes it.
int KeepCommand(const std::string& how, const std::string& device) {
  LvmViewOptions options;
  options.source = device;
  options.mode = "lvm-thin";
  options.keep_snapshot = true;
  auto view = LvmSnapshotView::Open(options);
  if (!view.ok()) return Fail(view.status());
  {
    // Read the first block, as a backup would, and close the device again.
    UniqueFd fd(::open((*view)->device_path().c_str(), O_RDONLY | O_CLOEXEC));
    char block[4096];
    if (!fd.valid() ||
        ::pread(fd.get(), block, sizeof(block), 0) != static_cast<ssize_t>(sizeof(block))) {
      return Fail(Status::FromErrno(Code::kSource, errno, "reading " + (*view)->device_path()));
    }
  }
  std::printf("snapshot=%s run_id=%s\n", (*view)->snapshot_name().c_str(),
              (*view)->run_id().c_str());
  std::fflush(stdout);
  if (how == "keep-crash") ::kill(::getpid(), SIGKILL);
  if (how == "keep-fail") {
    Status s = (*view)->Release();
    return s.ok() ? 0 : Fail(s);
  }
  Status s = (*view)->Keep();
  if (!s.ok()) return Fail(s);
  if (!(*view)->kept().has_value())
    return Fail(Status(Code::kInternal, "Keep() succeeded without a record"));
  PrintKept(*(*view)->kept());
  // Release() after Keep() must leave the kept snapshot alone.
  s = (*view)->Release();
  return s.ok() ? 0 : Fail(s);
}

// The pieces of CHUNK bytes in which two devices (or files) differ.
int DiffChunks(const char* a_path, const char* b_path, uint64_t chunk) {
  UniqueFd a(::open(a_path, O_RDONLY | O_CLOEXEC)), b(::open(b_path, O_RDONLY | O_CLOEXEC));
  if (!a.valid() || !b.valid() || chunk == 0)
    return Fail(Status(Code::kUsage, "cannot open both devices"));
  std::vector<char> x(chunk), y(chunk);
  std::vector<ByteExtent> out;
  for (uint64_t off = 0;; off += chunk) {
    ssize_t n = ::pread(a.get(), x.data(), chunk, static_cast<off_t>(off));
    ssize_t m = ::pread(b.get(), y.data(), chunk, static_cast<off_t>(off));
    if (n < 0 || m < 0) return Fail(Status::FromErrno(Code::kSource, errno, "reading"));
    if (n == 0 && m == 0) break;
    if (n != m ||
        std::char_traits<char>::compare(x.data(), y.data(), static_cast<size_t>(n)) != 0) {
      if (!out.empty() && out.back().end_bytes() == off) {
        out.back().length_bytes += chunk;
      } else {
        out.push_back({off, chunk});
      }
    }
    if (n < static_cast<ssize_t>(chunk) || m < static_cast<ssize_t>(chunk)) break;
  }
  return PrintRanges(out);
}

int Main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  auto usage = [] {
    std::fprintf(
        stderr,
        "thin_probe: bad arguments (see the comment at the top of tests/vm/thin_probe.cc)\n");
    return 2;
  };
  if (a.empty()) return usage();
  const std::string& cmd = a[0];
  if (cmd == "ranges" && a.size() == 4) return PrintRanges(ThinChangedRanges(a[1], a[2], a[3]));
  if (cmd == "ranges-by-id" && a.size() == 5) {
    auto pool = FindThinPool(a[1], a[2]);
    if (!pool.ok()) return Fail(pool.status());
    return PrintRanges(ThinChangedRangesById(*pool, Number(a[3].c_str()), Number(a[4].c_str())));
  }
  if (cmd == "held" && a.size() == 3) {
    auto pool = FindThinPool(a[1], a[2]);
    if (!pool.ok()) return Fail(pool.status());
    auto held = ThinPoolHoldsMetadataSnapshot(*pool);
    if (!held.ok()) return Fail(held.status());
    std::printf("%s\n", *held ? "held" : "free");
    return 0;
  }
  if ((cmd == "keep" || cmd == "keep-fail" || cmd == "keep-crash") && a.size() == 2)
    return KeepCommand(cmd, a[1]);
  if (cmd == "find" && a.size() == 3) {
    auto kept = FindKeptSnapshot(a[1], a[2]);
    if (!kept.ok()) return Fail(kept.status());
    if (kept->has_value()) {
      PrintKept(**kept);
    } else {
      std::printf("none\n");
    }
    return 0;
  }
  if (cmd == "drop" && a.size() == 3) {
    Status s = DropKeptSnapshot(a[1], a[2]);
    return s.ok() ? 0 : Fail(s);
  }
  if (cmd == "diff-chunks" && a.size() == 4)
    return DiffChunks(argv[2], argv[3], Number(a[3].c_str()));
  return usage();
}

}  // namespace
}  // namespace hotsnap

int main(int argc, char** argv) { return hotsnap::Main(argc, argv); }
