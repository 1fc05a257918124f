#include "io/frame_reader.h"

#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/interrupt.h"

namespace hotsnap {

FrameReader::FrameReader(int fd, std::string name, size_t max_zstd_frame_bytes)
    : fd_(fd), name_(std::move(name)), max_zstd_frame_(max_zstd_frame_bytes) {}

namespace {

constexpr size_t kMinBufferBytes = size_t{1} << 20;

std::string Hex32(uint32_t v) {
  char b[11];
  std::snprintf(b, sizeof(b), "0x%08x", v);
  return b;
}

}  // namespace

void FrameReader::MakeRoom(size_t want) {
  if (start_ > 0) {
    // Not with an empty buffer: memmove from a null pointer is undefined even for 0 bytes
    // (found by tests/fuzz/fuzz_scan_image on its first input).
    if (available() > 0) std::memmove(buf_.data(), buf_.data() + start_, available());
    end_ -= start_;
    start_ = 0;
    return;
  }
  // Every buffered byte arrived and is unconsumed: grow, but never to a size a header merely
  // declares. Doubling keeps the copies of growth linear in the bytes received.
  buf_.resize(std::max(kMinBufferBytes, std::min(want, buf_.size() * 2)));
}

Status FrameReader::Fill(size_t want) {
  while (available() < want && !eof_) {
    if (end_ == buf_.size()) MakeRoom(want);
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

Result<size_t> FrameReader::SkippableFrameBytes(uint32_t magic, const std::string& where) {
  if (available() < kSkippableHeaderBytes) {
    return Status(Code::kIntegrity, "image " + name_ + " is truncated" + where);
  }
  const std::string kind =
      std::string(SkippableFrameName(magic)) + " frame (magic " + Hex32(magic) + ")" + where;
  uint64_t payload = LoadLe32(buf_.data() + start_ + 4);
  uint64_t bound = bounds_.ForMagic(magic);
  if (payload > bound) {
    if (bound == 0) {
      return Status(Code::kIntegrity, kind + ": no hotsnap frame has this magic");
    }
    return Status(Code::kIntegrity, kind + ": payload_bytes " + std::to_string(payload) +
                                        " exceeds the " + std::to_string(bound) +
                                        " bytes such a frame can have in this image");
  }
  size_t size = kSkippableHeaderBytes + payload;
  HOTSNAP_RETURN_IF_ERROR(Fill(size));
  if (available() < size) {
    return Status(Code::kIntegrity,
                  "image " + name_ + " is truncated: the " + kind + " declares payload_bytes " +
                      std::to_string(payload) + ", but the stream ends after " +
                      std::to_string(available() - kSkippableHeaderBytes) + " of them");
  }
  return size;
}

Result<size_t> FrameReader::ZstdFrameBytes(const std::string& where) {
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
  return n;
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
  frame->skippable = false;
  size_t size = 0;
  if (consumed_ == 0) HOTSNAP_RETURN_IF_ERROR(Fill(sizeof(kPoisonFrame)));
  if (magic == kZstdFrameMagic && consumed_ == 0 && available() >= sizeof(kPoisonFrame) &&
      IsPoisonFrame(std::span<const uint8_t>(buf_.data() + start_, sizeof(kPoisonFrame)))) {
    size = sizeof(kPoisonFrame);
    frame->poison = true;
  } else if ((magic & kSkippableMagicMask) == kSkippableMagicBase) {
    auto n = SkippableFrameBytes(magic, where);
    if (!n.ok()) return n.status();
    size = *n;
    frame->skippable = true;
  } else if (magic == kZstdFrameMagic) {
    auto n = ZstdFrameBytes(where);
    if (!n.ok()) return n.status();
    size = *n;
  } else {
    return Status(Code::kIntegrity, "no zstd frame" + where + " (magic " + Hex32(magic) + ")");
  }
  frame->bytes = std::span<const uint8_t>(buf_.data() + start_, size);
  frame->payload = frame->skippable ? frame->bytes.subspan(kSkippableHeaderBytes)
                                    : std::span<const uint8_t>();
  start_ += size;
  consumed_ += size;
  return true;
}

}  // namespace hotsnap
