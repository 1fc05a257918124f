#include "daemon/change_keeper.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/process_identity.h"
#include "base/unique_fd.h"
#include "fsmap/used_block_map_builder.h"

namespace hotsnap {
namespace {

constexpr int kChangeLogFileVersion = 1;

void Coalesce(std::vector<ByteExtent>* v) {
  std::sort(v->begin(), v->end(), [](const ByteExtent& a, const ByteExtent& b) {
    return a.offset_bytes < b.offset_bytes;
  });
  std::vector<ByteExtent> out;
  for (const ByteExtent& e : *v) {
    if (e.length_bytes == 0) continue;
    if (!out.empty() && e.offset_bytes <= out.back().end_bytes()) {
      out.back().length_bytes =
          std::max(out.back().end_bytes(), e.end_bytes()) - out.back().offset_bytes;
    } else {
      out.push_back(e);
    }
  }
  *v = std::move(out);
}

Result<uint64_t> DeviceBytes(const std::string& device) {
  UniqueFd fd(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(Code::kSource, errno, "opening " + device);
  uint64_t bytes = 0;
  if (::ioctl(fd.get(), BLKGETSIZE64, &bytes) != 0) {
    return Status::FromErrno(Code::kSource, errno, "BLKGETSIZE64 of " + device);
  }
  return bytes;
}

nlohmann::ordered_json ExtentsJson(const std::vector<ByteExtent>& v) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const ByteExtent& e : v) a.push_back({e.offset_bytes, e.length_bytes});
  return a;
}

std::vector<ByteExtent> ExtentsFrom(const nlohmann::json& a) {
  std::vector<ByteExtent> v;
  for (const auto& e : a) v.push_back({e.at(0).get<uint64_t>(), e.at(1).get<uint64_t>()});
  return v;
}

nlohmann::ordered_json UsedMapJson(const UsedBlockMap& map) {
  nlohmann::ordered_json j;
  j["fs_type"] = map.fs_type();
  j["device_bytes"] = map.device_bytes();
  j["block_bytes"] = map.block_bytes();
  j["all_blocks"] = map.all_blocks();
  std::vector<ByteExtent> used;
  if (!map.all_blocks()) map.UsedIn(0, map.device_bytes(), &used);
  j["used"] = ExtentsJson(used);
  return j;
}

// The map back from UsedMapJson: the same used bytes (a disk map's partition table is not
// kept; a change log needs only UsedIn).
Result<std::shared_ptr<const UsedBlockMap>> UsedMapFrom(const nlohmann::json& j) {
  const uint64_t device_bytes = j.at("device_bytes").get<uint64_t>();
  if (j.at("all_blocks").get<bool>()) {
    return std::make_shared<const UsedBlockMap>(UsedBlockMap::AllBlocks(device_bytes));
  }
  std::vector<ByteExtent> used = ExtentsFrom(j.at("used"));
  uint32_t block = j.at("block_bytes").get<uint32_t>();
  for (const ByteExtent& e : used) {
    if (e.offset_bytes % block != 0 ||
        (e.end_bytes() % block != 0 && e.end_bytes() != device_bytes))
      block = 512;
  }
  UsedBlockMapBuilder b(j.at("fs_type").get<std::string>(), device_bytes, block);
  for (const ByteExtent& e : used) {
    HOTSNAP_RETURN_IF_ERROR(
        b.AddUsedBlocks(e.offset_bytes / block, (e.length_bytes + block - 1) / block));
  }
  return std::make_shared<const UsedBlockMap>(std::move(b).Build());
}

Status WriteFileAtomically(const std::string& dir, const std::string& path,
                           const std::string& text) {
  const std::string temp = path + ".tmp";
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::FromErrno(Code::kTarget, errno, "creating " + temp);
  for (size_t done = 0; done < text.size();) {
    ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::unlink(temp.c_str());
      return Status::FromErrno(Code::kTarget, err, "writing " + temp);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    return Status::FromErrno(Code::kTarget, err, "fsync of " + temp);
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    return Status::FromErrno(Code::kTarget, err, "renaming " + temp + " to " + path);
  }
  UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.valid() && ::fsync(d.get()) != 0)
    return Status::FromErrno(Code::kTarget, errno, "fsync of " + dir);
  return Status::Ok();
}

Status MakeDir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return Status::FromErrno(Code::kTarget, errno, "creating " + path);
  }
  return Status::Ok();
}

}  // namespace

std::string DeviceWriteCounters::Describe() const {
  return "write I/Os " + std::to_string(write_ios) + ", sectors written " +
         std::to_string(write_sectors) + ", discards " + std::to_string(discard_ios) + " (" +
         std::to_string(discard_sectors) + " sectors)";
}

Result<DeviceWriteCounters> ReadWriteCounters(const std::string& device) {
  struct stat st;
  if (::stat(device.c_str(), &st) != 0)
    return Status::FromErrno(Code::kSource, errno, "stat of " + device);
  if (!S_ISBLK(st.st_mode)) return Status(Code::kSource, device + " is not a block device");
  DeviceWriteCounters c;
  c.stat_path = "/sys/dev/block/" + std::to_string(major(st.st_rdev)) + ":" +
                std::to_string(minor(st.st_rdev)) + "/stat";
  std::ifstream in(c.stat_path);
  std::vector<uint64_t> f;
  uint64_t v;
  while (in >> v) f.push_back(v);
  if (f.size() < 11)
    return Status(Code::kSource, "cannot parse " + c.stat_path + " (of " + device + ")");
  c.write_ios = f[4];
  c.write_sectors = f[6];
  if (f.size() >= 15) {
    c.discard_ios = f[11];
    c.discard_sectors = f[13];
  }
  return c;
}

std::string ChangeLogFileName(const std::string& device) {
  std::string name = device.rfind("/dev/", 0) == 0 ? device.substr(5) : device;
  while (!name.empty() && name.front() == '/') name.erase(0, 1);
  for (char& ch : name) {
    if (ch == '/') ch = '-';
  }
  return name.empty() ? "root" : name;
}

ChangeKeeper::ChangeKeeper(ChangeKeeperOptions options) : options_(std::move(options)) {
  if (!options_.boot_id) options_.boot_id = [] { return BootId(); };
  if (!options_.write_counters) options_.write_counters = ReadWriteCounters;
}

ChangeKeeper::~ChangeKeeper() = default;

std::string ChangeKeeper::PathOf(const std::string& device) const {
  return options_.state_dir + "/changelog/" + ChangeLogFileName(device) + ".json";
}

ChangeKeeper::Source& ChangeKeeper::SourceLocked(const std::string& device) {
  Source& s = sources_[device];
  if (s.device.empty()) {
    s.device = device;
    s.no_log_reason =
        "no change log for this source: the agent has recorded no backup of it since it started";
  }
  return s;
}

Status ChangeKeeper::StartTrackerLocked(Source* s) {
  if (s->tracker) return Status::Ok();
  auto bytes = DeviceBytes(s->device);
  if (!bytes.ok()) return bytes.status();
  auto tracker = WriteTracker::Start(s->device, *bytes);
  if (!tracker.ok()) return tracker.status().Wrap("recording the writes to " + s->device);
  s->device_bytes = *bytes;
  s->tracker = std::move(tracker.value());
  return Status::Ok();
}

Status ChangeKeeper::DrainLocked(Source* s) {
  if (!s->tracker) return Status::Ok();
  std::vector<ByteExtent> writes;
  auto lost = s->tracker->Drain([&](uint64_t offset, uint64_t length) {
    writes.push_back({offset, length});
  });
  if (!lost.ok()) {
    // The tracker no longer sees every CPU: nothing it recorded can be trusted from now on.
    s->tracker.reset();
    s->current.reset();
    s->next.reset();
    s->no_log_reason =
        "the write recording of " + s->device + " stopped: " + lost.status().message();
    return lost.status();
  }
  for (Log* log : {s->current.get(), s->next.get()}) {
    if (log == nullptr) continue;
    log->token.lost_records += *lost;
    log->changed.insert(log->changed.end(), writes.begin(), writes.end());
    Coalesce(&log->changed);
  }
  return Status::Ok();
}

Status ChangeKeeper::BeforeBackup(const std::string& source) {
  std::lock_guard<std::mutex> lock(mu_);
  Source& s = SourceLocked(source);
  if (s.next)
    return Status(Code::kBusy, "a backup of " + source + " is under way: its change log is in use");
  Status started = StartTrackerLocked(&s);
  if (!started.ok()) {
    s.current.reset();
    s.next.reset();
    s.no_log_reason = "no change log: " + started.message();
    return started;
  }
  // Everything queued so far belongs to the current log alone; the next one starts empty.
  Status drained = DrainLocked(&s);
  if (!drained.ok()) return drained;
  s.next = std::make_unique<Log>();
  s.next->token.boot_id = options_.boot_id();
  s.next->token.device_bytes = s.device_bytes;
  return Status::Ok();
}

Result<ChangeLog> ChangeKeeper::CurrentLocked(Source* s) {
  HOTSNAP_RETURN_IF_ERROR(DrainLocked(s));
  if (!s->current) return Status(Code::kSource, s->no_log_reason);
  ChangeLog log;
  log.token = s->current->token;
  log.changed = s->current->changed;
  log.parent_used = s->current->parent_used;
  return log;
}

ChangeLogSource ChangeKeeper::SourceFor(const std::string& source) {
  return [this, source]() -> Result<ChangeLog> {
    std::lock_guard<std::mutex> lock(mu_);
    return CurrentLocked(&SourceLocked(source));
  };
}

bool ChangeKeeper::HasLog(const std::string& source) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sources_.find(source);
  return it != sources_.end() && it->second.current != nullptr;
}

Result<ChangeLog> ChangeKeeper::Peek(const std::string& source) {
  std::lock_guard<std::mutex> lock(mu_);
  return CurrentLocked(&SourceLocked(source));
}

void ChangeKeeper::AfterBackup(const std::string& source, const Result<BackupReport>& result) {
  std::lock_guard<std::mutex> lock(mu_);
  Source& s = SourceLocked(source);
  if (!result.ok() || !s.next) {
    // The image was not made: the current log goes on (it holds every write since its parent).
    s.next.reset();
    return;
  }
  if (!DrainLocked(&s).ok()) return;
  s.current = std::move(s.next);
  s.current->token.parent_image_hash = result->image_hash;
  // Null for tracked mode: ChooseChangeSource then says the log lacks the parent's map.
  s.current->parent_used = result->used_map;
}

Status ChangeKeeper::PersistLocked(Source* s) {
  if (!s->current) {
    if (::unlink(PathOf(s->device).c_str()) != 0 && errno != ENOENT) {
      return Status::FromErrno(Code::kTarget, errno, "removing " + PathOf(s->device));
    }
    return Status::Ok();
  }
  // The counters first, then the last drain: a write completed before the counters were read
  // was queued (and recorded) before the drain, so it is in the file; any write after them
  // changes them, and the log is then not taken back.
  auto counters = options_.write_counters(s->device);
  if (!counters.ok()) return counters.status();
  HOTSNAP_RETURN_IF_ERROR(DrainLocked(s));
  if (!s->current) return Status::Ok();
  const Log& log = *s->current;
  nlohmann::ordered_json j;
  j["version"] = kChangeLogFileVersion;
  j["device"] = s->device;
  j["boot_id"] = log.token.boot_id;
  j["parent_image_hash"] = log.token.parent_image_hash.Hex();
  j["lost_records"] = log.token.lost_records;
  j["device_bytes"] = log.token.device_bytes;
  j["write_counters"] = {{"stat", counters->stat_path},
                         {"write_ios", counters->write_ios},
                         {"write_sectors", counters->write_sectors},
                         {"discard_ios", counters->discard_ios},
                         {"discard_sectors", counters->discard_sectors}};
  j["changed"] = ExtentsJson(log.changed);
  if (log.parent_used) {
    j["parent_used"] = UsedMapJson(*log.parent_used);
  } else {
    j["parent_used"] = nullptr;
  }
  const std::string dir = options_.state_dir + "/changelog";
  HOTSNAP_RETURN_IF_ERROR(MakeDir(options_.state_dir, 0700));
  HOTSNAP_RETURN_IF_ERROR(MakeDir(dir, 0700));
  return WriteFileAtomically(dir, PathOf(s->device), j.dump() + "\n");
}

Status ChangeKeeper::Persist() {
  std::lock_guard<std::mutex> lock(mu_);
  Status first;
  for (auto& [device, s] : sources_) {
    Status st = PersistLocked(&s);
    if (first.ok() && !st.ok()) first = st;
  }
  return first;
}

void ChangeKeeper::DrainAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [device, s] : sources_) (void)DrainLocked(&s);  // a failure is kept as no_log_reason
}

Status ChangeKeeper::PersistAndStop() {
  Status st = Persist();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [device, s] : sources_) s.tracker.reset();
  return st;
}

Result<std::vector<LoadedLog>> ChangeKeeper::Load() {
  const std::string dir = options_.state_dir + "/changelog";
  std::vector<std::string> files;
  {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
      if (errno == ENOENT) return std::vector<LoadedLog>{};
      return Status::FromErrno(Code::kTarget, errno, "reading " + dir);
    }
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0)
        files.push_back(dir + "/" + name);
    }
    ::closedir(d);
  }
  std::sort(files.begin(), files.end());
  std::vector<LoadedLog> loaded;
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& file : files) {
    LoadedLog l;
    auto discard = [&](const std::string& why) {
      l.valid = false;
      l.reason = "the change log kept in " + file + " was discarded: " + why;
      (void)::unlink(file.c_str());  // best effort: a stale file is distrusted again next time
      if (!l.source.empty()) {
        Source& s = SourceLocked(l.source);
        s.current.reset();
        s.tracker.reset();
        s.no_log_reason = l.reason;
      }
      loaded.push_back(l);
    };
    nlohmann::json j;
    try {
      std::ifstream in(file);
      j = nlohmann::json::parse(in);
      l.source = j.at("device").get<std::string>();
      if (j.at("version").get<int>() != kChangeLogFileVersion) {
        discard("format version " + std::to_string(j.at("version").get<int>()) + " unknown");
        continue;
      }
    } catch (const std::exception& e) {
      discard(std::string("unreadable (") + e.what() + ")");
      continue;
    }
    auto log = std::make_unique<Log>();
    DeviceWriteCounters then;
    try {
      log->token.boot_id = j.at("boot_id").get<std::string>();
      auto hash = ParseHashHex(j.at("parent_image_hash").get<std::string>());
      if (!hash) throw std::runtime_error("bad parent_image_hash");
      log->token.parent_image_hash = *hash;
      log->token.lost_records = j.at("lost_records").get<uint64_t>();
      log->token.device_bytes = j.at("device_bytes").get<uint64_t>();
      const auto& c = j.at("write_counters");
      then.stat_path = c.at("stat").get<std::string>();
      then.write_ios = c.at("write_ios").get<uint64_t>();
      then.write_sectors = c.at("write_sectors").get<uint64_t>();
      then.discard_ios = c.at("discard_ios").get<uint64_t>();
      then.discard_sectors = c.at("discard_sectors").get<uint64_t>();
      log->changed = ExtentsFrom(j.at("changed"));
      if (!j.at("parent_used").is_null()) {
        auto used = UsedMapFrom(j.at("parent_used"));
        if (!used.ok()) throw std::runtime_error(used.status().message());
        log->parent_used = std::move(used.value());
      }
    } catch (const std::exception& e) {
      discard(std::string("unreadable (") + e.what() + ")");
      continue;
    }
    const std::string boot = options_.boot_id();
    if (log->token.boot_id != boot) {
      discard("it was recorded in boot " + log->token.boot_id + ", this is boot " + boot +
              " (writes made across the reboot are not in it)");
      continue;
    }
    // Track first, then compare: a write after the counters are read is in the new tracker.
    Source& s = SourceLocked(l.source);
    s.tracker.reset();
    Status started = StartTrackerLocked(&s);
    if (!started.ok()) {
      discard(started.message());
      continue;
    }
    if (s.device_bytes != log->token.device_bytes) {
      discard("the device has " + std::to_string(s.device_bytes) + " bytes now, " +
              std::to_string(log->token.device_bytes) + " when it was recorded");
      continue;
    }
    auto now = options_.write_counters(l.source);
    if (!now.ok()) {
      discard(now.status().message());
      continue;
    }
    if (!(*now == then)) {
      discard("the device was written while no write recording ran: " + now->stat_path + " says " +
              now->Describe() + ", " + then.Describe() + " when the log was kept");
      continue;
    }
    s.current = std::move(log);
    s.next.reset();
    s.no_log_reason.clear();
    l.valid = true;
    loaded.push_back(l);
  }
  return loaded;
}

}  // namespace hotsnap
