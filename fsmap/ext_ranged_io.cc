#include "fsmap/ext_ranged_io.h"

#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace hotsnap {
namespace {

constexpr char kNamePrefix[] = "hotsnap-ranged:";

RangedReader* SourceOf(io_channel channel) { return static_cast<RangedReader*>(channel->private_data); }

errcode_t RangedClose(io_channel channel) {
  if (--channel->refcount > 0) return 0;
  std::free(channel->name);
  std::free(channel);
  return 0;
}

errcode_t RangedSetBlksize(io_channel channel, int blksize) {
  if (blksize <= 0) return EXT2_ET_INVALID_ARGUMENT;
  channel->block_size = blksize;
  return 0;
}

// `count` blocks, or -count bytes when negative (libext2fs' convention).
errcode_t RangedRead64(io_channel channel, unsigned long long block, int count, void* data) {
  const uint64_t bytes = count < 0 ? static_cast<uint64_t>(-static_cast<int64_t>(count))
                                   : static_cast<uint64_t>(count) * static_cast<uint64_t>(channel->block_size);
  const uint64_t offset = static_cast<uint64_t>(block) * static_cast<uint64_t>(channel->block_size);
  RangedReader* source = SourceOf(channel);
  if (offset > source->size_bytes() || bytes > source->size_bytes() - offset) return EXT2_ET_SHORT_READ;
  Status s = source->Read(offset, bytes, data);
  if (s.ok()) return 0;
  return s.code() == Code::kIntegrity ? EXT2_ET_SHORT_READ : EIO;
}

errcode_t RangedRead(io_channel channel, unsigned long block, int count, void* data) {
  return RangedRead64(channel, block, count, data);
}

errcode_t RangedWrite(io_channel, unsigned long, int, const void*) { return EROFS; }
errcode_t RangedWrite64(io_channel, unsigned long long, int, const void*) { return EROFS; }
errcode_t RangedWriteByte(io_channel, unsigned long, int, const void*) { return EROFS; }
errcode_t RangedFlush(io_channel) { return 0; }
errcode_t RangedSetOption(io_channel, const char*, const char*) { return EXT2_ET_INVALID_ARGUMENT; }

errcode_t RangedOpen(const char* name, int flags, io_channel* channel);

struct_io_manager MakeManager() {
  struct_io_manager m;
  std::memset(&m, 0, sizeof(m));
  m.magic = EXT2_ET_MAGIC_IO_MANAGER;
  m.name = "hotsnap ranged reader";
  m.open = RangedOpen;
  m.close = RangedClose;
  m.set_blksize = RangedSetBlksize;
  m.read_blk = RangedRead;
  m.write_blk = RangedWrite;
  m.flush = RangedFlush;
  m.write_byte = RangedWriteByte;
  m.set_option = RangedSetOption;
  m.read_blk64 = RangedRead64;
  m.write_blk64 = RangedWrite64;
  return m;
}

struct_io_manager manager = MakeManager();

errcode_t RangedOpen(const char* name, int flags, io_channel* channel) {
  if (name == nullptr || std::strncmp(name, kNamePrefix, sizeof(kNamePrefix) - 1) != 0) {
    return EXT2_ET_BAD_DEVICE_NAME;
  }
  if (flags & IO_FLAG_RW) return EROFS;
  void* source = nullptr;
  if (std::sscanf(name + sizeof(kNamePrefix) - 1, "%p", &source) != 1 || source == nullptr) {
    return EXT2_ET_BAD_DEVICE_NAME;
  }
  auto* io = static_cast<io_channel>(std::calloc(1, sizeof(struct_io_channel)));
  if (io == nullptr) return EXT2_ET_NO_MEMORY;
  io->name = strdup(name);
  if (io->name == nullptr) {
    std::free(io);
    return EXT2_ET_NO_MEMORY;
  }
  io->magic = EXT2_ET_MAGIC_IO_CHANNEL;
  io->manager = &manager;
  io->block_size = 1024;  // libext2fs' starting size, until it has read the superblock
  io->refcount = 1;
  io->private_data = source;
  *channel = io;
  return 0;
}

}  // namespace

struct_io_manager* RangedIoManager() { return &manager; }

std::string RangedIoName(RangedReader* source) {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%p", kNamePrefix, static_cast<void*>(source));
  return name;
}

}  // namespace hotsnap
