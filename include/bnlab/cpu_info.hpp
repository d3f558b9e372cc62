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
  int64_t llc = 0;  // the share of cpu0's last-level cache this process can rely on, bytes
};

// The sizes assumed when the machine tells none (a small server core of today).
constexpr CacheSizes kDefaultCacheSizes{int64_t{32} << 10, int64_t{1} << 20, int64_t{32} << 20};

struct CpuInfo {
  std::string model;                  // "model name" of /proc/cpuinfo, else CPUID's brand string
  CacheSizes caches;                  // after the environment's overrides
  std::string cache_source;           // "sysfs", "sysconf", "cpuid" or "default", "+ BNLAB_*_BYTES"
  int64_t llc_instance = 0;           // one last-level cache as the machine reports it, bytes
  int llc_sharing_cpus = 0;           // logical CPUs that share it, 0 when no source tells
  int process_cpus = 0;               // CPUs this process may run on (its affinity mask)
  std::vector<std::string> features;  // of avx2 fma avx512f avx512bw avx512vl avx512_vnni
                                      // avx512_bf16 avx512_fp16 amx_tile amx_bf16 amx_int8
};

// Read on the first call, each size from the first source that tells it:
// sysfs (cpu0's cache/index*), CPUID leaf 4 (Intel) or 0x8000001D (AMD),
// sysconf(_SC_LEVEL*_CACHE_SIZE), kDefaultCacheSizes. The last level comes with
// the logical CPUs sharing it (sysfs's shared_cpu_list, or CPUID's count where
// that is larger, since a guest lists only its own CPUs); sysconf's L3 counts
// as shared by the whole package, because glibc reports the package's L3 on
// some AMD VMs (508 MiB for 32 MiB per CCX). caches.llc is llc_share() of it.
// Then BNLAB_L1D_BYTES, BNLAB_L2_BYTES and BNLAB_LLC_BYTES replace what they
// name. Throws Error naming the variable when one of them is not a size.
const CpuInfo& cpu_info();

// The most LLC a process can rely on per CPU it runs on. No x86 part gives a
// core more than 12 MiB (Zen X3D: 96 MiB for 8 cores), so a guest that sees
// more per CPU is seeing its host's cache, shared with the host's other
// tenants (an Intel Xeon VM: 480 MiB for its 2 CPUs).
constexpr int64_t kMaxLlcPerCpu = int64_t{16} << 20;

// The share of an LLC of `instance` bytes shared by `sharing_cpus` logical CPUs
// that a process on `process_cpus` of them can rely on when other tenants use
// the rest: instance * process_cpus / sharing_cpus (the instance itself when
// sharing_cpus is 0, unknown, or no more than process_cpus), then at most
// kMaxLlcPerCpu * process_cpus; never more than the instance nor less than
// `floor` bytes.
int64_t llc_share(int64_t instance, int sharing_cpus, int process_cpus, int64_t floor);

// The number of CPUs in a Linux CPU list ("0-3,8,10-11" -> 7), -1 when the text
// is not one.
int cpu_list_count(const std::string& list);

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
