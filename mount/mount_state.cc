#include "mount/mount_state.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/image_format.h"

namespace hotsnap {
namespace {

Status MakeDirs(const std::string& path) {
  std::string partial;
  std::stringstream parts(path);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    partial += "/" + part;
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      return Status::FromErrno(Code::kTarget, errno, "creating " + partial);
    }
  }
  return Status::Ok();
}

std::string RecordPath(const std::string& id) { return MountsDir() + "/" + id + ".json"; }

}  // namespace

std::string RunDir() {
  const char* env = std::getenv("HOTSNAP_RUN_DIR");
  return env != nullptr && env[0] == '/' ? std::string(env) : std::string("/run/hotsnap");
}

std::string MountsDir() { return RunDir() + "/mounts"; }

std::string MountIdFor(const std::string& canonical_mount_point) {
  // Short and stable; the record itself holds the full path.
  return HashBytes(canonical_mount_point.data(), canonical_mount_point.size()).Hex().substr(0, 16);
}

MountRecord NewMountRecord(const std::string& image, const std::string& canonical_mount_point) {
  MountRecord r;
  r.id = MountIdFor(canonical_mount_point);
  r.image = image;
  r.mount_point = canonical_mount_point;
  r.fuse_dir = MountsDir() + "/" + r.id;
  r.device_file = r.fuse_dir + "/device";
  r.log_file = MountsDir() + "/" + r.id + ".log";
  return r;
}

Status WriteMountRecord(const MountRecord& r) {
  HOTSNAP_RETURN_IF_ERROR(MakeDirs(MountsDir()));
  nlohmann::ordered_json j;
  j["id"] = r.id;
  j["image"] = r.image;
  j["mount_point"] = r.mount_point;
  j["fuse_dir"] = r.fuse_dir;
  j["device_file"] = r.device_file;
  j["parts"] = nlohmann::ordered_json::array();
  for (const MountedPart& p : r.parts) {
    nlohmann::ordered_json part;
    part["partition"] = p.partition;
    part["fs_type"] = p.fs_type;
    part["mount_point"] = p.mount_point;
    part["loop_device"] = p.loop_device;
    part["created_dir"] = p.created_dir;
    j["parts"].push_back(std::move(part));
  }
  j["skipped"] = r.skipped;
  j["pid"] = r.pid;
  j["pid_start_ticks"] = r.pid_start_ticks;
  j["log_file"] = r.log_file;
  std::string text = j.dump(2) + "\n";
  std::string path = RecordPath(r.id);
  std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) return Status(Code::kTarget, "writing " + temp);
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    return Status::FromErrno(Code::kTarget, err, "renaming " + temp);
  }
  return Status::Ok();
}

Result<MountRecord> ReadMountRecord(const std::string& id) {
  std::string path = RecordPath(id);
  std::ifstream in(path);
  if (!in) return Status(Code::kUsage, "no hotsnap mount record " + path);
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    MountRecord r;
    r.id = j.at("id").get<std::string>();
    r.image = j.at("image").get<std::string>();
    r.mount_point = j.at("mount_point").get<std::string>();
    r.fuse_dir = j.at("fuse_dir").get<std::string>();
    r.device_file = j.at("device_file").get<std::string>();
    if (j.contains("parts")) {
      for (const nlohmann::json& part : j.at("parts")) {
        MountedPart p;
        p.partition = part.at("partition").get<int>();
        p.fs_type = part.at("fs_type").get<std::string>();
        p.mount_point = part.at("mount_point").get<std::string>();
        p.loop_device = part.at("loop_device").get<std::string>();
        p.created_dir = part.at("created_dir").get<bool>();
        r.parts.push_back(std::move(p));
      }
      r.skipped = j.at("skipped").get<std::vector<std::string>>();
    } else {
      // A record of a server from before whole-disk mounts: one filesystem at the mount point.
      MountedPart p;
      p.fs_type = j.at("fs_type").get<std::string>();
      p.mount_point = r.mount_point;
      p.loop_device = j.at("loop_device").get<std::string>();
      r.parts.push_back(std::move(p));
    }
    r.pid = j.at("pid").get<pid_t>();
    r.pid_start_ticks = j.at("pid_start_ticks").get<uint64_t>();
    r.log_file = j.at("log_file").get<std::string>();
    if (r.id != id) return Status(Code::kInternal, path + " names another id, " + r.id);
    return r;
  } catch (const nlohmann::json::exception& e) {
    return Status(Code::kInternal, "mount record " + path + " is unreadable: " + e.what());
  }
}

std::vector<MountRecord> ListMountRecords(std::vector<std::string>* problems) {
  std::vector<MountRecord> records;
  DIR* dir = ::opendir(MountsDir().c_str());
  if (dir == nullptr) return records;
  std::vector<std::string> ids;
  while (struct dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    const std::string suffix = ".json";
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      ids.push_back(name.substr(0, name.size() - suffix.size()));
    }
  }
  ::closedir(dir);
  for (const std::string& id : ids) {
    auto r = ReadMountRecord(id);
    if (r.ok()) records.push_back(std::move(r.value()));
    else if (problems != nullptr) problems->push_back(r.status().message());
  }
  return records;
}

void RemoveMountRecord(const MountRecord& r) {
  for (const MountedPart& p : r.parts) {
    if (p.created_dir) ::rmdir(p.mount_point.c_str());  // only if empty: never a user's files
  }
  ::rmdir(r.fuse_dir.c_str());
  ::unlink(r.log_file.c_str());
  ::unlink(RecordPath(r.id).c_str());
}

bool ServerAlive(const MountRecord& r) {
  return r.pid > 0 && r.pid_start_ticks != 0 && ProcessStartTicks(r.pid) == r.pid_start_ticks;
}

}  // namespace hotsnap
