#!/usr/bin/env bash
# Regenerates the seed corpus in tests/fuzz/corpus from real images made by the real binary:
# a plain image of a small regular file (3 chunks, the last one short), a plain image of a
# loop device holding ext4, and a tracked-layout image of that ext4 mounted and written to
# during the backup. Each image seeds the whole-image targets; its frames, cut out, seed the
# frame targets. Keeps regression inputs (files named crash-*) untouched. Run as root:
#
#   tests/fuzz/make_corpus.sh [HOTSNAP_BINARY]     # default build/hotsnap
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
hotsnap="${1:-$root/build/hotsnap}"
corpus="$root/tests/fuzz/corpus"
work=$(mktemp -d)
loop=""
cleanup() {
  mountpoint -q "$work/mnt" 2>/dev/null && umount -l "$work/mnt"
  [[ -n $loop ]] && losetup -d "$loop" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# 1. A regular file: text, zeros, a little random data, 9 MiB + 300 KiB (3 chunks).
{ seq 1 200000; head -c 3000000 /dev/zero; head -c 20000 /dev/urandom; } > "$work/file.raw"
truncate -s $((9 * 1024 * 1024 + 300 * 1024)) "$work/file.raw"
"$hotsnap" backup "$work/file.raw" -o "$work/plain-file.zst" --no-progress -q

# 2. ext4 on a 16 MiB loop device, idle: a plain image.
truncate -s 16M "$work/dev.img"
loop=$(losetup -f --show "$work/dev.img")
mkfs.ext4 -q -F "$loop"
mkdir "$work/mnt"
mount "$loop" "$work/mnt"
seq 1 50000 > "$work/mnt/numbers"
umount "$work/mnt"
"$hotsnap" backup "$loop" -o "$work/plain-ext4.zst" --snapshot none --no-progress -q

# 3. The same ext4 mounted and written to during the backup: the tracked layout.
mount "$loop" "$work/mnt"
( for i in $(seq 1 400); do seq 1 $((i * 50)) > "$work/mnt/f$((i % 7))"; sync; done ) &
writer=$!
"$hotsnap" backup "$loop" -o "$work/tracked-ext4.zst" --snapshot tracked --no-progress -q || true
wait "$writer" || true
umount "$work/mnt"

python3 - "$work" "$corpus" <<'PY'
import os, struct, sys, zlib
work, corpus = sys.argv[1], sys.argv[2]
POISON = bytes.fromhex("28b52ffd2c0001000099e9d851")
def put(target, name, data):
    d = os.path.join(corpus, target); os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f: f.write(data)
def zstd_frame_size(b, at):
    # Walk the zstd frame's blocks (RFC 8878) to find its end.
    fhd = b[at + 4]; single = (fhd >> 5) & 1; did = fhd & 3; fcs = fhd >> 6; checksum = (fhd >> 2) & 1
    n = 4 + 1 + (0 if single else 1) + [0, 1, 2, 4][did] + ([1 if single else 0, 2, 4, 8][fcs])
    p = at + n
    while True:
        h = b[p] | b[p + 1] << 8 | b[p + 2] << 16; last = h & 1; t = (h >> 1) & 3; size = h >> 3
        p += 3 + (1 if t == 1 else size)
        if last: break
    return p + (4 if checksum else 0) - at
for img in sorted(f for f in os.listdir(work) if f.endswith(".zst")):
    b = open(os.path.join(work, img), "rb").read()
    stem = img[:-4]
    put("fuzz_scan_image", stem, b); put("fuzz_image_index", stem, b)
    at, chunk = 0, 0
    while at < len(b):
        magic = struct.unpack_from("<I", b, at)[0]
        if at == 0 and b[:13] == POISON:
            at += 13; continue
        if magic & 0xFFFFFFF0 == 0x184D2A50:
            size = struct.unpack_from("<I", b, at + 4)[0]
            payload = b[at + 8: at + 8 + size]
            if magic == 0x184D2A50:
                put("fuzz_metadata", stem + "-json", payload[12:-16]); put("fuzz_metadata", stem + "-payload", payload)
            elif magic == 0x184D2A51: put("fuzz_trailer", stem, payload)
            elif magic == 0x184D2A52: put("fuzz_frames", stem + "-round-%d" % at, bytes([0x03]) + payload)
            elif magic == 0x184D2A53: put("fuzz_frames", stem + "-report", bytes([0x00]) + payload)
            elif magic == 0x184D2A5E: put("fuzz_seek_table", stem, b[at: at + 8 + size])
            at += 8 + size
        else:
            n = zstd_frame_size(b, at)
            frame = b[at: at + n]
            # 4 MiB chunks, expected = declared size, round trip (see fuzz_chunk_decode.cc).
            if chunk < 4: put("fuzz_chunk_decode", "%s-chunk-%d" % (stem, chunk), bytes([0x1e]) + frame)
            chunk += 1; at += n
PY
# Small frames made by stock zstd (with and without the content size and checksum).
seq 1 30000 | zstd -q -c --content-size --check > "$work/a"; printf '\x1e' | cat - "$work/a" > "$corpus/fuzz_chunk_decode/zstd-text"
head -c 65536 /dev/zero | zstd -q -c --no-check > "$work/b"; printf '\x08' | cat - "$work/b" > "$corpus/fuzz_chunk_decode/zstd-zeros-nocheck"
ls -la "$corpus"/*
