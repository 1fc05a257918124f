#include "agent/image_jobs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "agent/events.h"
#include "agent/progress.h"
#include "agent/used_map.h"
#include "io/image_scanner.h"

namespace hotsnap {

Result<OpenedImage> OpenImage(const std::string& path, const std::vector<std::string>& ssh_options) {
  OpenedImage image;
  if (IsSshUrl(path)) {
    auto url = ParseSshUrl(path);
    if (!url.ok()) return url.status();
    auto stream = SshImageStream::Open(*url, SshOptions{ssh_options});
    if (!stream.ok()) return stream.status();
    image.name = path;
    image.remote = std::move(stream.value());
    image.fd = image.remote->fd();
    return image;
  }
  if (path == "-") {
    if (::isatty(STDIN_FILENO)) {
      return Status(Code::kUsage, "image '-' means stdin, but stdin is a terminal; pipe an image in");
    }
    image.name = "stdin";
    image.fd = STDIN_FILENO;
    return image;
  }
  image.name = path;
  image.owned_fd.Reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!image.owned_fd.valid()) return Status::FromErrno(Code::kSource, errno, "opening image " + path);
  image.fd = image.owned_fd.get();
  struct stat st;
  if (::fstat(image.fd, &st) != 0) return Status::FromErrno(Code::kSource, errno, "stat " + path);
  if (S_ISDIR(st.st_mode)) return Status(Code::kSource, "image " + path + " is a directory");
  if (S_ISREG(st.st_mode)) {
    auto index = LoadImageIndex(image.fd, path);
    if (!index.ok()) return index.status();
    image.index = std::move(index.value());
  }
  return image;
}

Status ExplainImageReadFailure(OpenedImage& image, const Status& status) {
  if (!image.remote) return status;
  return image.remote->ExplainReadFailure(status);
}

std::string DescribeSource(const ImageMetadata& m) {
  std::string s = "image of " + m.source_path + " (" + HumanBytes(m.device_bytes) + ", " +
                  std::to_string(m.device_bytes) + " bytes, " +
                  std::to_string(m.logical_sector_bytes) + "-byte sectors)";
  if (!m.fs_type.empty()) {
    s += ", " + m.fs_type;
    if (!m.fs_label.empty()) s += " label '" + m.fs_label + "'";
    if (!m.fs_uuid.empty()) s += " UUID " + m.fs_uuid;
  }
  s += ", taken on " + (m.host.empty() ? std::string("?") : m.host) + " at " + m.created_utc +
       " (snapshot " + m.snapshot_mode + ", hotsnap " + m.tool_version + ")";
  return s;
}

namespace {

class ProgressVisitor : public ScanVisitor {
 public:
  explicit ProgressVisitor(bool enabled) : enabled_(enabled) {}
  Status OnMetadata(const ImageMetadata& meta) override {
    line_.emplace("verify", meta.device_bytes, enabled_);
    return Status::Ok();
  }
  Status OnChunk(uint64_t, uint64_t offset, std::span<const uint8_t> data, bool) override {
    line_->Update(offset + data.size(), 0);
    return Status::Ok();
  }

 private:
  bool enabled_;
  std::optional<ProgressLine> line_;
};

}  // namespace

namespace {

// Every image of a delta's chain, read in full (each checked against its own trailer), after
// ImageChain checked the links against each other.
Result<VerifyReport> VerifyChain(const std::string& path, bool progress, const ChainOptions& options,
                                 std::chrono::steady_clock::time_point started) {
  auto chain = ImageChain::Open(path, options);
  if (!chain.ok()) return chain.status();
  EmitPhase("scan");
  VerifyReport r;
  for (const ChainLink& link : chain->links()) {
    ProgressVisitor visitor(progress);
    auto scan = ScanImage(link.fd.get(), link.path, &link.index.trailer, &visitor);
    if (!scan.ok()) {
      return link.path == path ? scan.status()
                               : scan.status().Wrap("parent " + link.path + " of " + path);
    }
    r.image_bytes += scan->image_bytes;
    r.chain.push_back(link.path);
  }
  const ImageIndex& newest = chain->newest();
  r.meta = newest.meta;
  r.chunks = newest.meta.chunk_count();
  for (uint64_t i = 0; i < r.chunks; ++i) {
    if (newest.trailer.chunk_hashes[i] == HashZeros(newest.meta.ChunkLength(i))) ++r.zero_chunks;
  }
  r.image_hash = newest.trailer.image_hash;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return r;
}

}  // namespace

Result<VerifyReport> RunVerify(const std::string& path, bool progress,
                               const std::vector<std::string>& ssh_options, const ChainOptions& chain) {
  auto started = std::chrono::steady_clock::now();
  EmitPhase("open");
  auto image = OpenImage(path, ssh_options);
  if (!image.ok()) return image.status();
  if (image->index && image->index->meta.layout == Layout::kDelta) {
    return VerifyChain(path, progress, chain, started);
  }
  EmitPhase("scan");
  ProgressVisitor visitor(progress);
  const Trailer* expected = image->index ? &image->index->trailer : nullptr;
  auto scan = ScanImage(image->fd, image->name, expected, &visitor);
  if (!scan.ok()) return ExplainImageReadFailure(image.value(), scan.status());
  VerifyReport r;
  r.meta = scan->meta;
  r.image_bytes = scan->image_bytes;
  r.chunks = scan->meta.chunk_count();
  r.zero_chunks = scan->zero_chunks;
  r.image_hash = scan->trailer.image_hash;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return r;
}

Result<std::string> DescribeImage(const std::string& path, bool json,
                                  const std::vector<std::string>& ssh_options,
                                  const ChainOptions& chain_options) {
  auto image = OpenImage(path, ssh_options);
  if (!image.ok()) return image.status();
  ImageMetadata meta;
  Trailer trailer;
  RunReport report;
  uint64_t image_bytes = 0;
  std::optional<uint64_t> zero_chunks;
  bool verified = false;
  if (image->index) {
    meta = image->index->meta;
    trailer = image->index->trailer;
    report = image->index->report;
    image_bytes = image->index->image_bytes;
  } else {
    // A stream has no end to seek to: read it all, which also verifies it.
    auto scan = ScanImage(image->fd, image->name, nullptr, nullptr);
    if (!scan.ok()) return ExplainImageReadFailure(image.value(), scan.status());
    meta = scan->meta;
    trailer = scan->trailer;
    report = scan->report;
    image_bytes = scan->image_bytes;
    zero_chunks = scan->zero_chunks;
    verified = true;
  }
  double ratio = image_bytes ? static_cast<double>(meta.device_bytes) / image_bytes : 0;
  // A delta from a file: is its chain complete? (Only the images' tails are read.)
  std::vector<std::string> chain_paths;
  std::string chain_error;
  if (meta.layout == Layout::kDelta && image->index) {
    auto chain = ImageChain::Open(path, chain_options);
    if (chain.ok()) {
      for (const ChainLink& link : chain->links()) chain_paths.push_back(link.path);
    } else {
      chain_error = chain.status().message();
    }
  }
  if (json) {
    nlohmann::ordered_json j;
    j["image"] = image->name;
    j["format_version"] = meta.format_version;
    j["source_path"] = meta.source_path;
    j["device_bytes"] = meta.device_bytes;
    j["logical_sector_bytes"] = meta.logical_sector_bytes;
    j["fs_type"] = meta.fs_type;
    j["fs_uuid"] = meta.fs_uuid;
    j["fs_label"] = meta.fs_label;
    j["host"] = meta.host;
    j["created_utc"] = meta.created_utc;
    if (!meta.run_id.empty()) j["run_id"] = meta.run_id;
    j["snapshot_mode"] = meta.snapshot_mode;
    j["tool_version"] = meta.tool_version;
    j["zstd_level"] = meta.level;
    j["chunk_bytes"] = meta.chunk_bytes;
    j["chunks"] = meta.chunk_count();
    if (zero_chunks) j["zero_chunks"] = *zero_chunks;
    j["used_bytes"] = meta.used_bytes;
    j["used_map"] = meta.used_map;
    j["used_ratio"] = meta.device_bytes ? double(meta.used_bytes) / meta.device_bytes : 0;
    if (!meta.partition_table.empty()) {
      j["partition_table"] = EncodePartitionTable(meta.partition_table);
    }
    j["image_bytes"] = image_bytes;
    j["compression_ratio"] = ratio;
    j["image_hash"] = trailer.image_hash.Hex();
    j["layout"] = LayoutName(meta.layout);
    if (meta.kept_snapshot) {
      j["kept_snapshot"] = {{"vg", meta.kept_snapshot->vg},
                            {"lv", meta.kept_snapshot->lv},
                            {"run_id", meta.kept_snapshot->run_id}};
    }
    if (meta.base) {
      j["base"] = {{"image", meta.base->image},
                   {"image_hash", meta.base->image_hash.Hex()},
                   {"created_utc", meta.base->created_utc}};
      j["changed_chunks"] = report.changed_chunks;
      j["unchanged_chunks"] = report.unchanged_chunks;
      j["change_source"] = report.change_source;
      j["change_reason"] = report.change_reason;
      if (image->index) {
        j["chain"] = chain_paths;
        if (!chain_error.empty()) j["chain_error"] = chain_error;
      }
    }
    if (!meta.stands_for.empty()) {
      auto& list = j["stands_for"] = nlohmann::ordered_json::array();
      for (const Hash128& h : meta.stands_for) list.push_back(h.Hex());
    }
    j["freeze_ms"] = report.freeze_ms;
    j["rounds"] = report.rounds;
    j["recopied_bytes"] = report.recopied_bytes;
    j["final_capture_bytes"] = report.final_capture_bytes;
    j["lost_write_records"] = report.lost_events;
    j["consistent_used_bytes"] = report.used_bytes;
    if (!report.used_map.empty()) j["consistent_used_map"] = report.used_map;
    j["backup_seconds"] = report.seconds;
    j["crash_consistent"] = report.crash_consistent;
    j["verified"] = verified;
    return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  char ratio_text[32];
  std::snprintf(ratio_text, sizeof(ratio_text), "%.2f", ratio);
  std::string out;
  out += "image:          " + image->name + "\n";
  out += "source:         " + meta.source_path + "\n";
  out += "device size:    " + HumanBytes(meta.device_bytes) + " (" + std::to_string(meta.device_bytes) + " bytes)\n";
  char used_pct[32];
  std::snprintf(used_pct, sizeof(used_pct), "%.1f%%",
                meta.device_bytes ? 100.0 * meta.used_bytes / meta.device_bytes : 0.0);
  out += "used:           " + HumanBytes(meta.used_bytes) + " (" + std::to_string(meta.used_bytes) +
         " bytes, " + used_pct + " of the device, from " + meta.used_map + ")\n";
  if (!report.used_map.empty()) {
    out += "used at the end: " + HumanBytes(report.used_bytes) + " (" +
           std::to_string(report.used_bytes) + " bytes, at the final freeze, from " +
           report.used_map + ")\n";
  }
  out += "sector size:    " + std::to_string(meta.logical_sector_bytes) + " bytes\n";
  out += "filesystem:     " + (meta.fs_type.empty() ? std::string("(none found)") : meta.fs_type) + "\n";
  if (!meta.fs_uuid.empty()) out += "fs UUID:        " + meta.fs_uuid + "\n";
  if (!meta.fs_label.empty()) out += "fs label:       " + meta.fs_label + "\n";
  if (!meta.partition_table.empty()) {
    const ImagePartitionTable& table = meta.partition_table;
    out += "partitions:     " + table.type + " table" +
           (table.uuid.empty() ? std::string() : " " + table.uuid) + ", " +
           std::to_string(table.partitions.size()) + " partitions\n";
    out += FormatPartitionLines(table, "  ");
  }
  out += "host:           " + meta.host + "\n";
  out += "created:        " + meta.created_utc + "\n";
  if (!meta.run_id.empty()) out += "run id:         " + meta.run_id + " (one of a set: manifest.json)\n";
  out += "snapshot mode:  " + meta.snapshot_mode + "\n";
  if (meta.kept_snapshot) {
    out += "kept snapshot:  " + meta.kept_snapshot->vg + "/" + meta.kept_snapshot->lv + " (run " +
           meta.kept_snapshot->run_id + "; the parent's moment for a thin_delta delta)\n";
  }
  out += "tool version:   " + meta.tool_version + "\n";
  out += "zstd level:     " + std::to_string(meta.level) + "\n";
  out += "chunks:         " + std::to_string(meta.chunk_count()) + " of " + HumanBytes(meta.chunk_bytes) + "\n";
  if (zero_chunks) out += "zero chunks:    " + std::to_string(*zero_chunks) + "\n";
  out += "image size:     " + HumanBytes(image_bytes) + " (" + std::to_string(image_bytes) + " bytes)\n";
  out += "ratio:          " + std::string(ratio_text) + "\n";
  out += "image hash:     xxh3-128:" + trailer.image_hash.Hex() + "\n";
  for (const std::string& c : report.crash_consistent) {
    out += "not frozen:     " + c + " (crash-consistent, --allow-crash-consistent)\n";
  }
  if (meta.layout == Layout::kDelta) {
    out += "layout:         delta (" + std::to_string(report.changed_chunks) + " of " +
           std::to_string(meta.chunk_count()) + " chunks stored, the rest are the parent's; changes by " +
           report.change_source + "); stock zstd refuses it: restore with hotsnap, or make a full "
           "image with 'hotsnap compact'\n";
    out += "parent:         " + meta.base->image + " (image hash xxh3-128:" + meta.base->image_hash.Hex() +
           (meta.base->created_utc.empty() ? "" : ", created " + meta.base->created_utc) + ")\n";
    if (!chain_paths.empty()) {
      std::string links;
      for (const std::string& p : chain_paths) links += (links.empty() ? "" : " <- ") + p;
      out += "chain:          " + std::to_string(chain_paths.size()) + " images, all found: " + links + "\n";
    } else if (!chain_error.empty()) {
      out += "chain:          BROKEN: " + chain_error + "\n";
    }
  } else if (meta.layout == Layout::kTracked) {
    out += "layout:         tracked (" + std::to_string(report.rounds) + " rounds, " +
           HumanBytes(report.recopied_bytes) + " re-copied, " + HumanBytes(report.final_capture_bytes) +
           " read under the final freeze); stock zstd refuses it: restore with "
           "hotsnap, or make a plain image with 'hotsnap compact'\n";
  } else {
    out += "layout:         plain (zstd -dc IMAGE restores the device)\n";
  }
  for (const Hash128& h : meta.stands_for) {
    out += "stands for:     xxh3-128:" + h.Hex() + " (a delta merged into this image: its children take this one as their parent)\n";
  }
  if (!report.freeze_ms.empty()) {
    std::string windows;
    for (int64_t ms : report.freeze_ms) windows += (windows.empty() ? "" : ", ") + std::to_string(ms) + " ms";
    out += "freezes:        " + windows + "\n";
  }
  out += std::string("verified:       ") + (verified ? "yes (read in full)" : "no (run hotsnap verify)") + "\n";
  return out;
}

}  // namespace hotsnap
