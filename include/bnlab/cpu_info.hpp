// The CPU the process runs on: its model, the instruction-set extensions the
// kernels and the benchmark care about, and its cache sizes, read once. The
// kernels derive every cache-sized threshold from cache_sizes()
// (src/kernels/cache_thresholds.hpp; docs/performance.md, 'Kernel choices').
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bnlab {

struct CacheSizes {
  int64_t l1d = 0;  // one core's level-1 data cache, bytes
  int64_t l2 = 0;   // one core's level-2 cache, bytes
  int64_t llc = 0;  // the last-level cache cpu0 shares, bytes
};

// The sizes assumed when the machine tells none (a small server core of today).
constexpr CacheSizes kDefaultCacheSizes{int64_t{32} << 10, int64_t{1} << 20, int64_t{32} << 20};

struct CpuInfo {
  std::string model;                  // "model name" of /proc/cpuinfo, else CPUID's brand string
  CacheSizes caches;                  // after the environment's overrides
  std::string cache_source;           // "sysfs", "sysconf", "cpuid" or "default", "+ BNLAB_*_BYTES"
  std::vector<std::string> features;  // of avx2 fma avx512f avx512bw avx512vl avx512_vnni
                                      // avx512_bf16 avx512_fp16 amx_tile amx_bf16 amx_int8
};

// Read on the first call, in this order per size: sysfs (cpu0's cache/index*),
// sysconf(_SC_LEVEL*_CACHE_SIZE), CPUID leaf 4 (Intel) or 0x8000001D (AMD),
// kDefaultCacheSizes; then BNLAB_L1D_BYTES, BNLAB_L2_BYTES and BNLAB_LLC_BYTES
// replace what they name. sysfs comes first because glibc's sysconf reports the
// L3 of the whole package on some AMD parts (320 MiB for 32 MiB per CCX).
// Throws Error naming the variable when one of them is not a size.
const CpuInfo& cpu_info();

// sizes with each of BNLAB_L1D_BYTES, BNLAB_L2_BYTES and BNLAB_LLC_BYTES that is
// set replacing its field: a count of bytes, or with a K, M or G suffix (KiB,
// MiB, GiB). Throws Error naming the variable and its value when it is not a
// positive size.
CacheSizes cache_sizes_from_environment(CacheSizes sizes);

// The sizes the kernels use: cpu_info().caches, unless set_cache_sizes()
// replaced some (for tests and benchmarks: a nonzero field replaces, a zero one
// restores the machine's). Throws Error on a negative field.
CacheSizes cache_sizes();
void set_cache_sizes(const CacheSizes& sizes);

}  // namespace bnlab
