# shellcheck shell=bash disable=SC2154  # bench_dir, rebuild, mnt, build_loop: the caller's
# The reference disk of the restore benchmarks (bench_restore.sh, bench_changed_restore.sh):
# a 1 GiB ext4 nearly full of system files and incompressible bytes, built once and cached as
# a file. Sourced, not run. The caller sets bench_dir, rebuild (1: build anew) and keep, and
# its cleanup trap undoes `mnt` and `build_loop` (set here while building).
#
#   ensure_reference_disk   sets source_img (the cached file) and recipe_file; builds it if
#                           missing, stale or rebuild=1
#   write_random NAME BYTES FILE   deterministic incompressible bytes (AES-128-CTR keystream)

source_img="$bench_dir/ext4-1g-full.img"
recipe_file="$bench_dir/ext4-1g-full.recipe"
# Bump when the recipe below changes, so stale cached images are rebuilt.
reference_recipe="v1: 1 GiB ext4; kept: /usr/lib 480 MB, /usr/share 150 MB, 192 MiB aes-ctr"

write_random() {
  openssl enc -aes-128-ctr -pbkdf2 -nosalt -pass "pass:hotsnap-$1" < /dev/zero 2>/dev/null \
    | head -c "$2" > "$3" || true  # head closing the pipe makes openssl fail: expected
  [[ $(stat -c %s "$3") -eq $2 ]] || die "short random file $3"
}

build_reference_disk() {
  local mb=$((1000 * 1000)) t i
  t=$(now)
  log "building the 1 GiB source image (once; cached in $bench_dir with --keep)"
  rm -f "$source_img" "$recipe_file" "$source_img.tmp"
  truncate -s 1G "$source_img.tmp"
  build_loop=$(losetup -f --show "$source_img.tmp")
  mkfs.ext4 -q -F -L hotsnap-restore -U 5e7a0b2c-8d41-4f3e-b6a9-2c1d0e9f8a71 \
    -E lazy_itable_init=0,lazy_journal_init=0,hash_seed=0d8b3f2a-4a55-4a3e-8c61-7f0d2c9b5e42 \
    "$build_loop"
  mnt=$(mktemp -d "$bench_dir/mnt.XXXXXX")
  mount "$build_loop" "$mnt"
  mkdir -p "$mnt/kept/random"
  copy_with_budget $((480 * mb)) "$mnt/kept" /usr/lib >/dev/null
  copy_with_budget $((150 * mb)) "$mnt/kept" /usr/share >/dev/null
  for i in 1 2 3; do write_random "restore-$i" $((64 * 1024 * 1024)) "$mnt/kept/random/$i.bin"; done
  sync
  log "source filesystem: $(df -h --output=used,size,pcent "$mnt" | tail -n 1)"
  umount "$mnt"; rmdir "$mnt"; mnt=""
  e2fsck -fn "$build_loop" >/dev/null || die "e2fsck found errors in the new image"
  losetup -d "$build_loop"; build_loop=""
  mv "$source_img.tmp" "$source_img"
  printf '%s\n' "$reference_recipe" > "$recipe_file"
  log "source image built in $(elapsed "$t") s"
}

ensure_reference_disk() {
  if [[ ${rebuild:-0} -eq 1 || ! -f $source_img || ! -f $recipe_file ||
        "$(cat "$recipe_file")" != "$reference_recipe" ]]; then
    build_reference_disk
  else
    log "reusing cached source image $source_img"
  fi
}
