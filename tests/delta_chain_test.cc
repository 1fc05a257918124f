// The done-means round trips of incremental backups (issue 15): a full backup, then two delta
// backups (`backup --base`) of a changing ext4, XFS, or whole GPT disk holding both, each
// change rewriting files, deleting one and adding some.
//
// The source is a regular file holding the filesystem (or the GPT disk), unmounted while it is
// backed up (--snapshot none); between backups it is mounted through a loop device (offset and
// size limit for a partition) and changed. At each backup the file itself is copied: that copy
// is the reference the backup must restore to. What each filesystem uses comes from its own
// tools run on the reference (testing::UsedRangesOf: dumpe2fs, xfs_db), never from hotsnap.
//
// Checked: every link restores to its reference on every used block, and mounts to the same
// files; stock zstd refuses a delta image (no byte of output); `hotsnap compact` of the newest
// delta passes `zstd -t` and `zstd -dc` of it equals the delta's restore byte for byte; the
// marker of a file deleted before a delta appears in no later restored image; verify and
// restore fail with exit 5 naming the parent when a parent is corrupt, swapped for another
// image under its name, or missing.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "base/unique_fd.h"
#include "io/image_index.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::CommandResult;
using testing::Hotsnap;
using testing::Quote;
using testing::RunOk;
using testing::Sha256;
using testing::TempDir;
using testing::UsedRangesOf;

constexpr uint64_t kMiB = 1024 * 1024;

CommandResult Sh(const std::string& command) { return testing::Run(command); }

// One filesystem of the source: where it lies in the source file, in bytes.
struct Region {
  std::string fs_type;
  uint64_t offset;
  uint64_t bytes;
};

struct SourceLayout {
  uint64_t source_bytes;
  std::string sfdisk;  // empty: the source is the filesystem itself
  std::vector<Region> regions;
};

SourceLayout LayoutFor(const std::string& kind) {
  if (kind == "ext4") return {160 * kMiB, "", {{"ext4", 0, 160 * kMiB}}};
  if (kind == "xfs") return {320 * kMiB, "", {{"xfs", 0, 320 * kMiB}}};
  // gpt: an ext4 and an XFS partition, 1 MiB aligned, the backup GPT in the last MiB.
  SourceLayout l{452 * kMiB, "label: gpt\nstart=2048,size=262144,type=L\nstart=264192,size=655360,type=L\n",
           {{"ext4", 1 * kMiB, 128 * kMiB}, {"xfs", 129 * kMiB, 320 * kMiB}}};
  return l;
}

class DeltaChainTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    HOTSNAP_REQUIRE_PRIVILEGED();
    layout_ = LayoutFor(GetParam());
    source_ = dir_.File("source.img");
    RunOk("truncate -s " + std::to_string(layout_.source_bytes) + " " + Quote(source_));
    if (!layout_.sfdisk.empty()) {
      RunOk("printf %s " + Quote(layout_.sfdisk) + " | sfdisk -q " + Quote(source_) + " >/dev/null");
    }
    for (size_t i = 0; i < layout_.regions.size(); ++i) {
      const Region& r = layout_.regions[i];
      std::string scratch = dir_.File("mkfs.img");
      RunOk("rm -f " + Quote(scratch) + " && truncate -s " + std::to_string(r.bytes) + " " + Quote(scratch));
      RunOk((r.fs_type == "ext4" ? "mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "
                                 : "mkfs.xfs -q -f ") +
            Quote(scratch));
      RunOk("dd if=" + Quote(scratch) + " of=" + Quote(source_) + " bs=1M oflag=seek_bytes seek=" +
            std::to_string(r.offset) + " conv=notrunc status=none && rm -f " + Quote(scratch));
      RunOk("mkdir -p " + Quote(MountDir(i)));
    }
  }
  void TearDown() override {
    for (size_t i = 0; i < layout_.regions.size(); ++i) {
      Sh("umount " + Quote(MountDir(i)) + " 2>/dev/null");
    }
  }

  std::string MountDir(size_t region) const { return dir_.File("mnt" + std::to_string(region)); }
  std::string Image(int g) const { return dir_.File("images/g" + std::to_string(g) + ".zst"); }
  std::string Reference(int g) const { return dir_.File("ref" + std::to_string(g) + ".img"); }
  std::string Restored(int g) const { return dir_.File("restored" + std::to_string(g) + ".img"); }

  void Mount(size_t i) {
    const Region& r = layout_.regions[i];
    RunOk("mount -o loop,offset=" + std::to_string(r.offset) + ",sizelimit=" + std::to_string(r.bytes) +
          " " + Quote(source_) + " " + Quote(MountDir(i)));
  }
  void Unmount(size_t i) { RunOk("umount " + Quote(MountDir(i))); }

  // Generation 0 fills each filesystem; later ones rewrite two files, delete one (whose
  // unique marker is remembered) and add two.
  void Change(int g) {
    for (size_t i = 0; i < layout_.regions.size(); ++i) {
      Mount(i);
      const std::string m = MountDir(i);
      if (g == 0) {
        for (int f = 0; f < 24; ++f) {
          RunOk("head -c 2M /dev/urandom > " + Quote(m + "/file" + std::to_string(f)));
        }
        std::string marker = "hotsnap-deleted-marker-r" + std::to_string(i) + "-" + GetParam();
        RunOk("yes " + Quote(marker) + " | head -c 1M > " + Quote(m + "/doomed" + std::to_string(i)));
        markers_.push_back(marker);
      } else {
        for (int f : {g, g + 7}) {
          RunOk("dd if=/dev/urandom of=" + Quote(m + "/file" + std::to_string(f)) +
                " bs=64k count=8 seek=3 conv=notrunc status=none");
        }
        if (g == 1) RunOk("rm " + Quote(m + "/doomed" + std::to_string(i)));
        RunOk("rm -f " + Quote(m + "/file" + std::to_string(10 + g)));
        for (int f = 0; f < 2; ++f) {
          RunOk("head -c 1M /dev/urandom > " + Quote(m + "/new" + std::to_string(g) + "-" + std::to_string(f)));
        }
      }
      Unmount(i);
    }
    RunOk("cp --sparse=always " + Quote(source_) + " " + Quote(Reference(g)));
  }

  // The restored image equals the reference on every used block of every filesystem, and
  // each filesystem mounts to the same files.
  void ExpectEqualsReference(const std::string& restored, int g) {
    for (size_t i = 0; i < layout_.regions.size(); ++i) {
      const Region& r = layout_.regions[i];
      std::string ref_part = dir_.File("ref-part.img"), got_part = dir_.File("got-part.img");
      auto extract = [&](const std::string& from, const std::string& to) {
        RunOk("dd if=" + Quote(from) + " of=" + Quote(to) + " bs=1M iflag=skip_bytes,count_bytes skip=" +
              std::to_string(r.offset) + " count=" + std::to_string(r.bytes) + " status=none");
      };
      extract(Reference(g), ref_part);
      extract(restored, got_part);
      auto used = UsedRangesOf(ref_part, r.fs_type);
      ASSERT_FALSE(used.empty());
      uint64_t compared = 0;
      for (const auto& [begin, end] : used) {
        CommandResult a = RunOk("dd if=" + Quote(ref_part) + " bs=1M iflag=skip_bytes,count_bytes skip=" +
                                std::to_string(begin) + " count=" + std::to_string(end - begin) +
                                " status=none | sha256sum");
        CommandResult b = RunOk("dd if=" + Quote(got_part) + " bs=1M iflag=skip_bytes,count_bytes skip=" +
                                std::to_string(begin) + " count=" + std::to_string(end - begin) +
                                " status=none | sha256sum");
        EXPECT_EQ(a.out, b.out) << "generation " << g << ", " << r.fs_type << " at " << r.offset
                                << ": used bytes " << begin << ".." << end << " differ";
        compared += end - begin;
      }
      EXPECT_GT(compared, 40 * kMiB) << "the filesystem should hold the test's files";
      // Same files, same contents.
      std::string a = dir_.File("cmp-a"), b = dir_.File("cmp-b");
      RunOk("mkdir -p " + Quote(a) + " " + Quote(b));
      std::string opts = r.fs_type == "ext4" ? "ro,loop,noload" : "ro,loop,norecovery,nouuid";
      RunOk("mount -o " + opts + " " + Quote(ref_part) + " " + Quote(a));
      RunOk("mount -o " + opts + " " + Quote(got_part) + " " + Quote(b));
      CommandResult diff = Sh("diff -r " + Quote(a) + " " + Quote(b));
      EXPECT_EQ(diff.exit_code, 0) << "generation " << g << ": files differ\n" << diff.out;
      RunOk("umount " + Quote(a) + " && umount " + Quote(b) + " && rm -f " + Quote(ref_part) + " " +
            Quote(got_part));
    }
  }

  // Full, delta, delta: three generations backed up.
  void BackUpThreeGenerations() {
    RunOk("mkdir -p " + Quote(dir_.File("images")));
    for (int g = 0; g < 3; ++g) {
      Change(g);
      std::string base = g == 0 ? "" : " --base " + Quote(Image(g - 1));
      RunOk(Hotsnap("backup " + Quote(source_) + " -o " + Quote(Image(g)) + base +
                    " --snapshot none --level 1 --no-progress"));
    }
  }

  TempDir dir_;
  SourceLayout layout_;
  std::string source_;
  std::vector<std::string> markers_;
};

TEST_P(DeltaChainTest, EveryLinkRestoresToItsMomentAndDeletedDataIsGone) {
  BackUpThreeGenerations();
  for (int g = 0; g < 3; ++g) {
    RunOk(Hotsnap("restore " + Quote(Image(g)) + " " + Quote(Restored(g)) + " --no-progress"));
    ExpectEqualsReference(Restored(g), g);
  }
  // Each delta stores exactly the chunks whose restored bytes differ from its parent's
  // (counted here, 4 MiB at a time), and little else.
  for (int g : {1, 2}) {
    CommandResult info = RunOk(Hotsnap("info --json " + Quote(Image(g))));
    auto j = nlohmann::json::parse(info.out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << info.out;
    EXPECT_EQ(j.value("layout", ""), "delta");
    EXPECT_EQ(j.value("change_source", ""), "hash compare");
    uint64_t differing = 0, chunks = 0;
    {
      UniqueFd a(::open(Restored(g - 1).c_str(), O_RDONLY | O_CLOEXEC));
      UniqueFd b(::open(Restored(g).c_str(), O_RDONLY | O_CLOEXEC));
      std::vector<char> x(4 * kMiB), y(4 * kMiB);
      for (uint64_t at = 0; at < layout_.source_bytes; at += x.size(), ++chunks) {
        ssize_t ra = ::pread(a.get(), x.data(), x.size(), static_cast<off_t>(at));
        ssize_t rb = ::pread(b.get(), y.data(), y.size(), static_cast<off_t>(at));
        ASSERT_EQ(ra, rb);
        ASSERT_GT(ra, 0);
        if (std::memcmp(x.data(), y.data(), static_cast<size_t>(ra)) != 0) ++differing;
      }
    }
    EXPECT_GT(differing, 0u);
    EXPECT_LT(differing, chunks / 2) << "the changes should touch few chunks";
    EXPECT_EQ(j.value("changed_chunks", uint64_t{0}), differing) << "generation " << g;
    EXPECT_EQ(j.value("unchanged_chunks", uint64_t{0}), chunks - differing) << "generation " << g;
    EXPECT_LT(testing::SizeOf(Image(g)), differing * (4 * kMiB + 64 * 1024) + kMiB)
        << "delta " << g << " holds more than its changed chunks";
  }
  // The deleted file's marker: in generation 0, in no image after it.
  for (const std::string& marker : markers_) {
    EXPECT_EQ(Sh("grep -q -a " + Quote(marker) + " " + Quote(Restored(0))).exit_code, 0)
        << "generation 0 should hold " << marker;
    for (int g : {1, 2}) {
      EXPECT_NE(Sh("grep -q -a " + Quote(marker) + " " + Quote(Restored(g))).exit_code, 0)
          << "deleted data (" << marker << ") survived into generation " << g;
    }
  }
  // Stock zstd refuses a delta image before writing a byte.
  for (int g : {1, 2}) {
    CommandResult z = Sh("zstd -dc " + Quote(Image(g)) + " | wc -c");
    EXPECT_EQ(z.out, "0\n") << "stock zstd wrote bytes of delta " << g;
    EXPECT_NE(Sh("zstd -t " + Quote(Image(g))).exit_code, 0);
  }
  // compact: a plain image of the newest link, copied from the chain.
  std::string plain = dir_.File("plain.zst");
  RunOk(Hotsnap("compact " + Quote(Image(2)) + " -o " + Quote(plain)));
  RunOk("zstd -q -t " + Quote(plain));
  CommandResult a = RunOk("zstd -dc " + Quote(plain) + " | sha256sum");
  CommandResult b = RunOk("sha256sum < " + Quote(Restored(2)));
  EXPECT_EQ(a.out, b.out) << "zstd -dc of the compacted image differs from the delta's restore";
  RunOk(Hotsnap("verify " + Quote(plain) + " --no-progress"));
  // cat of the newest delta is its restore; mount shows the files of its moment.
  CommandResult c = RunOk(Hotsnap("cat " + Quote(Image(2))) + " | sha256sum");
  EXPECT_EQ(c.out, b.out) << "cat of the delta differs from its restore";
  const std::string at = dir_.File("mounted"), ref_mnt = dir_.File("ref-mnt");
  RunOk("mkdir -p " + Quote(at) + " " + Quote(ref_mnt));
  RunOk(Hotsnap("mount " + Quote(Image(2)) + " " + Quote(at)));
  const Region& r = layout_.regions[0];
  const std::string sub = layout_.sfdisk.empty() ? at : at + "/p1";
  RunOk("mount -o " + std::string(r.fs_type == "ext4" ? "ro,loop,noload" : "ro,loop,norecovery,nouuid") +
        ",offset=" + std::to_string(r.offset) + ",sizelimit=" + std::to_string(r.bytes) + " " +
        Quote(Reference(2)) + " " + Quote(ref_mnt));
  CommandResult diff = Sh("diff -r " + Quote(ref_mnt) + " " + Quote(sub));
  EXPECT_EQ(diff.exit_code, 0) << "the mounted delta's files differ from its moment's\n" << diff.out << diff.err;
  RunOk("umount " + Quote(ref_mnt));
  RunOk(Hotsnap("umount " + Quote(at)));
}

TEST_P(DeltaChainTest, VerifyAndRestoreNameACorruptSwappedOrMissingParent) {
  BackUpThreeGenerations();
  RunOk(Hotsnap("verify " + Quote(Image(2)) + " --no-progress"));
  const std::string g0 = Image(0), saved = dir_.File("g0.saved");
  RunOk("cp " + Quote(g0) + " " + Quote(saved));

  // Corrupt: a byte of a chunk frame of the full image that the newest delta still takes
  // from it (neither delta holds the chunk) and that is not all zeros (those are served from
  // the trailer's hash alone).
  auto index_of = [](const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    auto index = LoadImageIndex(fd.get(), path);
    EXPECT_TRUE(index.ok()) << index.status().message();
    return index.ok() ? std::move(index.value()) : ImageIndex{};
  };
  ImageIndex i0 = index_of(g0), i1 = index_of(Image(1)), i2 = index_of(Image(2));
  ASSERT_EQ(i2.meta.layout, Layout::kDelta);
  uint64_t victim = UINT64_MAX;
  for (uint64_t c = 0; c < i0.meta.chunk_count() && victim == UINT64_MAX; ++c) {
    if (!i1.HasFrame(c) && !i2.HasFrame(c) &&
        !(i0.trailer.chunk_hashes[c] == HashZeros(i0.meta.ChunkLength(c)))) {
      victim = c;
    }
  }
  ASSERT_NE(victim, UINT64_MAX) << "no data chunk of the full image is left to it by both deltas";
  testing::FlipByteInChunkFrame(g0, victim);
  CommandResult v = Sh(Hotsnap("verify " + Quote(Image(2)) + " --no-progress"));
  EXPECT_EQ(v.exit_code, 5) << v.err;
  EXPECT_NE(v.err.find("g0.zst"), std::string::npos) << v.err;
  CommandResult r = Sh(Hotsnap("restore " + Quote(Image(2)) + " " + Quote(dir_.File("out.img")) +
                               " --no-progress"));
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("g0.zst"), std::string::npos) << r.err;
  EXPECT_FALSE(testing::PathExists(dir_.File("out.img"))) << "a failed restore published its target";

  // Swapped: another image under the parent's name (a full backup of the source now).
  RunOk(Hotsnap("backup " + Quote(source_) + " -o " + Quote(g0) +
                " --overwrite --snapshot none --level 1 --no-progress"));
  v = Sh(Hotsnap("verify " + Quote(Image(2)) + " --no-progress"));
  EXPECT_EQ(v.exit_code, 5) << v.err;
  EXPECT_NE(v.err.find("g0.zst"), std::string::npos) << v.err;
  EXPECT_NE(v.err.find("replaced or altered"), std::string::npos) << v.err;

  // Missing.
  RunOk("rm " + Quote(g0));
  v = Sh(Hotsnap("verify " + Quote(Image(2)) + " --no-progress"));
  EXPECT_EQ(v.exit_code, 5) << v.err;
  EXPECT_NE(v.err.find("g0.zst"), std::string::npos) << v.err;
  EXPECT_NE(v.err.find("missing"), std::string::npos) << v.err;
  CommandResult info = Sh(Hotsnap("info " + Quote(Image(2))));
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("BROKEN"), std::string::npos) << info.out;

  // Renamed into another directory: found with --chain, by its recorded name.
  RunOk("mkdir -p " + Quote(dir_.File("elsewhere")) + " && cp " + Quote(saved) + " " +
        Quote(dir_.File("elsewhere/g0.zst")) + " && mv " + Quote(Image(1)) + " " +
        Quote(dir_.File("elsewhere/g1.zst")));
  RunOk(Hotsnap("verify " + Quote(Image(2)) + " --chain " + Quote(dir_.File("elsewhere")) + " --no-progress"));
  // And by its hash when renamed.
  RunOk("mv " + Quote(dir_.File("elsewhere/g0.zst")) + " " + Quote(dir_.File("elsewhere/monday.zst")));
  RunOk(Hotsnap("restore " + Quote(Image(2)) + " " + Quote(Restored(2)) + " --chain " +
                Quote(dir_.File("elsewhere")) + " --no-progress"));
  ExpectEqualsReference(Restored(2), 2);
}

INSTANTIATE_TEST_SUITE_P(Sources, DeltaChainTest, ::testing::Values("ext4", "xfs", "gpt"));

}  // namespace
}  // namespace hotsnap
