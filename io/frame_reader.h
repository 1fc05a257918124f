// FrameReader: splits a sequential image stream (a file, stdin, a pipe) into frames
// without seeking.
//
// Zstd frames are delimited with ZSTD_findFrameCompressedSize over a buffered window of
// up to `max_zstd_frame_bytes`; skippable frames by their size field, which must not exceed
// the bound set for their kind (SkippableBounds, by magic). A size a header declares is only
// checked, never allocated: the buffer grows as bytes actually arrive (to at most twice the
// bytes received, 1 MiB at least), so a few-KiB stream costs about 1 MiB whatever it declares,
// and memory is bounded by the largest frame present. Spans returned by Next() stay valid
// until the next call. Single-threaded.
#ifndef HOTSNAP_IO_FRAME_READER_H_
#define HOTSNAP_IO_FRAME_READER_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/image_format.h"

namespace hotsnap {

struct Frame {
  bool skippable = false;
  bool poison = false;                 // the tracked layout's leading guard frame
  uint32_t magic = 0;
  uint64_t offset = 0;                 // image byte offset of the frame's first byte
  std::span<const uint8_t> bytes;      // the whole frame
  std::span<const uint8_t> payload;    // skippable frames: the bytes after the 8-byte header
};

class FrameReader {
 public:
  FrameReader(int fd, std::string name, size_t max_zstd_frame_bytes);
  // Bounds the payload of every skippable frame kind alike.
  void set_max_skippable_bytes(uint64_t bytes) { bounds_ = SkippableBounds::All(bytes); }
  void set_skippable_bounds(const SkippableBounds& bounds) { bounds_ = bounds; }
  void set_max_zstd_frame_bytes(size_t bytes) { max_zstd_frame_ = bytes; }

  // Reads the next frame. Returns false at a clean end of stream (no byte left). A stream
  // that ends inside a frame, or bytes that are no frame, give kIntegrity errors naming
  // the image offset.
  Result<bool> Next(Frame* frame);
  uint64_t offset() const { return consumed_; }

 private:
  // Ensures at least `want` unconsumed bytes are buffered, or end of stream is reached.
  // Grows the buffer only when it is full of bytes that arrived.
  Status Fill(size_t want);
  // Called with the buffer full: moves the unconsumed bytes to the front if `want` of them
  // would not fit after start_, else grows the buffer (doubling, capped at `want`).
  void MakeRoom(size_t want);
  Result<size_t> SkippableFrameBytes(uint32_t magic, const std::string& where);
  Result<size_t> ZstdFrameBytes(const std::string& where);
  size_t available() const { return end_ - start_; }

  int fd_;
  std::string name_;
  size_t max_zstd_frame_;
  SkippableBounds bounds_;
  std::vector<uint8_t> buf_;
  size_t start_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
  uint64_t consumed_ = 0;  // image offset of buf_[start_]
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_FRAME_READER_H_
