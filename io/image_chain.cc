#include "io/image_chain.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <set>

namespace hotsnap {
namespace {

std::string Describe(const BaseReference& base) {
  return base.image + " (image hash xxh3-128:" + base.image_hash.Hex() +
         (base.created_utc.empty() ? "" : ", created " + base.created_utc) + ")";
}

// Every regular file of `dir` whose index loads and whose image hash is `wanted`.
Result<std::optional<ChainLink>> FindByHash(const std::string& dir, const Hash128& wanted,
                                            const std::string& skip) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Status::FromErrno(Code::kIntegrity, errno, "listing " + dir);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == ".." || name == skip || name[0] == '.') continue;
    names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    std::string path = dir + "/" + name;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    auto link = OpenChainLink(path);
    if (link.ok() && CanStandFor(link->index, wanted)) return std::optional<ChainLink>(std::move(link.value()));
  }
  return std::optional<ChainLink>();
}

}  // namespace

bool CanStandFor(const ImageIndex& image, const Hash128& wanted) {
  if (image.trailer.image_hash == wanted) return true;
  return std::find(image.meta.stands_for.begin(), image.meta.stands_for.end(), wanted) !=
         image.meta.stands_for.end();
}

std::string DirectoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseNameOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

Result<ChainLink> OpenChainLink(const std::string& path) {
  ChainLink link;
  link.path = path;
  link.fd.Reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!link.fd.valid()) return Status::FromErrno(Code::kSource, errno, "opening image " + path);
  struct stat st;
  if (::fstat(link.fd.get(), &st) != 0) return Status::FromErrno(Code::kSource, errno, "stat " + path);
  if (!S_ISREG(st.st_mode)) {
    return Status(Code::kUnsupported, "image " + path + " is not a regular file; random access needs a "
                                      "file with a seek table (a pipe can only be restored in full)");
  }
  auto index = LoadImageIndex(link.fd.get(), path);
  if (!index.ok()) return index.status();
  link.index = std::move(index.value());
  return link;
}

Result<ImageChain> ImageChain::Open(const std::string& path, const ChainOptions& options) {
  auto newest = OpenChainLink(path);
  if (!newest.ok()) return newest.status();
  return FromLink(std::move(newest.value()), options);
}

Result<ImageChain> ImageChain::FromLink(ChainLink newest, const ChainOptions& options) {
  ImageChain chain;
  const std::string dir = options.dir.empty() ? DirectoryOf(newest.path) : options.dir;
  std::set<std::pair<uint64_t, uint64_t>> seen;
  chain.links_.push_back(std::move(newest));
  while (chain.links_.back().index.meta.base) {
    const ChainLink& child = chain.links_.back();
    const BaseReference base = *child.index.meta.base;
    if (!seen.insert({base.image_hash.low, base.image_hash.high}).second ||
        chain.links_.size() >= kMaxLinks) {
      return Status(Code::kIntegrity, "image " + child.path + ": its chain of parents loops or is longer than " +
                                          std::to_string(kMaxLinks) + " images");
    }
    const std::string where = "parent " + Describe(base) + " of " + child.path;
    // Beside a bare file name: the parent's bare name too, as the user wrote the child's.
    std::string candidate = options.dir.empty() && child.path.find('/') == std::string::npos
                                ? base.image
                                : dir + "/" + base.image;
    std::optional<ChainLink> parent;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0) {
      auto opened = OpenChainLink(candidate);
      if (!opened.ok()) {
        return Status(Code::kIntegrity, where + ": " + opened.status().message());
      }
      parent = std::move(opened.value());
      if (!CanStandFor(parent->index, base.image_hash)) {
        return Status(Code::kIntegrity,
                      where + ": " + candidate + " is another image (its image hash is xxh3-128:" +
                          parent->index.trailer.image_hash.Hex() +
                          "): the parent was replaced or altered since the delta was made");
      }
    } else {
      auto found = FindByHash(dir, base.image_hash, BaseNameOf(child.path));
      if (!found.ok()) return Status(Code::kIntegrity, where + ": " + found.status().message());
      parent = std::move(found.value());
      if (!parent) {
        return Status(Code::kIntegrity, where + " is missing: no such file in " + dir +
                                            ", and no image there has that hash" +
                                            (options.dir.empty() ? " (--chain DIR says where the parents are)" : ""));
      }
    }
    const ImageIndex& p = parent->index;
    const ImageIndex& c = child.index;
    if (p.meta.device_bytes != c.meta.device_bytes || p.meta.chunk_bytes != c.meta.chunk_bytes) {
      return Status(Code::kIntegrity, where + ": " + parent->path + " holds " +
                                          std::to_string(p.meta.device_bytes) + " device bytes in " +
                                          std::to_string(p.meta.chunk_bytes) + "-byte chunks, the delta " +
                                          std::to_string(c.meta.device_bytes) + " in " +
                                          std::to_string(c.meta.chunk_bytes));
    }
    for (uint64_t i = 0; i < c.meta.chunk_count(); ++i) {
      if (!c.HasFrame(i) && !(p.trailer.chunk_hashes[i] == c.trailer.chunk_hashes[i])) {
        return Status(Code::kIntegrity, where + ": " + parent->path + " does not hold chunk " +
                                            std::to_string(i) + " as the delta recorded it (hash mismatch)");
      }
    }
    chain.links_.push_back(std::move(*parent));
  }
  return chain;
}

size_t ImageChain::LinkOf(uint64_t chunk) const {
  for (size_t k = 0; k + 1 < links_.size(); ++k) {
    if (links_[k].index.HasFrame(chunk)) return k;
  }
  return links_.size() - 1;
}

}  // namespace hotsnap
