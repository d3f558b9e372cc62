// The CPU's model, features and cache sizes (bnlab/cpu_info.hpp).
#include "bnlab/cpu_info.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "bnlab/error.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define BNLAB_HAS_CPUID 1
#else
#define BNLAB_HAS_CPUID 0
#endif

namespace bnlab {
namespace {

// "32K", "1024K", "32M", "335544320" -> bytes; -1 when it is not a size.
int64_t parse_size(const std::string& text) {
  if (text.empty() || text[0] < '0' || text[0] > '9') return -1;
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    return -1;
  }
  const std::string suffix = text.substr(used);
  int shift = 0;
  if (suffix == "K" || suffix == "KiB" || suffix == "k")
    shift = 10;
  else if (suffix == "M" || suffix == "MiB")
    shift = 20;
  else if (suffix == "G" || suffix == "GiB")
    shift = 30;
  else if (!suffix.empty())
    return -1;
  if (value <= 0 || value > (int64_t{1} << (62 - shift))) return -1;
  return value << shift;
}

std::string read_word(const std::string& path) {
  std::ifstream file(path);
  std::string word;
  file >> word;
  return word;
}

// What one source tells of cpu0's caches: the sizes (a field stays 0 where it
// tells none) and how many logical CPUs share the last level (0: unknown).
struct Reading {
  CacheSizes sizes;
  int llc_sharing = 0;
};

// cpu0's caches as sysfs lists them.
Reading from_sysfs() {
  Reading got;
  int llc_level = 0;
  for (int index = 0; index < 16; ++index) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index);
    const std::string level_text = read_word(dir + "/level");
    if (level_text.empty()) break;
    const int level = std::atoi(level_text.c_str());
    const std::string type = read_word(dir + "/type");
    const int64_t size = parse_size(read_word(dir + "/size"));
    if (size <= 0 || type == "Instruction") continue;
    if (level == 1) got.sizes.l1d = size;
    if (level == 2) got.sizes.l2 = size;
    if (level >= llc_level) {
      llc_level = level;
      got.sizes.llc = size;
      got.llc_sharing = std::max(cpu_list_count(read_word(dir + "/shared_cpu_list")), 0);
    }
  }
  return got;
}

// The logical CPUs of the package, CPUID leaf 1 (0: unknown).
int package_cpus() {
#if BNLAB_HAS_CPUID
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) && ((d >> 28) & 1u)) return static_cast<int>((b >> 16) & 0xff);
#endif
  return 0;
}

// glibc's sizes. Its L3 may be the whole package's (CPUID 0x80000006 on AMD),
// so it counts as shared by all of the package's logical CPUs.
Reading from_sysconf() {
  Reading got;
#if defined(_SC_LEVEL1_DCACHE_SIZE)
  got.sizes.l1d = std::max<long>(sysconf(_SC_LEVEL1_DCACHE_SIZE), 0);
  got.sizes.l2 = std::max<long>(sysconf(_SC_LEVEL2_CACHE_SIZE), 0);
  got.sizes.llc = std::max<long>(sysconf(_SC_LEVEL3_CACHE_SIZE), 0);
  if (got.sizes.llc > 0) got.llc_sharing = package_cpus();
  if (got.sizes.llc == 0) got.sizes.llc = got.sizes.l2;
#endif
  return got;
}

// CPUID's deterministic cache parameters: leaf 4 (Intel), 0x8000001D (AMD).
Reading from_cpuid() {
  Reading got;
#if BNLAB_HAS_CPUID
  unsigned a = 0, b = 0, c = 0, d = 0;
  unsigned leaf = 4;
  if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x8000001Du &&
      __get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541u /* "Auth"enticAMD */)
    leaf = 0x8000001Du;
  int llc_level = 0;
  for (unsigned sub = 0; sub < 16; ++sub) {
    if (!__get_cpuid_count(leaf, sub, &a, &b, &c, &d)) break;
    const unsigned type = a & 0x1f;  // 0: no more caches, 1: data, 2: instruction, 3: unified
    if (type == 0) break;
    if (type == 2) continue;
    const int level = static_cast<int>((a >> 5) & 0x7);
    const int64_t size = int64_t{((b >> 22) & 0x3ff) + 1} * (((b >> 12) & 0x3ff) + 1) *
                         ((b & 0xfff) + 1) * (int64_t{c} + 1);
    if (level == 1) got.sizes.l1d = size;
    if (level == 2) got.sizes.l2 = size;
    if (level >= llc_level) {
      llc_level = level;
      got.sizes.llc = size;
      got.llc_sharing = static_cast<int>((a >> 14) & 0xfff) + 1;
    }
  }
#endif
  return got;
}

// Fills the fields of `into` still zero from `from`, and names `source` when it
// gave one; the LLC's sharing count comes with the LLC.
void fill(CpuInfo& into, const Reading& from, const char* source) {
  bool used = false;
  for (auto field : {&CacheSizes::l1d, &CacheSizes::l2, &CacheSizes::llc})
    if (into.caches.*field == 0 && from.sizes.*field > 0) {
      into.caches.*field = from.sizes.*field;
      if (field == &CacheSizes::llc) into.llc_sharing_cpus = from.llc_sharing;
      used = true;
    }
  if (used) into.cache_source += into.cache_source.empty() ? source : std::string(" + ") + source;
}

// The CPUs in this process's affinity mask, else those online.
int process_cpu_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  return static_cast<int>(std::max<long>(sysconf(_SC_NPROCESSORS_ONLN), 1));
}

std::string model_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos && colon + 2 <= line.size()) return line.substr(colon + 2);
    }
#if BNLAB_HAS_CPUID
  unsigned regs[12] = {};
  if (__get_cpuid(0x80000000u, &regs[0], &regs[1], &regs[2], &regs[3]) && regs[0] >= 0x80000004u) {
    for (unsigned k = 0; k < 3; ++k)
      __get_cpuid(0x80000002u + k, &regs[4 * k], &regs[4 * k + 1], &regs[4 * k + 2],
                  &regs[4 * k + 3]);
    std::string brand(reinterpret_cast<const char*>(regs), sizeof(regs));
    brand = brand.substr(0, brand.find('\0'));
    const size_t first = brand.find_first_not_of(' ');
    if (first != std::string::npos) return brand.substr(first);
  }
#endif
  return "unknown";
}

// The extensions of interest, from CPUID (leaf 1 and leaf 7, subleaves 0 and 1).
std::vector<std::string> features() {
  std::vector<std::string> out;
#if BNLAB_HAS_CPUID
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return out;
  const unsigned max_leaf = a;
  unsigned c1 = 0;
  if (__get_cpuid(1, &a, &b, &c1, &d) == 0) c1 = 0;
  unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
  if (max_leaf >= 7) {
    __get_cpuid_count(7, 0, &a, &b7, &c7, &d7);
    __get_cpuid_count(7, 1, &a71, &b, &c, &d);
  }
  const struct {
    unsigned reg;
    int bit;
    const char* name;
  } flags[] = {{b7, 5, "avx2"},         {c1, 12, "fma"},         {b7, 16, "avx512f"},
               {b7, 30, "avx512bw"},    {b7, 31, "avx512vl"},    {c7, 11, "avx512_vnni"},
               {a71, 5, "avx512_bf16"}, {d7, 23, "avx512_fp16"}, {d7, 24, "amx_tile"},
               {d7, 22, "amx_bf16"},    {d7, 25, "amx_int8"}};
  for (const auto& f : flags)
    if ((f.reg >> f.bit) & 1u) out.emplace_back(f.name);
#endif
  return out;
}

CpuInfo read_cpu_info() {
  CpuInfo info;
  info.model = model_name();
  info.features = features();
  const Reading sysfs = from_sysfs(), cpuid = from_cpuid();
  fill(info, sysfs, "sysfs");
  fill(info, cpuid, "cpuid");
  fill(info, from_sysconf(), "sysconf");
  fill(info, {kDefaultCacheSizes, 0}, "default");
  // A guest's sysfs lists only the guest's CPUs as sharing; CPUID may know the host's.
  if (sysfs.sizes.llc > 0 && sysfs.sizes.llc == cpuid.sizes.llc)
    info.llc_sharing_cpus = std::max(info.llc_sharing_cpus, cpuid.llc_sharing);
  info.llc_instance = info.caches.llc;
  info.process_cpus = process_cpu_count();
  info.caches.llc =
      llc_share(info.llc_instance, info.llc_sharing_cpus, info.process_cpus, info.caches.l2);
  const CacheSizes machine = info.caches;
  info.caches = cache_sizes_from_environment(machine);
  if (info.caches.l1d != machine.l1d || info.caches.l2 != machine.l2 ||
      info.caches.llc != machine.llc)
    info.cache_source += " + BNLAB_*_BYTES";
  return info;
}

std::atomic<int64_t> g_l1d{0}, g_l2{0}, g_llc{0};  // set_cache_sizes' overrides, 0: none

}  // namespace

int64_t llc_share(int64_t instance, int sharing_cpus, int process_cpus, int64_t floor) {
  if (process_cpus <= 0) return instance;
  int64_t share = instance;
  if (sharing_cpus > process_cpus) share = instance / sharing_cpus * process_cpus;
  share = std::min(share, kMaxLlcPerCpu * process_cpus);
  return std::min(instance, std::max(share, floor));
}

int cpu_list_count(const std::string& list) {
  if (list.empty()) return -1;
  int count = 0;
  std::istringstream in(list);
  for (std::string range; std::getline(in, range, ',');) {
    const size_t dash = range.find('-');
    const std::string first = range.substr(0, dash);
    const std::string last = dash == std::string::npos ? first : range.substr(dash + 1);
    if (first.empty() || last.empty() ||
        first.find_first_not_of("0123456789") != std::string::npos ||
        last.find_first_not_of("0123456789") != std::string::npos || first.size() > 6 ||
        last.size() > 6)
      return -1;
    const int lo = std::stoi(first), hi = std::stoi(last);
    if (hi < lo) return -1;
    count += hi - lo + 1;
  }
  return count;
}

CacheSizes cache_sizes_from_environment(CacheSizes sizes) {
  const struct {
    const char* name;
    int64_t CacheSizes::*field;
  } vars[] = {{"BNLAB_L1D_BYTES", &CacheSizes::l1d},
              {"BNLAB_L2_BYTES", &CacheSizes::l2},
              {"BNLAB_LLC_BYTES", &CacheSizes::llc}};
  for (const auto& var : vars) {
    const char* text = std::getenv(var.name);
    if (text == nullptr || *text == '\0') continue;
    const int64_t size = parse_size(text);
    if (size <= 0)
      throw Error(std::string(var.name) +
                  " must be a positive size in bytes (e.g. 33554432 or 32M), got '" + text + "'");
    sizes.*var.field = size;
  }
  return sizes;
}

const CpuInfo& cpu_info() {
  static const CpuInfo info = read_cpu_info();
  return info;
}

CacheSizes cache_sizes() {
  CacheSizes sizes = cpu_info().caches;
  if (const int64_t v = g_l1d.load(std::memory_order_relaxed); v > 0) sizes.l1d = v;
  if (const int64_t v = g_l2.load(std::memory_order_relaxed); v > 0) sizes.l2 = v;
  if (const int64_t v = g_llc.load(std::memory_order_relaxed); v > 0) sizes.llc = v;
  return sizes;
}

void set_cache_sizes(const CacheSizes& sizes) {
  if (sizes.l1d < 0 || sizes.l2 < 0 || sizes.llc < 0)
    throw Error(
        "set_cache_sizes: sizes must be non-negative, got l1d=" + std::to_string(sizes.l1d) +
        ", l2=" + std::to_string(sizes.l2) + ", llc=" + std::to_string(sizes.llc));
  g_l1d.store(sizes.l1d);
  g_l2.store(sizes.l2);
  g_llc.store(sizes.llc);
}

}  // namespace bnlab
