#!/usr/bin/env bash
# Benchmark of issue 3 (read only what the filesystem uses), in one run: hotsnap (used
# blocks), hotsnap --all-blocks, `dd | zstd`, `partclone | zstd` and zstd over just the used
# bytes from memory on the 4 GiB reference image, then hotsnap on a 1 TiB sparse-file loop
# device holding the same data; the table, the ratios and the issue's targets.
#
#   bench/bench_used_blocks.sh [--keep] [--rebuild-image]
#
# It is bench/bench_backup.sh --all-blocks --tib (see there for the environment and what
# each column means).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/bench_backup.sh" --all-blocks --tib "$@"
