// The on-disk parts of a repository (docs/repository.md): the marker file, the catalog, and
// the record of one image read from the image itself.
//
//   REPO/hotsnap-repo.json   {"format": "hotsnap-repository", "version": 1, "created_utc": ...}
//   REPO/catalog.json        {"format": "hotsnap-catalog", "version": 1, "images": [RepoImage...]}
//   REPO/SOURCE/SOURCE-YYYYmmddTHHMMSSZ.zst   the images (io/image_format.h)
//
// The catalog is a cache of what the images say about themselves: RepoImageFromFile() reads
// one image's record from its own metadata and trailer (its index only), and
// RebuildCatalog() the whole catalog from the files. The catalog is rewritten only under the
// repository's lock (repo/lock.h), atomically: a temporary file beside it (io/sink.h's
// ".NAME.hotsnap-PID.tmp", which `hotsnap cleanup` knows), fsync, rename, directory fsync.
// Not thread-safe; nothing here takes the lock.
#ifndef HOTSNAP_REPO_CATALOG_H_
#define HOTSNAP_REPO_CATALOG_H_

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "repo/repository.h"

namespace hotsnap {

inline constexpr char kRepoMarkerFile[] = "hotsnap-repo.json";
inline constexpr char kRepoCatalogFile[] = "catalog.json";
inline constexpr char kRepoLockFile[] = "lock";
inline constexpr char kRepoImageExtension[] = ".zst";
inline constexpr int kRepoFormatVersion = 1;

// A full image has no parent.
inline bool IsFullImage(const RepoImage& image) { return image.parent_file.empty(); }

// One catalog entry as JSON, with the stable field names `list --json` prints too:
// source, file, kind ("full"/"delta"), parent, image_hash (32 hex digits), created_utc
// (ISO 8601), created_utc_s, image_bytes, run_id.
nlohmann::json RepoImageToJson(const RepoImage& image);
// The inverse; kIntegrity naming the field when one is missing or mistyped.
Result<RepoImage> RepoImageFromJson(const nlohmann::json& doc);

// "2026-12-04T18:47:00Z" <-> seconds since the epoch; parsing fails (nullopt) on other text.
std::string FormatUtc(int64_t utc_s);
std::optional<int64_t> ParseUtc(const std::string& text);

// Whether `repo` holds a marker of a version this build reads (kUsage "not a hotsnap
// repository" when there is none, kUnsupported for a newer version).
Status CheckRepoMarker(const std::string& repo);
// Makes `repo` a repository: creates the directory if it is missing (its parent must exist)
// and writes the marker and an empty catalog. A directory that already holds a marker is left
// as it is; one holding anything else is refused (kTarget).
Status InitRepository(const std::string& repo);

// The catalog's entries in file order (oldest first as written). A missing catalog in a
// repository with a marker is an empty one.
Result<std::vector<RepoImage>> ReadCatalog(const std::string& repo);
// Replaces the catalog atomically with `images` (sorted oldest first, then by file).
Status WriteCatalog(const std::string& repo, std::vector<RepoImage> images);

// The record of the image at REPO/`file` from its own index: source = the file's directory,
// parent = that directory + the base the image names. kSource if it cannot be opened,
// kIntegrity if it is not a well-formed image.
Result<RepoImage> RepoImageFromFile(const std::string& repo, const std::string& file);

// What a walk of the repository's source directories finds.
struct RepoScan {
  std::vector<RepoImage> images;       // images whose index loads, oldest first
  std::vector<std::string> unreadable;  // "FILE: why" for image-named files that do not load
  std::vector<std::string> unknown;     // files or directories that are no part of a repository
  std::vector<std::string> temporary;   // temporary files (".NAME.hotsnap-PID.tmp")
};
// Reads every source directory of `repo` (not the catalog).
Result<RepoScan> ScanRepository(const std::string& repo);

// "SOURCE/SOURCE-20261204T184700Z.zst" for a backup of `source` at `utc_s` (the catalog's
// and the name's time); "...Z-2.zst" and on when that name is taken in the directory.
std::string NewImageFile(const std::string& repo, const std::string& source, int64_t utc_s);

// fsync of a directory; 0 or errno.
int SyncDir(const std::string& dir);

}  // namespace hotsnap

#endif  // HOTSNAP_REPO_CATALOG_H_
