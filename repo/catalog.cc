#include "repo/catalog.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/process_identity.h"
#include "base/unique_fd.h"
#include "io/image_chain.h"
#include "io/sink.h"
#include "io/stale_temp_files.h"

namespace hotsnap {
namespace {

using json = nlohmann::json;

bool EndsWith(const std::string& text, const std::string& tail) {
  return text.size() >= tail.size() && text.compare(text.size() - tail.size(), tail.size(), tail) == 0;
}

Result<json> ReadJsonFile(const std::string& path, bool* missing) {
  std::ifstream in(path);
  if (!in) {
    if (missing != nullptr) *missing = errno == ENOENT;
    return Status::FromErrno(errno == ENOENT ? Code::kUsage : Code::kTarget, errno, "opening " + path);
  }
  json doc = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Status(Code::kIntegrity, path + " is not a JSON object");
  }
  return doc;
}

// Writes `text` to `path` through a temporary file: fsync, rename, directory fsync.
Status WriteFileAtomically(const std::string& path, const std::string& text) {
  std::string temp = TemporaryNameFor(path, static_cast<int>(::getpid()));
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::FromErrno(Code::kTarget, errno, "creating " + temp);
  Status written = WriteAll(fd.get(), text.data(), text.size(), temp, Code::kTarget);
  if (written.ok() && ::fsync(fd.get()) != 0) {
    written = Status::FromErrno(Code::kTarget, errno, "fsync " + temp);
  }
  if (written.ok() && ::close(fd.Release()) != 0) {
    written = Status::FromErrno(Code::kTarget, errno, "closing " + temp);
  }
  if (written.ok() && ::rename(temp.c_str(), path.c_str()) != 0) {
    written = Status::FromErrno(Code::kTarget, errno, "renaming " + temp + " to " + path);
  }
  if (!written.ok()) {
    ::unlink(temp.c_str());
    return written;
  }
  // The rename is what makes the new content the catalog: it must be durable before the
  // caller goes on (e.g. a prune removing a file the old catalog still lists).
  if (int err = SyncDir(DirectoryOf(path)); err != 0) {
    return Status::FromErrno(Code::kTarget, err, "fsync of the directory of " + path);
  }
  return Status::Ok();
}

std::vector<std::string> DirEntries(const std::string& dir, int* err) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    *err = errno;
    return names;
  }
  *err = 0;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string Stem(const std::string& file) {
  return EndsWith(file, kRepoImageExtension) ? file.substr(0, file.size() - std::strlen(kRepoImageExtension))
                                             : file;
}

// Oldest first; within one second by name without the extension, so that "...Z" (the first
// image of that second) comes before "...Z-2".
bool SortKeyLess(const RepoImage& a, const RepoImage& b) {
  if (a.created_utc_s != b.created_utc_s) return a.created_utc_s < b.created_utc_s;
  return Stem(a.file) < Stem(b.file);
}

}  // namespace

int SyncDir(const std::string& dir) { return RealPublishOps()->SyncDirectory(dir); }

std::string FormatUtc(int64_t utc_s) {
  time_t t = static_cast<time_t>(utc_s);
  struct tm tm;
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

std::optional<int64_t> ParseUtc(const std::string& text) {
  struct tm tm = {};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  return static_cast<int64_t>(timegm(&tm));
}

json RepoImageToJson(const RepoImage& image) {
  return json{{"source", image.source},
              {"file", image.file},
              {"kind", IsFullImage(image) ? "full" : "delta"},
              {"parent", image.parent_file},
              {"image_hash", image.image_hash.Hex()},
              {"created_utc", FormatUtc(image.created_utc_s)},
              {"created_utc_s", image.created_utc_s},
              {"image_bytes", image.image_bytes},
              {"run_id", image.run_id}};
}

Result<RepoImage> RepoImageFromJson(const json& doc) {
  if (!doc.is_object()) return Status(Code::kIntegrity, "a catalog entry is not an object");
  RepoImage image;
  auto str = [&doc](const char* key, std::string* out) {
    auto it = doc.find(key);
    if (it == doc.end() || !it->is_string()) return false;
    *out = it->get<std::string>();
    return true;
  };
  std::string hash;
  if (!str("source", &image.source) || !str("file", &image.file) ||
      !str("parent", &image.parent_file) || !str("image_hash", &hash) ||
      !str("run_id", &image.run_id)) {
    return Status(Code::kIntegrity, "catalog entry " + doc.dump() +
                                        ": missing or mistyped source, file, parent, image_hash or run_id");
  }
  auto parsed = ParseHashHex(hash);
  auto created = doc.find("created_utc_s");
  auto bytes = doc.find("image_bytes");
  if (!parsed || created == doc.end() || !created->is_number_integer() || bytes == doc.end() ||
      !bytes->is_number_unsigned()) {
    return Status(Code::kIntegrity, "catalog entry for " + image.file +
                                        ": bad image_hash, created_utc_s or image_bytes");
  }
  image.image_hash = *parsed;
  image.created_utc_s = created->get<int64_t>();
  image.image_bytes = bytes->get<uint64_t>();
  return image;
}

Status CheckRepoMarker(const std::string& repo) {
  bool missing = false;
  auto doc = ReadJsonFile(repo + "/" + kRepoMarkerFile, &missing);
  if (!doc.ok()) {
    if (missing) {
      return Status(Code::kUsage, repo + " is not a hotsnap repository (no " +
                                      std::string(kRepoMarkerFile) + "; the first `hotsnap backup --repo` makes one)");
    }
    return doc.status();
  }
  if (doc->value("format", "") != "hotsnap-repository") {
    return Status(Code::kIntegrity, repo + "/" + kRepoMarkerFile + " is not a hotsnap repository marker");
  }
  auto version = doc->find("version");
  if (version == doc->end() || !version->is_number_integer()) {
    return Status(Code::kIntegrity, repo + "/" + kRepoMarkerFile + ": no version");
  }
  if (version->get<int>() > kRepoFormatVersion) {
    return Status(Code::kUnsupported, repo + " is a version " + std::to_string(version->get<int>()) +
                                          " repository; this hotsnap reads up to version " +
                                          std::to_string(kRepoFormatVersion));
  }
  return Status::Ok();
}

Status InitRepository(const std::string& repo) {
  if (::mkdir(repo.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno(Code::kTarget, errno, "creating repository " + repo);
  }
  if (!IsDirectory(repo)) return Status(Code::kTarget, repo + " is not a directory");
  Status marker = CheckRepoMarker(repo);
  if (marker.ok() || marker.code() != Code::kUsage) return marker;
  int err = 0;
  std::vector<std::string> entries = DirEntries(repo, &err);
  if (err != 0) return Status::FromErrno(Code::kTarget, err, "reading " + repo);
  if (!entries.empty()) {
    return Status(Code::kTarget, repo + " is not empty and not a hotsnap repository (no " +
                                     std::string(kRepoMarkerFile) + "); refusing to make it one");
  }
  // The catalog first: a directory with a marker is a repository, and its catalog exists.
  HOTSNAP_RETURN_IF_ERROR(WriteCatalog(repo, {}));
  json marker_doc = {{"format", "hotsnap-repository"},
                     {"version", kRepoFormatVersion},
                     {"created_utc", NowUtc()}};
  return WriteFileAtomically(repo + "/" + kRepoMarkerFile, marker_doc.dump(2) + "\n");
}

Result<std::vector<RepoImage>> ReadCatalog(const std::string& repo) {
  HOTSNAP_RETURN_IF_ERROR(CheckRepoMarker(repo));
  std::string path = repo + "/" + kRepoCatalogFile;
  bool missing = false;
  auto doc = ReadJsonFile(path, &missing);
  if (!doc.ok()) {
    if (missing) return std::vector<RepoImage>{};
    return doc.status();
  }
  if (doc->value("format", "") != "hotsnap-catalog") {
    return Status(Code::kIntegrity, path + " is not a hotsnap catalog");
  }
  auto list = doc->find("images");
  if (list == doc->end() || !list->is_array()) return Status(Code::kIntegrity, path + ": no images array");
  std::vector<RepoImage> images;
  for (const json& entry : *list) {
    auto image = RepoImageFromJson(entry);
    if (!image.ok()) return image.status().Wrap(path);
    images.push_back(std::move(image).value());
  }
  return images;
}

Status WriteCatalog(const std::string& repo, std::vector<RepoImage> images) {
  std::stable_sort(images.begin(), images.end(), SortKeyLess);
  json list = json::array();
  for (const RepoImage& image : images) list.push_back(RepoImageToJson(image));
  json doc = {{"format", "hotsnap-catalog"}, {"version", kRepoFormatVersion}, {"images", list}};
  return WriteFileAtomically(repo + "/" + kRepoCatalogFile, doc.dump(2) + "\n");
}

Result<RepoImage> RepoImageFromFile(const std::string& repo, const std::string& file) {
  auto link = OpenChainLink(repo + "/" + file);
  if (!link.ok()) return link.status();
  const ImageIndex& index = link->index;
  RepoImage image;
  std::string dir = DirectoryOf(file);
  image.source = dir;
  image.file = file;
  if (index.meta.base) image.parent_file = dir + "/" + index.meta.base->image;
  image.image_hash = index.trailer.image_hash;
  auto created = ParseUtc(index.meta.created_utc);
  if (!created) {
    return Status(Code::kIntegrity, repo + "/" + file + ": its created_utc '" + index.meta.created_utc +
                                        "' is not an ISO 8601 UTC time");
  }
  image.created_utc_s = *created;
  image.image_bytes = index.image_bytes;
  image.run_id = index.meta.run_id;
  return image;
}

Result<RepoScan> ScanRepository(const std::string& repo) {
  HOTSNAP_RETURN_IF_ERROR(CheckRepoMarker(repo));
  RepoScan scan;
  int err = 0;
  for (const std::string& top : DirEntries(repo, &err)) {
    if (top == kRepoMarkerFile || top == kRepoCatalogFile || top == kRepoLockFile) continue;
    if (TemporaryFilePid(top) >= 0) {
      scan.temporary.push_back(top);
      continue;
    }
    if (!IsDirectory(repo + "/" + top) || top.front() == '.') {
      scan.unknown.push_back(top);
      continue;
    }
    for (const std::string& name : DirEntries(repo + "/" + top, &err)) {
      std::string file = top + "/" + name;
      if (TemporaryFilePid(name) >= 0) {
        scan.temporary.push_back(file);
      } else if (!EndsWith(name, kRepoImageExtension) || name.rfind(top + "-", 0) != 0 ||
                 IsDirectory(repo + "/" + file)) {
        scan.unknown.push_back(file);
      } else if (auto image = RepoImageFromFile(repo, file); image.ok()) {
        scan.images.push_back(std::move(image).value());
      } else {
        scan.unreadable.push_back(file + ": " + image.status().message());
      }
    }
    if (err != 0) return Status::FromErrno(Code::kTarget, err, "reading " + repo + "/" + top);
  }
  if (err != 0) return Status::FromErrno(Code::kTarget, err, "reading " + repo);
  std::sort(scan.images.begin(), scan.images.end(), SortKeyLess);
  return scan;
}

std::string NewImageFile(const std::string& repo, const std::string& source, int64_t utc_s) {
  time_t t = static_cast<time_t>(utc_s);
  struct tm tm;
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
  std::string stem = source + "/" + source + "-" + stamp;
  std::string file = stem + kRepoImageExtension;
  struct stat st;
  for (int n = 2; ::lstat((repo + "/" + file).c_str(), &st) == 0; ++n) {
    file = stem + "-" + std::to_string(n) + kRepoImageExtension;
  }
  return file;
}

}  // namespace hotsnap
