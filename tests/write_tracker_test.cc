// WriteTracker on real loop devices: what the block:block_bio_queue tracepoint reports, for a
// whole disk and for partitions, and what happens when the kernel drops records.
//
// Expected values come from the writes the test itself issues (dd with O_DIRECT at known
// offsets, blkdiscard, page-cache writeback of pages it dirtied), never from hotsnap.
#include "snapshot/write_tracker.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "snapshot/cpu_list.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::LoopDevice;
using testing::PartitionedLoopDevice;
using testing::Quote;
using testing::RunOk;
using testing::SizeOf;
using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;
using Range = std::pair<uint64_t, uint64_t>;  // offset, length (bytes)

std::unique_ptr<WriteTracker> StartTracker(const std::string& device) {
  auto t = WriteTracker::Start(device, SizeOf(device));
  EXPECT_TRUE(t.ok()) << t.status().message();
  return t.ok() ? std::move(t.value()) : nullptr;
}

// Drains everything recorded so far; fails the test on lost records.
std::vector<Range> DrainAll(WriteTracker* tracker) {
  std::vector<Range> out;
  auto lost = tracker->Drain([&](uint64_t offset, uint64_t length) { out.emplace_back(offset, length); });
  EXPECT_TRUE(lost.ok()) << lost.status().message();
  if (lost.ok()) {
    EXPECT_EQ(*lost, 0u) << "records lost in a test that writes little";
  }
  return out;
}

// `bytes` of 0xAB written with O_DIRECT at byte `offset` of `device`, in one write.
void WriteKnown(const std::string& device, uint64_t offset, uint64_t bytes) {
  ASSERT_EQ(offset % 512, 0u);
  RunOk("head -c " + std::to_string(bytes) + " /dev/zero | tr '\\0' '\\253' | dd of=" + Quote(device) +
        " bs=" + std::to_string(bytes) + " count=1 iflag=fullblock oflag=direct,seek_bytes seek=" +
        std::to_string(offset) + " conv=notrunc status=none");
}

bool Covers(const std::vector<Range>& ranges, uint64_t offset, uint64_t length) {
  for (const Range& r : ranges) {
    if (r.first <= offset && r.first + r.second >= offset + length) return true;
  }
  return false;
}

std::string Describe(const std::vector<Range>& ranges) {
  std::string s;
  for (const Range& r : ranges) s += "[" + std::to_string(r.first) + " +" + std::to_string(r.second) + "] ";
  return s.empty() ? "(none)" : s;
}

TEST(WriteTrackerTest, ReportsADirectWriteAtItsByteOffset) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 64 * kMiB);
  auto tracker = StartTracker(loop.device());
  ASSERT_NE(tracker, nullptr);
  DrainAll(tracker.get());
  const uint64_t offset = 5 * kMiB + 3 * 4096, length = 8192;
  WriteKnown(loop.device(), offset, length);
  std::vector<Range> got = DrainAll(tracker.get());
  EXPECT_EQ(got, (std::vector<Range>{{offset, length}})) << Describe(got);
}

TEST(WriteTrackerTest, ReadsAreNotReportedButDiscardsAre) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 64 * kMiB);
  auto tracker = StartTracker(loop.device());
  ASSERT_NE(tracker, nullptr);
  DrainAll(tracker.get());
  RunOk("dd if=" + Quote(loop.device()) + " of=/dev/null bs=1M count=16 iflag=direct status=none");
  EXPECT_EQ(DrainAll(tracker.get()), std::vector<Range>{}) << "reads reported as writes";
  // A discard changes what a later read returns (zeros): it must count as a write.
  RunOk("blkdiscard -o " + std::to_string(8 * kMiB) + " -l " + std::to_string(kMiB) + " " +
        Quote(loop.device()));
  std::vector<Range> got = DrainAll(tracker.get());
  EXPECT_TRUE(Covers(got, 8 * kMiB, kMiB)) << Describe(got);
  for (const Range& r : got) {
    EXPECT_GE(r.first, 8 * kMiB) << Describe(got);
    EXPECT_LE(r.first + r.second, 9 * kMiB) << Describe(got);
  }
}

// Two partitions: p1 at 1 MiB (63 MiB), p2 at 64 MiB (63 MiB).
constexpr uint64_t kP1Start = 1 * kMiB, kP2Start = 64 * kMiB, kPartBytes = 63 * kMiB;

TEST(WriteTrackerTest, PartitionOffsetsAreRelativeToThePartition) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  PartitionedLoopDevice disk(dir.path(), 128 * kMiB, {{kP1Start, kPartBytes}, {kP2Start, kPartBytes}});
  ASSERT_EQ(SizeOf(disk.partition(1)), kPartBytes);
  ASSERT_EQ(SizeOf(disk.partition(2)), kPartBytes);
  auto p1 = StartTracker(disk.partition(1));
  auto whole = StartTracker(disk.device());
  ASSERT_NE(p1, nullptr);
  ASSERT_NE(whole, nullptr);
  DrainAll(p1.get());
  DrainAll(whole.get());

  // Through the partition device: reported at the offset within p1.
  const uint64_t in_p1 = 12345 * 4096, length = 8192;
  WriteKnown(disk.partition(1), in_p1, length);
  std::vector<Range> got = DrainAll(p1.get());
  EXPECT_EQ(got, (std::vector<Range>{{in_p1, length}})) << Describe(got);
  // The whole-disk tracker sees the same write at its absolute offset.
  got = DrainAll(whole.get());
  EXPECT_EQ(got, (std::vector<Range>{{kP1Start + in_p1, length}})) << Describe(got);

  // Through the whole disk, inside p1: also p1-relative for the p1 tracker.
  const uint64_t disk_offset = kP1Start + 40 * kMiB;
  WriteKnown(disk.device(), disk_offset, 4096);
  got = DrainAll(p1.get());
  EXPECT_EQ(got, (std::vector<Range>{{40 * kMiB, 4096}})) << Describe(got);
  DrainAll(whole.get());

  // p2, and the disk before p1 (where the MBR lives): nothing for p1.
  WriteKnown(disk.partition(2), 0, 65536);
  WriteKnown(disk.partition(2), kPartBytes - 4096, 4096);
  WriteKnown(disk.device(), 64 * 1024, 4096);
  got = DrainAll(p1.get());
  EXPECT_EQ(got, std::vector<Range>{}) << "writes outside p1 reported for p1: " << Describe(got);
  got = DrainAll(whole.get());
  EXPECT_TRUE(Covers(got, kP2Start, 65536)) << Describe(got);
  EXPECT_TRUE(Covers(got, kP2Start + kPartBytes - 4096, 4096)) << Describe(got);
  EXPECT_TRUE(Covers(got, 64 * 1024, 4096)) << Describe(got);
}

TEST(WriteTrackerTest, AnotherDiskIsNotReported) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice a(dir.path(), 16 * kMiB, "a.img");
  LoopDevice b(dir.path(), 16 * kMiB, "b.img");
  auto tracker = StartTracker(a.device());
  ASSERT_NE(tracker, nullptr);
  DrainAll(tracker.get());
  WriteKnown(b.device(), kMiB, 4096);
  EXPECT_EQ(DrainAll(tracker.get()), std::vector<Range>{});
}

// Dirties every other 4 KiB page of the first `bytes` of `device` through the page cache, then
// fsyncs, pinned to one CPU: writeback queues one bio per page (no two are adjacent) from
// this CPU, more than its 2 MiB ring holds (29,127 block_bio_queue records of 72 bytes on
// 6.18). Returns the number of pages written.
uint64_t FloodWithSmallWrites(const std::string& device, uint64_t bytes) {
  cpu_set_t old_set, one;
  sched_getaffinity(0, sizeof(old_set), &old_set);
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  sched_setaffinity(0, sizeof(one), &one);
  int fd = ::open(device.c_str(), O_WRONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  uint64_t pages = 0;
  if (fd >= 0) {
    std::string page(4096, '\x5a');
    for (uint64_t at = 0; at + 4096 <= bytes; at += 8192) {
      if (::pwrite(fd, page.data(), page.size(), static_cast<off_t>(at)) != 4096) {
        ADD_FAILURE() << "pwrite at " << at;
        break;
      }
      ++pages;
    }
    EXPECT_EQ(::fsync(fd), 0);
    ::close(fd);
  }
  sched_setaffinity(0, sizeof(old_set), &old_set);
  return pages;
}

// Every write is either reported or counted as lost: the caller must never be told "nothing
// was lost" about writes it was not told about. The kernel drops records when a ring is full,
// and writes PERF_RECORD_LOST only together with the next record that fits. Draining right
// after the overflow, before any later write, is exactly the tracked copy's final freeze
// (nothing writes while frozen): Drain() must already report the loss there. Then one more
// write makes the kernel emit PERF_RECORD_LOST, which must be counted.
TEST(WriteTrackerTest, LostRecordsAreCounted) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  const uint64_t bytes = 300 * kMiB;  // 38,400 pages written
  LoopDevice loop(dir.path(), bytes);
  auto tracker = StartTracker(loop.device());
  ASSERT_NE(tracker, nullptr);
  DrainAll(tracker.get());
  uint64_t pages = FloodWithSmallWrites(loop.device(), bytes);
  uint64_t reported_pages = 0;
  auto count = [&](uint64_t, uint64_t length) { reported_pages += length / 4096; };
  auto lost1 = tracker->Drain(count);
  ASSERT_TRUE(lost1.ok()) << lost1.status().message();
  ASSERT_LT(reported_pages, pages) << "the rings held every record; this test needs an overflow";
  EXPECT_GT(*lost1, 0u) << pages << " pages written, " << reported_pages
                        << " reported, and Drain() says nothing was lost (the kernel's "
                           "PERF_RECORD_LOST is still pending: no record arrived since)";
  // One more small write on every CPU (the pending count sits with the CPU that dropped).
  for (int cpu = 0; cpu < static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)); ++cpu) {
    RunOk("taskset -c " + std::to_string(cpu) + " dd if=/dev/zero of=" + Quote(loop.device()) +
          " bs=4096 count=1 seek=" + std::to_string(cpu * 2 + 1) + " oflag=direct conv=notrunc status=none");
  }
  auto lost2 = tracker->Drain(count);
  ASSERT_TRUE(lost2.ok());
  uint64_t lost = *lost1 + *lost2;
  EXPECT_GT(*lost2 + *lost1, 0u) << "no PERF_RECORD_LOST even after a later write";
  EXPECT_GE(reported_pages + lost, pages) << "reported " << reported_pages << ", lost " << lost;
}

// ---- CPU lists and CPU hotplug -------------------------------------------------------------

TEST(CpuListTest, ParsesTheKernelsForms) {
  auto one = ParseCpuList("0\n", "online");
  ASSERT_TRUE(one.ok()) << one.status().message();
  EXPECT_EQ(*one, std::vector<int>{0});
  auto mixed = ParseCpuList("0-3,8,10-11\n", "online");
  ASSERT_TRUE(mixed.ok()) << mixed.status().message();
  EXPECT_EQ(*mixed, (std::vector<int>{0, 1, 2, 3, 8, 10, 11}));
  auto empty = ParseCpuList("\n", "offline");  // /sys/devices/system/cpu/offline, all online
  ASSERT_TRUE(empty.ok()) << empty.status().message();
  EXPECT_EQ(*empty, std::vector<int>{});
  EXPECT_EQ(FormatCpuList(*mixed), "0-3,8,10-11");
  EXPECT_EQ(FormatCpuList({}), "");
}

TEST(CpuListTest, BadTextIsAnErrorNamingTheFileAndText) {
  for (const char* bad :
       {"0-", "-1", "3-1", "0,,1", "0,", "a", "0-1x", " 0", "0-99999999999", "99999"}) {
    auto cpus = ParseCpuList(bad, "/sys/devices/system/cpu/online");
    ASSERT_FALSE(cpus.ok()) << "accepted \"" << bad << "\"";
    EXPECT_NE(cpus.status().message().find("/sys/devices/system/cpu/online"), std::string::npos)
        << cpus.status().message();
    EXPECT_NE(cpus.status().message().find(std::string("\"") + bad + "\""), std::string::npos)
        << cpus.status().message();
  }
}

// The real CPU list, then (from the `change_after`-th call on) the same list plus one CPU
// that does not exist: what a CPU coming online during tracking looks like.
class HotplugCpuInfo : public CpuInfo {
 public:
  explicit HotplugCpuInfo(int change_after) : change_after_(change_after) {}
  Result<std::vector<int>> OnlineCpus() override {
    auto cpus = RealCpuInfo()->OnlineCpus();
    if (!cpus.ok() || ++calls_ < change_after_) return cpus;
    std::vector<int> more = *cpus;
    more.push_back(more.empty() ? 0 : more.back() + 1);
    return more;
  }

 private:
  int change_after_;
  int calls_ = 0;
};

TEST(WriteTrackerTest, ACpuComingOnlineFailsTheDrainClearly) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 64 * kMiB);
  HotplugCpuInfo cpus(/*change_after=*/3);  // Start, the first drain, then a CPU appears
  auto tracker = WriteTracker::Start(loop.device(), SizeOf(loop.device()), &cpus);
  ASSERT_TRUE(tracker.ok()) << tracker.status().message();
  auto quiet = (*tracker)->Drain([](uint64_t, uint64_t) {});
  ASSERT_TRUE(quiet.ok()) << quiet.status().message();
  auto real = RealCpuInfo()->OnlineCpus();
  ASSERT_TRUE(real.ok()) << real.status().message();
  auto changed = (*tracker)->Drain([](uint64_t, uint64_t) {});
  ASSERT_FALSE(changed.ok()) << "a CPU came online and the drain went on";
  EXPECT_EQ(changed.status().code(), Code::kSource);
  const std::string& message = changed.status().message();
  EXPECT_NE(message.find(FormatCpuList(*real) + " at the start"), std::string::npos) << message;
  EXPECT_NE(message.find("run the backup again"), std::string::npos) << message;
}

}  // namespace
}  // namespace hotsnap
