// Delta backups over ssh (`backup --base ssh://... -o ssh://...`), against a real sshd on
// 127.0.0.1 (tests/ssh_server.h). The parent's index is read in ranges over one session and
// the delta image is streamed up; the "remote" directory is on this machine, so the tests
// look at both images directly.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "io/ranged_reader.h"
#include "io/ssh_ranged_reader.h"
#include "io/ssh_remote.h"
#include "tests/json_schema.h"
#include "tests/ssh_server.h"
#include "tests/test_util.h"

namespace hotsnap::testing {
namespace {

constexpr uint64_t kChunk = 4u << 20;
constexpr uint64_t kChunks = 16;

JsonSchema LoadSchema() {
  std::ifstream in(std::string(HOTSNAP_SOURCE_DIR) + "/docs/events.schema.json");
  EXPECT_TRUE(in.good()) << "docs/events.schema.json not found under " << HOTSNAP_SOURCE_DIR;
  return JsonSchema(nlohmann::json::parse(in));
}

// The `result` event of an events file, checked against the schema; null if there is none.
nlohmann::json ResultEvent(const std::string& path) {
  JsonSchema schema = LoadSchema();
  std::istringstream lines(ReadAll(path));
  nlohmann::json result;
  for (std::string line; std::getline(lines, line);) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
    if (j.is_discarded()) continue;
    EXPECT_EQ(schema.Validate(j), "") << "event does not match the schema: " << line;
    if (j.value("event", "") == "result") result = j;
  }
  return result;
}

class SshDeltaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HOTSNAP_REQUIRE_PRIVILEGED();
    std::string problem = SshToolsProblem();
    if (!problem.empty()) {
      if (InCi()) FAIL() << "CI=true but " << problem;
      GTEST_SKIP() << problem;
    }
    server_ = std::make_unique<SshServer>(dir_.File(""));
    remote_ = dir_.File("remote");
    RunOk("mkdir -p " + Quote(remote_));
    source_ = dir_.File("disk.img");
    RunOk("truncate -s " + std::to_string(kChunks * kChunk) + " " + Quote(source_));
    FillMixedChunks(source_, kChunks * kChunk);
  }
  std::string Backup(const std::string& args) {
    return Hotsnap("backup " + Quote(source_) + " " + args + server_->Options());
  }
  // A full backup of the source as it is now to the remote directory.
  void FullBackup(const std::string& name) {
    RunOk(Backup("-o " + Quote(server_->Url(remote_ + "/" + name))));
  }

  TempDir dir_;
  std::unique_ptr<SshServer> server_;
  std::string remote_;
  std::string source_;
};

TEST_F(SshDeltaTest, DeltaReadsOnlyTheParentsTailAndSendsOnlyTheChangedChunks) {
  FullBackup("full.zst");
  const uint64_t parent_bytes = SizeOf(remote_ + "/full.zst");
  ASSERT_GT(parent_bytes, 2 * kChunk) << "the parent must be large for the share to mean much";
  // Change two of the sixteen chunks: 1 (text) and 9 (1 MiB random, then zeros).
  FillRegion(source_, 1 * kChunk + 4096, 64 * 1024);
  FillRegion(source_, 9 * kChunk + 2 * 1024 * 1024, 8192);
  const std::string events = dir_.File("delta.jsonl");
  CommandResult delta = RunOk(Backup("-o " + Quote(server_->Url(remote_ + "/d1.zst")) + " --base " +
                                     Quote(server_->Url(remote_ + "/full.zst")) +
                                     " --events-fd 3 3>" + Quote(events)));
  ASSERT_EQ(delta.exit_code, 0) << delta.err;

  // The parent's index came over ssh: a tiny share of it, said in the notice and the event.
  std::smatch m;
  ASSERT_TRUE(std::regex_search(delta.err, m,
                                std::regex("read ([0-9]+) bytes of the parent's tail over ssh")))
      << delta.err;
  const uint64_t tail_bytes = std::stoull(m[1]);
  EXPECT_GT(tail_bytes, 9u);
  EXPECT_LT(tail_bytes * 100, parent_bytes) << tail_bytes << " of " << parent_bytes << " bytes";
  nlohmann::json result = ResultEvent(events);
  ASSERT_TRUE(result.is_object()) << ReadAll(events);
  EXPECT_EQ(result.value("base_ssh_bytes_read", uint64_t{0}), tail_bytes);
  EXPECT_EQ(result.value("base_image_bytes", uint64_t{0}), parent_bytes);
  EXPECT_EQ(result.value("changed_chunks", uint64_t{0}), 2u);
  EXPECT_EQ(result.value("unchanged_chunks", uint64_t{0}), kChunks - 2);

  // What went up is the delta image and nothing more: the bytes the writer sent are the
  // remote file's size, and its chunk frames are the two changed chunks, byte for byte the
  // frames a full backup of the same state holds.
  const uint64_t delta_bytes = SizeOf(remote_ + "/d1.zst");
  EXPECT_EQ(result.value("image_bytes", uint64_t{0}), delta_bytes);
  FullBackup("full2.zst");
  std::vector<ImageFrameSpan> full2 = SplitImageFrames(ReadAll(remote_ + "/full2.zst"));
  ASSERT_EQ(full2.size(), kChunks + 4) << "metadata, 16 chunks, report, trailer, seek table";
  const uint64_t changed_frames = full2[1 + 1].bytes + full2[1 + 9].bytes;
  uint64_t delta_chunk_frames = 0;
  // After the 13-byte guard frame, which libzstd refuses by design.
  for (const ImageFrameSpan& f : SplitImageFrames(ReadAll(remote_ + "/d1.zst").substr(13))) {
    if (f.magic == 0xFD2FB528u) delta_chunk_frames += f.bytes;
  }
  EXPECT_EQ(delta_chunk_frames, changed_frames);
  EXPECT_LT(delta_bytes, changed_frames + 64 * 1024) << "delta " << delta_bytes << " bytes";
  EXPECT_LT(delta_bytes * 4, parent_bytes);

  // The delta names its parent by file name, as a delta of a local parent does.
  CommandResult info = RunOk(Hotsnap("info " + Quote(remote_ + "/d1.zst") + " --json"));
  nlohmann::json j = nlohmann::json::parse(info.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << info.out;
  ASSERT_TRUE(j.contains("base")) << info.out;
  EXPECT_EQ(j["base"].value("image", ""), "full.zst") << info.out;

  // Fetched to another directory, the two restore to the source as it is now, as the full
  // backup of the same state does.
  std::string local = dir_.File("local");
  RunOk("mkdir " + Quote(local) + " && cp " + Quote(remote_ + "/full.zst") + " " +
        Quote(remote_ + "/d1.zst") + " " + Quote(local));
  RunOk(Hotsnap("restore " + Quote(local + "/d1.zst") + " " + Quote(dir_.File("from-delta.img"))));
  RunOk(Hotsnap("restore " + Quote(remote_ + "/full2.zst") + " " +
                Quote(dir_.File("from-full.img"))));
  EXPECT_EQ(Sha256(dir_.File("from-delta.img")), Sha256(dir_.File("from-full.img")));
  EXPECT_EQ(Sha256(dir_.File("from-delta.img")), Sha256(source_));
}

TEST_F(SshDeltaTest, MissingOrUnreachableRemoteBaseIsASourceErrorNamingTheUrl) {
  const std::string out = dir_.File("d.zst");
  const std::string missing = server_->Url(remote_ + "/absent.zst");
  CommandResult r =
      ::hotsnap::testing::Run(Backup("-o " + Quote(out) + " --base " + Quote(missing)));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No such file"), std::string::npos) << r.err;
  EXPECT_FALSE(PathExists(out));

  // Nothing listens on that port.
  const std::string nowhere = "ssh://root@127.0.0.1:" + std::to_string(FreePort()) + "/x.zst";
  CommandResult u =
      ::hotsnap::testing::Run(Backup("-o " + Quote(out) + " --base " + Quote(nowhere)));
  EXPECT_EQ(u.exit_code, 3) << u.err;
  EXPECT_NE(u.err.find(nowhere), std::string::npos) << u.err;
  EXPECT_FALSE(PathExists(out));
}

TEST_F(SshDeltaTest, DamagedRemoteBaseIsAnIntegrityErrorNamingTheUrl) {
  FullBackup("full.zst");
  const std::string out = dir_.File("d.zst");
  // The seek table's footer magic (the image's last four bytes).
  RunOk("cp " + Quote(remote_ + "/full.zst") + " " + Quote(remote_ + "/footer.zst"));
  FlipByte(remote_ + "/footer.zst", SizeOf(remote_ + "/footer.zst") - 2);
  const std::string footer = server_->Url(remote_ + "/footer.zst");
  CommandResult r =
      ::hotsnap::testing::Run(Backup("-o " + Quote(out) + " --base " + Quote(footer)));
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find(footer), std::string::npos) << r.err;
  EXPECT_FALSE(PathExists(out));

  // Truncated by a few bytes: the footer is not where it should be.
  RunOk("head -c -3 " + Quote(remote_ + "/full.zst") + " > " + Quote(remote_ + "/short.zst"));
  const std::string short_url = server_->Url(remote_ + "/short.zst");
  CommandResult s =
      ::hotsnap::testing::Run(Backup("-o " + Quote(out) + " --base " + Quote(short_url)));
  EXPECT_EQ(s.exit_code, 5) << s.err;
  EXPECT_NE(s.err.find(short_url), std::string::npos) << s.err;
  EXPECT_FALSE(PathExists(out));
}

// The reader on its own: the same bytes as the local file, at the offsets asked for, and a
// range past the end is kIntegrity like a local file's.
TEST_F(SshDeltaTest, RangedReaderReturnsTheFilesBytes) {
  const std::string file = remote_ + "/blob";
  FillRegion(file, 0, 3 * 65536 + 17);
  auto url = ParseSshUrl(server_->Url(file));
  ASSERT_TRUE(url.ok());
  SshOptions options;
  for (const char* o : {"UserKnownHostsFile=", "IdentityFile="}) {
    options.options.push_back(std::string(o) + server_->File(o[0] == 'U' ? "known_hosts" : "id"));
  }
  options.options.push_back("GlobalKnownHostsFile=/dev/null");
  options.options.push_back("IdentitiesOnly=yes");
  auto remote = SshRangedReader::Open(*url, options);
  ASSERT_TRUE(remote.ok()) << remote.status().message();
  ASSERT_EQ((*remote)->size_bytes(), SizeOf(file));
  const std::string all = ReadAll(file);
  for (auto [offset, bytes] : std::vector<std::pair<uint64_t, size_t>>{
           {0, 1}, {0, 9}, {65535, 2}, {all.size() - 9, 9}, {100, all.size() - 100}, {5, 70000}}) {
    std::string got(bytes, '\0');
    Status st = (*remote)->Read(offset, bytes, got.data());
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(got, all.substr(offset, bytes)) << "at " << offset << ", " << bytes << " bytes";
  }
  std::string sink(128, '\0');
  Status past = (*remote)->Read(all.size() - 8, 16, sink.data());
  EXPECT_EQ(past.code(), Code::kIntegrity) << past.message();
  // The session still works after a refused range, and counted what arrived.
  Status again = (*remote)->Read(0, 4, sink.data());
  EXPECT_TRUE(again.ok()) << again.message();
  EXPECT_GT((*remote)->bytes_received(), all.size());
  EXPECT_LT((*remote)->bytes_received(), 3 * all.size());

  // A file that shrinks between ranges fails the next read (kSource), it is not padded.
  RunOk("truncate -s 1000 " + Quote(file));
  Status shrunk = (*remote)->Read(2000, 100, sink.data());
  EXPECT_EQ(shrunk.code(), Code::kSource) << shrunk.message();
  EXPECT_NE(shrunk.message().find("changed while it was read"), std::string::npos)
      << shrunk.message();
}

}  // namespace
}  // namespace hotsnap::testing
