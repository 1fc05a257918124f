#include "io/image_index.h"

namespace hotsnap {
namespace {

Status Corrupt(const std::string& name, const std::string& what) {
  return Status(Code::kIntegrity, "image " + name + ": " + what);
}

// Reads the skippable frame of `bytes` at `offset` (whose size the seek table gives) and
// checks its magic and size field; returns its payload.
Result<std::vector<uint8_t>> ReadSkippable(RangedReader& file, const std::string& name,
                                           uint64_t offset, uint64_t bytes, uint64_t max_bytes,
                                           uint32_t magic, const char* what) {
  if (bytes < kSkippableHeaderBytes || bytes > max_bytes) {
    return Corrupt(name, std::string("seek table gives the ") + what + " an impossible size");
  }
  std::vector<uint8_t> frame(bytes);
  HOTSNAP_RETURN_IF_ERROR(file.Read(offset, frame.size(), frame.data()));
  if (LoadLe32(frame.data()) != magic || LoadLe32(frame.data() + 4) != bytes - kSkippableHeaderBytes) {
    return Corrupt(name, std::string("no ") + what + " frame at offset " + std::to_string(offset));
  }
  frame.erase(frame.begin(), frame.begin() + kSkippableHeaderBytes);
  return frame;
}

}  // namespace

Result<ImageIndex> LoadImageIndex(int fd, const std::string& name) {
  auto file = FdRangedReader::Open(fd, name);
  if (!file.ok()) return file.status();
  return LoadImageIndex(*file, name);
}

Result<ImageIndex> LoadImageIndex(RangedReader& file, const std::string& name) {
  ImageIndex index;
  index.image_bytes = file.size_bytes();
  if (index.image_bytes < kSkippableHeaderBytes * 4 + kSeekFooterBytes) {
    return Corrupt(name, "is too short (" + std::to_string(index.image_bytes) + " bytes) to be an image");
  }

  // Footer → seek table.
  std::vector<uint8_t> footer(kSeekFooterBytes);
  HOTSNAP_RETURN_IF_ERROR(
      file.Read(index.image_bytes - kSeekFooterBytes, footer.size(), footer.data()));
  auto table_bytes = SeekTableFrameBytes(footer);
  if (!table_bytes.ok()) return table_bytes.status().Wrap("image " + name);
  if (*table_bytes > index.image_bytes) return Corrupt(name, "seek table is larger than the file");
  index.seek_table_offset = index.image_bytes - *table_bytes;
  std::vector<uint8_t> table(*table_bytes);
  HOTSNAP_RETURN_IF_ERROR(file.Read(index.seek_table_offset, table.size(), table.data()));
  uint8_t descriptor = 0;
  auto entries = DecodeSeekTableFrame(table, &descriptor);
  if (!entries.ok()) return entries.status().Wrap("image " + name);
  index.entries = std::move(entries.value());
  bool tracked = descriptor == kSeekDescriptorTracked;
  size_t first = tracked ? 1 : 0;  // the metadata frame's entry
  if (index.entries.size() < first + 3) return Corrupt(name, "seek table has too few entries");

  // The frames the seek table lists must exactly fill the file up to the seek table.
  std::vector<uint64_t> offsets;
  offsets.reserve(index.entries.size());
  uint64_t sum = 0;
  for (const SeekEntry& e : index.entries) {
    offsets.push_back(sum);
    sum += e.compressed_bytes;
  }
  if (sum != index.seek_table_offset) {
    return Corrupt(name, "seek table frame sizes add up to " + std::to_string(sum) +
                             " bytes, but it starts at offset " +
                             std::to_string(index.seek_table_offset));
  }
  if (tracked) {
    uint8_t poison[sizeof(kPoisonFrame)];
    if (index.entries[0].compressed_bytes != sizeof(poison) || index.entries[0].decompressed_bytes != 0) {
      return Corrupt(name, "tracked or delta layout without its leading guard frame");
    }
    HOTSNAP_RETURN_IF_ERROR(file.Read(0, sizeof(poison), poison));
    if (!IsPoisonFrame(poison)) return Corrupt(name, "the leading guard frame is damaged");
  }

  // Metadata frame.
  index.metadata_offset = offsets[first];
  index.metadata_frame_bytes = index.entries[first].compressed_bytes;
  auto meta_payload = ReadSkippable(file, name, index.metadata_offset, index.metadata_frame_bytes,
                                    kSkippableHeaderBytes + kMaxMetadataPayloadBytes, kMetadataMagic,
                                    "metadata");
  if (!meta_payload.ok()) return meta_payload.status();
  auto decoded = DecodeMetadataPayload(*meta_payload);
  if (!decoded.ok()) return decoded.status().Wrap("image " + name);
  index.meta = std::move(decoded.value());
  if (HasFrameMap(index.meta.layout) != tracked) {
    return Corrupt(name, "metadata and seek table disagree on the layout");
  }
  uint64_t chunks = index.meta.chunk_count();
  const bool delta = index.meta.layout == Layout::kDelta;
  bool fits = delta ? index.entries.size() >= 4
                    : tracked ? index.entries.size() >= chunks + 4 : index.entries.size() == chunks + 3;
  if (!fits) {
    return Corrupt(name, "seek table has " + std::to_string(index.entries.size()) +
                             " entries, which does not fit the metadata's " +
                             std::to_string(chunks) + " chunks");
  }

  // Trailer (last entry) and report (the one before).
  size_t trailer_entry = index.entries.size() - 1;
  size_t report_entry = trailer_entry - 1;
  index.trailer_offset = offsets[trailer_entry];
  uint64_t trailer_max = kSkippableHeaderBytes + 96 + chunks * 20;
  auto trailer_payload = ReadSkippable(file, name, index.trailer_offset,
                                       index.entries[trailer_entry].compressed_bytes, trailer_max,
                                       kTrailerMagic, "trailer");
  if (!trailer_payload.ok()) return trailer_payload.status();
  auto t = DecodeTrailerPayload(*trailer_payload);
  if (!t.ok()) return t.status().Wrap("image " + name);
  index.trailer = std::move(t.value());
  if (index.trailer.device_bytes != index.meta.device_bytes ||
      index.trailer.chunk_bytes != index.meta.chunk_bytes || index.trailer.layout != index.meta.layout) {
    return Corrupt(name, "trailer and metadata disagree on the device geometry or layout");
  }
  auto report_payload = ReadSkippable(file, name, offsets[report_entry],
                                      index.entries[report_entry].compressed_bytes,
                                      kSkippableHeaderBytes + kMaxMetadataPayloadBytes, kReportMagic,
                                      "report");
  if (!report_payload.ok()) return report_payload.status();
  auto report = DecodeReportPayload(*report_payload);
  if (!report.ok()) return report.status().Wrap("image " + name);
  index.report = std::move(report.value());
  for (size_t e : {first, report_entry, trailer_entry}) {
    if (index.entries[e].decompressed_bytes != 0) {
      return Corrupt(name, "seek table gives a skippable frame a decompressed size");
    }
  }

  // Where each chunk's final frame is.
  index.chunk_offsets.reserve(chunks);
  index.chunk_frame_bytes.reserve(chunks);
  for (uint64_t i = 0; i < chunks; ++i) {
    size_t e = tracked ? index.trailer.final_frames[i] : first + 1 + i;
    if (delta && index.trailer.final_frames[i] == kFrameInBase) {  // the parent's chunk
      index.chunk_offsets.push_back(0);
      index.chunk_frame_bytes.push_back(0);
      continue;
    }
    if (e <= first || e >= report_entry) {
      return Corrupt(name, "trailer points chunk " + std::to_string(i) + " at seek entry " +
                               std::to_string(e) + ", outside the chunk frames");
    }
    if (index.entries[e].decompressed_bytes != index.meta.ChunkLength(i)) {
      return Corrupt(name, "seek table entry " + std::to_string(e) + " for chunk " + std::to_string(i) +
                               " declares " + std::to_string(index.entries[e].decompressed_bytes) +
                               " bytes, expected " + std::to_string(index.meta.ChunkLength(i)));
    }
    index.chunk_offsets.push_back(offsets[e]);
    index.chunk_frame_bytes.push_back(index.entries[e].compressed_bytes);
  }
  return index;
}

}  // namespace hotsnap
