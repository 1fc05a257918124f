#include "snapshot/write_tracker.h"

#include <fcntl.h>
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/log.h"
#include "base/parse_number.h"

namespace hotsnap {
namespace {

constexpr const char* kTracefs = "/sys/kernel/tracing";
constexpr const char* kEvent = "/sys/kernel/tracing/events/block/block_bio_queue";
constexpr size_t kDataPages = 512;  // 2 MiB per CPU with 4 KiB pages

// A small kernel attribute (sysfs, tracefs), whole.
Result<std::string> ReadText(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status(Code::kUnsupported, "cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A small kernel attribute holding one decimal number.
Result<uint64_t> ReadNumber(const std::string& path) {
  auto text = ReadText(path);
  if (!text.ok()) return text.status();
  return ParseDecimal<uint64_t>(*text, path, Code::kUnsupported);
}

Status EnsureTracefs() {
  if (::access((std::string(kEvent) + "/id").c_str(), R_OK) == 0) return Status::Ok();
  if (::mount("nodev", kTracefs, "tracefs", 0, nullptr) != 0 && errno != EBUSY) {
    return Status::FromErrno(Code::kUnsupported, errno, "mounting tracefs at /sys/kernel/tracing");
  }
  Notice("mounted tracefs at /sys/kernel/tracing to track writes");
  if (::access((std::string(kEvent) + "/id").c_str(), R_OK) != 0) {
    return Status(Code::kUnsupported, "the kernel has no block:block_bio_queue tracepoint");
  }
  return Status::Ok();
}

// Finds "field:...NAME;\toffset:N;\tsize:M;" in the tracepoint format description read
// from `path`.
Status FieldOf(const std::string& format, const std::string& path, const std::string& name,
               uint32_t* offset, uint32_t* size) {
  std::istringstream in(format);
  std::string line;
  while (std::getline(in, line)) {
    size_t f = line.find("field:");
    size_t semi = line.find(';');
    if (f == std::string::npos || semi == std::string::npos) continue;
    std::string decl = line.substr(f + 6, semi - f - 6);
    size_t bracket = decl.find('[');
    std::string id = decl.substr(0, bracket);
    id = id.substr(id.find_last_of(" *") + 1);
    if (id != name) continue;
    // "offset:N;" and "size:M;": the number runs to the next ';'.
    auto number = [&](const std::string& key) -> Result<uint32_t> {
      size_t at = line.find(key);
      if (at == std::string::npos) {
        return Status(Code::kUnsupported, path + ": no " + key + " for field " + name);
      }
      at += key.size();
      return ParseDecimal<uint32_t>(std::string_view(line).substr(at, line.find(';', at) - at),
                                    path + " (" + key + " of field " + name + ")",
                                    Code::kUnsupported);
    };
    auto o = number("offset:");
    if (!o.ok()) return o.status();
    auto s = number("size:");
    if (!s.ok()) return s.status();
    *offset = *o;
    *size = *s;
    return Status::Ok();
  }
  return Status(Code::kUnsupported, path + ": block_bio_queue has no field " + name);
}

int PerfEventOpen(perf_event_attr* attr, int cpu) {
  return static_cast<int>(::syscall(SYS_perf_event_open, attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC));
}

}  // namespace

Result<std::unique_ptr<WriteTracker>> WriteTracker::Start(const std::string& device,
                                                          uint64_t device_bytes,
                                                          CpuInfo* cpu_info) {
  struct stat st;
  if (::stat(device.c_str(), &st) != 0) return Status::FromErrno(Code::kSource, errno, device);
  if (!S_ISBLK(st.st_mode)) {
    return Status(Code::kUnsupported, device + " is not a block device; write tracking needs one");
  }
  std::unique_ptr<WriteTracker> t(new WriteTracker());
  t->device_bytes_ = device_bytes;
  // A partition: the tracepoint reports its disk and sectors from the disk's start.
  std::string sys = "/sys/dev/block/" + std::to_string(major(st.st_rdev)) + ":" +
                    std::to_string(minor(st.st_rdev));
  unsigned disk_major = major(st.st_rdev), disk_minor = minor(st.st_rdev);
  if (::access((sys + "/partition").c_str(), F_OK) == 0) {
    auto start_sectors = ReadNumber(sys + "/start");  // 512-byte sectors
    if (!start_sectors.ok()) return start_sectors.status().Wrap("partition " + device);
    t->start_bytes_ = *start_sectors * 512;
    auto disk_dev = ReadText(sys + "/../dev");  // "MAJ:MIN\n"
    if (!disk_dev.ok() || std::sscanf(disk_dev->c_str(), "%u:%u", &disk_major, &disk_minor) != 2) {
      return Status(Code::kSource, "cannot find the disk of partition " + device);
    }
  }
  t->disk_dev_ = (disk_major << 20) | disk_minor;

  HOTSNAP_RETURN_IF_ERROR(EnsureTracefs());
  const std::string format_path = std::string(kEvent) + "/format";
  auto format = ReadText(format_path);
  if (!format.ok()) return format.status();
  Layout& l = t->layout_;
  uint32_t dev_size = 0, sector_size = 0, nr_sector_size = 0;
  HOTSNAP_RETURN_IF_ERROR(FieldOf(*format, format_path, "dev", &l.dev_offset, &dev_size));
  HOTSNAP_RETURN_IF_ERROR(FieldOf(*format, format_path, "sector", &l.sector_offset, &sector_size));
  HOTSNAP_RETURN_IF_ERROR(
      FieldOf(*format, format_path, "nr_sector", &l.nr_sector_offset, &nr_sector_size));
  HOTSNAP_RETURN_IF_ERROR(FieldOf(*format, format_path, "rwbs", &l.rwbs_offset, &l.rwbs_size));
  if (dev_size != 4 || sector_size != 8 || nr_sector_size != 4) {
    return Status(Code::kUnsupported, format_path +
                                          ": block_bio_queue has an unexpected field "
                                          "layout (dev, sector, nr_sector of " +
                                          std::to_string(dev_size) + ", " +
                                          std::to_string(sector_size) + ", " +
                                          std::to_string(nr_sector_size) + " bytes)");
  }
  auto id = ReadNumber(std::string(kEvent) + "/id");
  if (!id.ok()) return id.status();
  std::string filter = "dev == " + std::to_string(t->disk_dev_);
  long page = ::sysconf(_SC_PAGESIZE);
  // One ring per online CPU: perf refuses an event on an offline CPU (ENODEV), so a CPU
  // brought online later has none, and Drain() fails once it sees one.
  t->cpu_info_ = cpu_info;
  auto cpus = cpu_info->OnlineCpus();
  if (!cpus.ok()) return cpus.status();
  if (cpus->empty()) return Status(Code::kInternal, "no online CPU to track writes on");
  t->cpus_ = *cpus;
  for (int cpu : t->cpus_) {
    perf_event_attr attr;
    std::memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_TRACEPOINT;
    attr.config = *id;
    attr.sample_period = 1;
    attr.sample_type = PERF_SAMPLE_RAW;
    attr.disabled = 1;
    attr.wakeup_events = 1;
    attr.read_format = PERF_FORMAT_LOST;
    Ring ring;
    ring.fd.Reset(PerfEventOpen(&attr, cpu));
    if (!ring.fd.valid() && errno == EINVAL) {
      attr.read_format = 0;  // before 6.0: no lost counter to read
      ring.fd.Reset(PerfEventOpen(&attr, cpu));
    }
    t->count_lost_ = attr.read_format == PERF_FORMAT_LOST;
    if (!ring.fd.valid()) {
      return Status::FromErrno(Code::kUnsupported, errno,
                               "perf_event_open(block:block_bio_queue) on CPU " + std::to_string(cpu));
    }
    if (::ioctl(ring.fd.get(), PERF_EVENT_IOC_SET_FILTER, filter.c_str()) != 0) {
      return Status::FromErrno(Code::kUnsupported, errno, "setting the tracepoint filter '" + filter + "'");
    }
    ring.bytes = (1 + kDataPages) * static_cast<size_t>(page);
    ring.base = ::mmap(nullptr, ring.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, ring.fd.get(), 0);
    if (ring.base == MAP_FAILED) {
      ring.base = nullptr;
      return Status::FromErrno(Code::kUnsupported, errno, "mapping the perf ring of CPU " + std::to_string(cpu));
    }
    t->rings_.push_back(std::move(ring));
  }
  for (Ring& r : t->rings_) {
    if (::ioctl(r.fd.get(), PERF_EVENT_IOC_ENABLE, 0) != 0) {
      return Status::FromErrno(Code::kUnsupported, errno, "enabling write tracking");
    }
  }
  return t;
}

WriteTracker::~WriteTracker() {
  for (Ring& r : rings_) {
    if (r.base != nullptr) ::munmap(r.base, r.bytes);
  }
}

void WriteTracker::OnSample(const uint8_t* raw, uint32_t size,
                            const std::function<void(uint64_t, uint64_t)>& on_write) {
  const Layout& l = layout_;
  if (size < l.rwbs_offset + 1 || size < l.nr_sector_offset + 4 || size < l.sector_offset + 8) return;
  uint32_t dev, nr;
  uint64_t sector;
  std::memcpy(&dev, raw + l.dev_offset, 4);
  std::memcpy(&sector, raw + l.sector_offset, 8);
  std::memcpy(&nr, raw + l.nr_sector_offset, 4);
  if (dev != disk_dev_ || nr == 0) return;
  // rwbs: "R", "RA", "W", "WS", "FWS", "D" (discard), "WZ"... Anything that moves data and
  // is not a read may change what a later read returns.
  bool read = false;
  for (uint32_t i = 0; i < l.rwbs_size && l.rwbs_offset + i < size && raw[l.rwbs_offset + i]; ++i) {
    if (raw[l.rwbs_offset + i] == 'R') read = true;
  }
  if (read) return;
  uint64_t begin = sector * 512, end = begin + uint64_t{nr} * 512;
  uint64_t dev_begin = start_bytes_, dev_end = start_bytes_ + device_bytes_;
  if (end <= dev_begin || begin >= dev_end) return;  // another partition of the disk
  begin = std::max(begin, dev_begin);
  end = std::min(end, dev_end);
  on_write(begin - start_bytes_, end - begin);
}

void WriteTracker::DrainRing(Ring* ring, const std::function<void(uint64_t, uint64_t)>& on_write,
                             uint64_t* lost) {
  auto* meta = static_cast<perf_event_mmap_page*>(ring->base);
  const uint8_t* data = static_cast<const uint8_t*>(ring->base) + meta->data_offset;
  const uint64_t data_size = meta->data_size;
  uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
  uint64_t tail = meta->data_tail;
  // The kernel's own count of records it could not store, read before the ring is emptied.
  if (count_lost_) {
    uint64_t counters[2] = {0, 0};  // value, lost
    if (::read(ring->fd.get(), counters, sizeof(counters)) == sizeof(counters)) {
      if (counters[1] > ring->lost_seen) *lost += counters[1] - ring->lost_seen;
      ring->lost_seen = counters[1];
    }
  } else if (head - tail > data_size / 2) {
    *lost += 1;  // no counter: a ring this full may have overflowed
  }
  while (tail + sizeof(perf_event_header) <= head) {
    perf_event_header hdr;
    for (size_t i = 0; i < sizeof(hdr); ++i) {
      reinterpret_cast<uint8_t*>(&hdr)[i] = data[(tail + i) % data_size];
    }
    if (hdr.size < sizeof(hdr) || tail + hdr.size > head) break;
    // Copy the record out if it wraps around the end of the ring.
    const uint8_t* rec;
    uint64_t at = tail % data_size;
    if (at + hdr.size <= data_size) {
      rec = data + at;
    } else {
      scratch_.resize(hdr.size);
      size_t first = data_size - at;
      std::memcpy(scratch_.data(), data + at, first);
      std::memcpy(scratch_.data() + first, data, hdr.size - first);
      rec = scratch_.data();
    }
    if (hdr.type == PERF_RECORD_SAMPLE && hdr.size >= sizeof(hdr) + 4) {
      uint32_t raw_size;
      std::memcpy(&raw_size, rec + sizeof(hdr), 4);
      if (sizeof(hdr) + 4 + raw_size <= hdr.size) OnSample(rec + sizeof(hdr) + 4, raw_size, on_write);
    } else if (hdr.type == PERF_RECORD_LOST && hdr.size >= sizeof(hdr) + 16 && !count_lost_) {
      uint64_t n;  // with the counter read above, this marker would count the loss twice
      std::memcpy(&n, rec + sizeof(hdr) + 8, 8);  // struct { header; u64 id; u64 lost; }
      *lost += n;
    }
    tail += hdr.size;
  }
  __atomic_store_n(&meta->data_tail, tail, __ATOMIC_RELEASE);
}

Result<uint64_t> WriteTracker::Drain(const std::function<void(uint64_t, uint64_t)>& on_write) {
  uint64_t lost = 0;
  for (Ring& r : rings_) DrainRing(&r, on_write, &lost);
  // Checked after the rings are read: a CPU online now may have queued writes we never saw.
  auto online = cpu_info_->OnlineCpus();
  if (!online.ok()) return online.status().Wrap("checking for CPU hotplug during write tracking");
  if (*online != cpus_) {
    return Status(Code::kSource,
                  "the online CPUs changed while writes were tracked (" + FormatCpuList(cpus_) +
                      " at the start, " + FormatCpuList(*online) +
                      " now): writes issued on a CPU brought online after the start are not "
                      "seen, so the copy cannot be trusted; run the backup again once CPU "
                      "hotplug is over");
  }
  return lost;
}

}  // namespace hotsnap
