// Every cache-sized threshold of the kernels, in one place, derived from the
// machine's cache sizes (bnlab::cache_sizes(): sysfs, CPUID, sysconf, or the
// BNLAB_*_BYTES overrides; "LLC" is the share of it this process can rely on,
// bnlab::llc_share). Why each: docs/performance.md, 'Kernel choices';
// the factors are those measured on the 32 MiB-LLC, 1 MiB-L2 machine where
// the walks were tuned, so that machine keeps the figures it was tuned with.
//
//  - streaming stores: when x and the output together overflow the LLC (the
//    output would not be read back from cache; streaming skips reading its lines);
//  - channel by channel (channels-first training forward and backward): when
//    x alone overflows the LLC and a channel's two slices (x and y, or x and
//    dy) fit an eighth of it (each thread's slice stays cached between the
//    sums and the output, with room for the other threads' slices), or
//    whatever the LLC holds, when they fit half of L2 (the output pass then
//    reads x from L2, not the LLC);
//  - block by block (blocked16 training forward and backward): when x
//    overflows the LLC and a block of 16 channels' two slices fit half of it;
//  - GroupNorm/LayerNorm rows backward: a block of rows' x and dy within a
//    quarter of L2 (read again for the affine sums), the chunks' column sums
//    within half the LLC; channels-last tiles of at least an eighth of L2 per
//    rows block (the second pass from L2); channels-last samples larger than
//    7/8 of L2 shared by a team of threads when each one's share fits it (the
//    normalize pass then reads each share from its thread's L2, not the LLC).
// The walks' choices do not change results (the BN tests check it). The float-sum
// blocks of BN (kSpanBlock, kRowsBlock, the rows view's kMinBlockRows) stay fixed;
// GroupNorm's L2-sized blocks move where its float sums start, so its last bits
// may differ between machines, as they do between vector widths.
#pragma once

#include <cstdint>

#include "bnlab/cpu_info.hpp"

namespace bnlab::kernels {

struct CacheThresholds {
  int64_t stream_bytes;               // stream when x + output bytes exceed this
  int64_t by_channel_bytes;           // by channel / block only when x bytes exceed this
  int64_t by_channel_slice_bytes;     // ... and a channel's x + dy (or y) bytes fit this
  int64_t by_channel_l2_slice_bytes;  // by channel too when a channel's x + dy (or y) fit this
  int64_t by_block_bytes;             // ... and a 16-channel block's x + dy (or y) fit this
  int64_t norm_row_block_bytes;       // GroupNorm rows backward: x + dy of a block of rows
  int64_t norm_max_part_bytes;        // GroupNorm rows backward: the chunks' column sums
  int64_t norm_min_tile_block_bytes;  // GroupNorm channels-last: a rows block of a tile, at least
  int64_t norm_team_share_bytes;  // GroupNorm channels-last forward: a thread's share of a sample
};

// From cache_sizes() on each call: a few loads and shifts, so that
// set_cache_sizes() takes effect at the next kernel call.
inline CacheThresholds cache_thresholds() {
  const CacheSizes caches = cache_sizes();
  return {.stream_bytes = caches.llc,
          .by_channel_bytes = caches.llc,
          .by_channel_slice_bytes = caches.llc / 8,
          .by_channel_l2_slice_bytes = caches.l2 / 2,
          .by_block_bytes = caches.llc / 2,
          .norm_row_block_bytes = caches.l2 / 4,
          .norm_max_part_bytes = caches.llc / 2,
          .norm_min_tile_block_bytes = caches.l2 / 8,
          .norm_team_share_bytes = caches.l2 * 7 / 8};
}

}  // namespace bnlab::kernels
