#include "agent/image_used_map.h"

#include "fsmap/ext_used_blocks.h"
#include "fsmap/xfs_used_blocks.h"
#include "io/ranged_reader.h"

namespace hotsnap {
namespace {

// The image's device bytes as a RangedReader, for libext2fs.
class ImageDeviceBytes : public RangedReader {
 public:
  explicit ImageDeviceBytes(ImageRandomReader* image) : image_(image) {}
  uint64_t size_bytes() const override { return image_->device_bytes(); }
  Status Read(uint64_t offset, size_t bytes, void* dst) override {
    auto n = image_->Read(offset, bytes, dst);
    if (!n.ok()) return n.status();
    if (*n != bytes) {
      return Status(Code::kIntegrity, "image " + image_->name() + " ends before device byte " +
                                          std::to_string(offset + bytes));
    }
    return Status::Ok();
  }

 private:
  ImageRandomReader* const image_;
};

}  // namespace

UsedBlockMap MapImageUsedBlocks(ImageRandomReader& image, std::string* why_all) {
  why_all->clear();
  const ImageMetadata& meta = image.meta();
  auto all = [&](std::string why) {
    *why_all = std::move(why);
    return UsedBlockMap::AllBlocks(meta.device_bytes);
  };
  if (!meta.partition_table.empty()) return all("a whole-disk image");
  const bool ext = meta.fs_type == "ext2" || meta.fs_type == "ext3" || meta.fs_type == "ext4";
  const bool xfs = meta.fs_type == "xfs";
  if (!ext && !xfs) {
    return all(meta.fs_type.empty() ? "no filesystem recorded" : meta.fs_type + ", not ext2/3/4 or xfs");
  }
  // Only an image whose free blocks were stored as zeros by this very rule; one taken with
  // --all-blocks (or after a fallback to every block) keeps its free blocks' bytes, and a
  // rollback to it restores them too.
  const std::string method = xfs ? std::string("xfs bnobt") : meta.fs_type + " bitmap";
  const std::string& final_map = image.index().report.used_map;  // tracked: the last freeze's
  if (meta.used_map != method || (!final_map.empty() && final_map != method)) {
    return all("the image was taken of " + (final_map.empty() ? meta.used_map : final_map));
  }
  ImageDeviceBytes bytes(&image);
  std::string notice;
  const std::string name = "image " + image.name();
  auto map = xfs ? XfsUsedBlockMapOf(bytes, name, &notice) : ExtUsedBlockMapOf(bytes, name, meta.fs_type, &notice);
  // Comparing every block needs no map: an unreadable one costs time, never the rollback.
  if (!map.ok()) return all("its free-space records could not be read: " + map.status().message());
  if (!notice.empty()) *why_all = notice;
  return std::move(map.value());
}

}  // namespace hotsnap
