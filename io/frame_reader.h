// FrameReader: splits a sequential image stream (a file, stdin, a pipe) into frames
// without seeking.
//
// Zstd frames are delimited with ZSTD_findFrameCompressedSize over a buffered window of
// at least `max_zstd_frame_bytes`; skippable frames by their size field, which must not
// exceed the limit set with set_max_skippable_bytes(). Memory is bounded by those limits.
// Spans returned by Next() stay valid until the next call. Single-threaded.
#ifndef HOTSNAP_IO_FRAME_READER_H_
#define HOTSNAP_IO_FRAME_READER_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"

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
  void set_max_skippable_bytes(uint64_t bytes) { max_skippable_ = bytes; }
  void set_max_zstd_frame_bytes(size_t bytes) { max_zstd_frame_ = bytes; }

  // Reads the next frame. Returns false at a clean end of stream (no byte left). A stream
  // that ends inside a frame, or bytes that are no frame, give kIntegrity errors naming
  // the image offset.
  Result<bool> Next(Frame* frame);
  uint64_t offset() const { return consumed_; }

 private:
  // Ensures at least `want` unconsumed bytes are buffered, or end of stream is reached.
  Status Fill(size_t want);
  size_t available() const { return end_ - start_; }

  int fd_;
  std::string name_;
  size_t max_zstd_frame_;
  uint64_t max_skippable_ = 1u << 20;
  std::vector<uint8_t> buf_;
  size_t start_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
  uint64_t consumed_ = 0;  // image offset of buf_[start_]
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_FRAME_READER_H_
