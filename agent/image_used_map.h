// The used-block map of the filesystem inside an image, read from the image itself: what
// `restore --changed-only` compares (agent/changed_restore.h).
//
// A backup stores the blocks its map found free as zeros, and the image holds the
// filesystem's own record of which blocks those are. For the image of one ext2/3/4 or xfs
// filesystem whose metadata says it was mapped that way ("ext4 bitmap", "xfs bnobt"), the map
// is made again from the image's bytes, read through the image's decoder (only the chunks
// holding the records are decoded): libext2fs reads the superblock, group descriptors and
// bitmaps (fsmap/ext_ranged_io.h), the xfs reader the superblock, log, AGFs, AGFLs and
// free-space btrees, with the rules of fsmap/used_block_map.h (unused ext inode-table tails
// are free). Every other image gets UsedBlockMap::AllBlocks and a reason: a whole disk, an
// image taken with --all-blocks or without a filesystem, or one whose records cannot be read
// or trusted (the map's own fallbacks).
#ifndef HOTSNAP_AGENT_IMAGE_USED_MAP_H_
#define HOTSNAP_AGENT_IMAGE_USED_MAP_H_

#include <string>

#include "base/status.h"
#include "fsmap/used_block_map.h"
#include "io/image_random_reader.h"

namespace hotsnap {

// The map of `image`'s filesystem, in bytes of the image's device (device_bytes() long).
// When it is every block, *why_all says why (a clause: "a whole-disk image", ...; also when
// the bitmaps cannot be read from the image or libext2fs rejects them, with the error); it is
// cleared otherwise. Never fails: comparing every block needs no map.
UsedBlockMap MapImageUsedBlocks(ImageRandomReader& image, std::string* why_all);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_IMAGE_USED_MAP_H_
