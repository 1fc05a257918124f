// ImageChain: an image file and, for a delta image, the parents it needs — each one found,
// opened and checked before any of its bytes is used.
//
// A delta image (Layout::kDelta) holds only the chunks that differ from its parent and names
// the parent in its metadata (`base`: file name and image hash). Open() follows those
// references from the newest image down to a full (plain or tracked) one:
//   - a parent is looked for under its recorded name in ChainOptions::dir (default: the
//     newest image's directory); if no file has that name, every regular file of the
//     directory whose seek table and trailer load is considered, by image hash (a renamed
//     parent is still found);
//   - a parent is accepted only when its image hash is the recorded one (or it stands for
//     that hash: an image written by `hotsnap merge`), its geometry is the child's, and it
//     holds every chunk the child left to it with the hash the child recorded;
//   - anything else fails with kIntegrity naming the missing or mismatched parent and the
//     child that needs it. Nothing is read past the indexes (tails and metadata).
// A plain or tracked image is a chain of one link.
//
// Chunk `i` of the newest image is the frame of the first link (newest first) that holds
// one; its bytes must hash to the newest trailer's hash of chunk `i`, which every link below
// agrees with (checked here).
#ifndef HOTSNAP_IO_IMAGE_CHAIN_H_
#define HOTSNAP_IO_IMAGE_CHAIN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "io/image_index.h"

namespace hotsnap {

struct ChainOptions {
  std::string dir;  // where parents are looked for; "" = the newest image's directory
};

struct ChainLink {
  std::string path;
  UniqueFd fd;
  ImageIndex index;
};

class ImageChain {
 public:
  // The longest chain followed (a loop of references or a runaway chain fails before it).
  static constexpr size_t kMaxLinks = 4096;

  // Opens `path` (a regular file) and every parent it needs.
  static Result<ImageChain> Open(const std::string& path, const ChainOptions& options = {});
  // The same, for a newest image already opened and indexed.
  static Result<ImageChain> FromLink(ChainLink newest, const ChainOptions& options = {});

  ImageChain(ImageChain&&) = default;
  ImageChain& operator=(ImageChain&&) = default;

  const ImageIndex& newest() const { return links_.front().index; }
  const std::vector<ChainLink>& links() const { return links_; }
  // The link holding chunk `chunk`'s frame (0 = the newest image).
  size_t LinkOf(uint64_t chunk) const;

 private:
  ImageChain() = default;
  std::vector<ChainLink> links_;
};

// Opens `path` and loads its index (kSource if it cannot be opened, kIntegrity if it is not
// a well-formed image file).
Result<ChainLink> OpenChainLink(const std::string& path);

// Whether `image` is accepted as the parent a child recorded with image hash `wanted`: its
// own image hash, or one it stands for (ImageMetadata::stands_for, written by `hotsnap merge`).
bool CanStandFor(const ImageIndex& image, const Hash128& wanted);

// The directory part of `path` ("." for a bare name).
std::string DirectoryOf(const std::string& path);
// The file name part of `path`.
std::string BaseNameOf(const std::string& path);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_IMAGE_CHAIN_H_
