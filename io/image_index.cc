#include "io/image_index.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace hotsnap {
namespace {

Status Corrupt(const std::string& name, const std::string& what) {
  return Status(Code::kIntegrity, "image " + name + ": " + what);
}

}  // namespace

Status ReadExactAt(int fd, const std::string& name, uint64_t offset, void* dst, size_t bytes) {
  auto* p = static_cast<uint8_t*>(dst);
  while (bytes > 0) {
    ssize_t n = ::pread(fd, p, bytes, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(Code::kSource, errno, "reading image " + name + " at offset " +
                                                         std::to_string(offset));
    }
    if (n == 0) return Corrupt(name, "ends before offset " + std::to_string(offset + bytes));
    p += n;
    offset += static_cast<uint64_t>(n);
    bytes -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<ImageIndex> LoadImageIndex(int fd, const std::string& name) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno(Code::kSource, errno, "stat " + name);
  ImageIndex index;
  index.image_bytes = static_cast<uint64_t>(st.st_size);
  if (index.image_bytes < kSkippableHeaderBytes * 3 + kSeekFooterBytes) {
    return Corrupt(name, "is too short (" + std::to_string(index.image_bytes) + " bytes) to be an image");
  }

  // Footer → seek table.
  std::vector<uint8_t> footer(kSeekFooterBytes);
  HOTSNAP_RETURN_IF_ERROR(
      ReadExactAt(fd, name, index.image_bytes - kSeekFooterBytes, footer.data(), footer.size()));
  auto table_bytes = SeekTableFrameBytes(footer);
  if (!table_bytes.ok()) return table_bytes.status().Wrap("image " + name);
  if (*table_bytes > index.image_bytes) return Corrupt(name, "seek table is larger than the file");
  index.seek_table_offset = index.image_bytes - *table_bytes;
  std::vector<uint8_t> table(*table_bytes);
  HOTSNAP_RETURN_IF_ERROR(ReadExactAt(fd, name, index.seek_table_offset, table.data(), table.size()));
  auto entries = DecodeSeekTableFrame(table);
  if (!entries.ok()) return entries.status().Wrap("image " + name);
  index.entries = std::move(entries.value());
  if (index.entries.size() < 2) return Corrupt(name, "seek table has fewer than 2 entries");

  // The frames the seek table lists must exactly fill the file up to the seek table.
  uint64_t sum = 0;
  for (const SeekEntry& e : index.entries) sum += e.compressed_bytes;
  if (sum != index.seek_table_offset) {
    return Corrupt(name, "seek table frame sizes add up to " + std::to_string(sum) +
                             " bytes, but it starts at offset " +
                             std::to_string(index.seek_table_offset));
  }
  index.metadata_frame_bytes = index.entries.front().compressed_bytes;
  index.trailer_offset = index.seek_table_offset - index.entries.back().compressed_bytes;

  // Metadata frame at offset 0.
  if (index.metadata_frame_bytes < kSkippableHeaderBytes ||
      index.metadata_frame_bytes > kSkippableHeaderBytes + kMaxMetadataPayloadBytes) {
    return Corrupt(name, "seek table gives the metadata frame an impossible size");
  }
  std::vector<uint8_t> meta(index.metadata_frame_bytes);
  HOTSNAP_RETURN_IF_ERROR(ReadExactAt(fd, name, 0, meta.data(), meta.size()));
  if (LoadLe32(meta.data()) != kMetadataMagic ||
      LoadLe32(meta.data() + 4) != meta.size() - kSkippableHeaderBytes) {
    return Corrupt(name, "does not start with a hotsnap metadata frame");
  }
  auto decoded = DecodeMetadataPayload(std::span<const uint8_t>(meta).subspan(kSkippableHeaderBytes));
  if (!decoded.ok()) return decoded.status().Wrap("image " + name);
  index.meta = std::move(decoded.value());

  uint64_t chunks = index.meta.chunk_count();
  if (index.entries.size() != chunks + 2) {
    return Corrupt(name, "seek table has " + std::to_string(index.entries.size()) +
                             " entries; the metadata's device size needs " +
                             std::to_string(chunks + 2));
  }

  // Trailer.
  uint64_t trailer_bytes = index.entries.back().compressed_bytes;
  uint64_t trailer_max = kSkippableHeaderBytes + 80 + chunks * 16;
  if (trailer_bytes < kSkippableHeaderBytes || trailer_bytes > trailer_max) {
    return Corrupt(name, "seek table gives the trailer an impossible size");
  }
  std::vector<uint8_t> trailer(trailer_bytes);
  HOTSNAP_RETURN_IF_ERROR(ReadExactAt(fd, name, index.trailer_offset, trailer.data(), trailer.size()));
  if (LoadLe32(trailer.data()) != kTrailerMagic ||
      LoadLe32(trailer.data() + 4) != trailer.size() - kSkippableHeaderBytes) {
    return Corrupt(name, "no trailer frame at offset " + std::to_string(index.trailer_offset));
  }
  auto t = DecodeTrailerPayload(std::span<const uint8_t>(trailer).subspan(kSkippableHeaderBytes));
  if (!t.ok()) return t.status().Wrap("image " + name);
  index.trailer = std::move(t.value());
  if (index.trailer.device_bytes != index.meta.device_bytes ||
      index.trailer.chunk_bytes != index.meta.chunk_bytes) {
    return Corrupt(name, "trailer and metadata disagree on the device geometry");
  }

  index.chunk_offsets.reserve(chunks);
  uint64_t offset = index.metadata_frame_bytes;
  for (uint64_t i = 0; i < chunks; ++i) {
    const SeekEntry& e = index.entries[i + 1];
    if (e.decompressed_bytes != index.meta.ChunkLength(i)) {
      return Corrupt(name, "seek table entry for chunk " + std::to_string(i) + " declares " +
                               std::to_string(e.decompressed_bytes) + " bytes, expected " +
                               std::to_string(index.meta.ChunkLength(i)));
    }
    index.chunk_offsets.push_back(offset);
    offset += e.compressed_bytes;
  }
  if (index.entries.front().decompressed_bytes != 0 || index.entries.back().decompressed_bytes != 0) {
    return Corrupt(name, "seek table gives a skippable frame a decompressed size");
  }
  return index;
}

}  // namespace hotsnap
