#include "io/frame_reader.h"

#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>

#include "base/interrupt.h"
#include "io/image_format.h"

namespace hotsnap {

FrameReader::FrameReader(int fd, std::string name, size_t max_zstd_frame_bytes)
    : fd_(fd), name_(std::move(name)), max_zstd_frame_(max_zstd_frame_bytes) {}

Status FrameReader::Fill(size_t want) {
  if (available() >= want || eof_) return Status::Ok();
  if (buf_.size() - start_ < want) {
    // Compact, then grow if the buffer is still too small.
    // Not with an empty buffer: memmove from a null pointer is undefined even for 0 bytes
    // (found by tests/fuzz/fuzz_scan_image on its first input).
    if (available() > 0) std::memmove(buf_.data(), buf_.data() + start_, available());
    end_ -= start_;
    start_ = 0;
    if (buf_.size() < want) buf_.resize(std::max(want, size_t{1} << 20));
  }
  while (available() < want && !eof_) {
    ssize_t n = ::read(fd_, buf_.data() + end_, buf_.size() - end_);
    if (n < 0) {
      if (errno == EINTR) {
        if (Interrupted()) return Status(Code::kInterrupted, "interrupted while reading " + name_);
        continue;
      }
      return Status::FromErrno(Code::kSource, errno, "reading image " + name_);
    }
    if (n == 0) eof_ = true;
    end_ += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<bool> FrameReader::Next(Frame* frame) {
  HOTSNAP_RETURN_IF_ERROR(Fill(kSkippableHeaderBytes));
  if (available() == 0) return false;
  const std::string where = " at image offset " + std::to_string(consumed_);
  if (available() < 4) return Status(Code::kIntegrity, "image " + name_ + " is truncated" + where);
  uint32_t magic = LoadLe32(buf_.data() + start_);
  frame->offset = consumed_;
  frame->magic = magic;
  frame->poison = false;
  size_t size = 0;
  if (consumed_ == 0) HOTSNAP_RETURN_IF_ERROR(Fill(sizeof(kPoisonFrame)));
  if (magic == kZstdFrameMagic && consumed_ == 0 && available() >= sizeof(kPoisonFrame) &&
      IsPoisonFrame(std::span<const uint8_t>(buf_.data() + start_, sizeof(kPoisonFrame)))) {
    size = sizeof(kPoisonFrame);
    frame->skippable = false;
    frame->poison = true;
  } else if ((magic & kSkippableMagicMask) == kSkippableMagicBase) {
    if (available() < kSkippableHeaderBytes) {
      return Status(Code::kIntegrity, "image " + name_ + " is truncated" + where);
    }
    uint64_t payload = LoadLe32(buf_.data() + start_ + 4);
    if (payload > max_skippable_) {
      return Status(Code::kIntegrity, "skippable frame" + where + " declares " +
                                          std::to_string(payload) + " bytes, more than the " +
                                          std::to_string(max_skippable_) + " this image can need");
    }
    size = kSkippableHeaderBytes + payload;
    HOTSNAP_RETURN_IF_ERROR(Fill(size));
    if (available() < size) return Status(Code::kIntegrity, "image " + name_ + " is truncated" + where);
    frame->skippable = true;
  } else if (magic == kZstdFrameMagic) {
    HOTSNAP_RETURN_IF_ERROR(Fill(max_zstd_frame_));
    size_t n = ZSTD_findFrameCompressedSize(buf_.data() + start_, available());
    if (ZSTD_isError(n)) {
      bool truncated = eof_ && available() < max_zstd_frame_;
      return Status(Code::kIntegrity, std::string(truncated ? "image " + name_ + " is truncated"
                                                            : "corrupt zstd frame") +
                                          where + " (" + ZSTD_getErrorName(n) + ")");
    }
    if (n > max_zstd_frame_) {
      return Status(Code::kIntegrity, "zstd frame" + where + " is larger than a chunk frame can be");
    }
    size = n;
    frame->skippable = false;
  } else {
    return Status(Code::kIntegrity, "no zstd frame" + where + " (magic 0x" + [&] {
      char b[9];
      std::snprintf(b, sizeof(b), "%08x", magic);
      return std::string(b);
    }() + ")");
  }
  frame->bytes = std::span<const uint8_t>(buf_.data() + start_, size);
  frame->payload = frame->skippable ? frame->bytes.subspan(kSkippableHeaderBytes)
                                    : std::span<const uint8_t>();
  start_ += size;
  consumed_ += size;
  return true;
}

}  // namespace hotsnap
