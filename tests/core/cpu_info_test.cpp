// The CPU's model, features and cache sizes (bnlab/cpu_info.hpp): read from the
// machine, in a sane order of sizes; the BNLAB_*_BYTES overrides and
// set_cache_sizes() replace what they name; bad sizes are errors naming them.
#include "bnlab/cpu_info.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "bnlab/error.hpp"

namespace bnlab {
namespace {

// Sets an environment variable for the lifetime of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { setenv(name, value, 1); }
  ~ScopedEnv() { unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

TEST(CpuInfo, CacheSizesAreReadAndOrdered) {
  const CpuInfo& info = cpu_info();
  EXPECT_FALSE(info.model.empty());
  EXPECT_FALSE(info.cache_source.empty());
  if (std::getenv("BNLAB_L1D_BYTES") == nullptr && std::getenv("BNLAB_L2_BYTES") == nullptr &&
      std::getenv("BNLAB_LLC_BYTES") == nullptr) {
    EXPECT_GE(info.caches.l1d, 4 << 10);
    EXPECT_GE(info.caches.l2, info.caches.l1d);
    EXPECT_GE(info.caches.llc, info.caches.l2);
  }
  EXPECT_EQ(&cpu_info(), &info);  // read once
}

TEST(CpuInfo, TheLlcShareIsNoMoreThanTheInstance) {
  const CpuInfo& info = cpu_info();
  EXPECT_GE(info.process_cpus, 1);
  EXPECT_GE(info.llc_sharing_cpus, 0);
  if (std::getenv("BNLAB_LLC_BYTES") == nullptr) {
    EXPECT_LE(info.caches.llc, info.llc_instance);
    EXPECT_EQ(info.caches.llc, llc_share(info.llc_instance, info.llc_sharing_cpus,
                                         info.process_cpus, info.caches.l2));
  }
}

TEST(CpuInfo, LlcShareIsTheProcesssPartOfASharedCache) {
  const int64_t mib = int64_t{1} << 20;
  // A VM's view of a 508 MiB package L3 shared by 254 CPUs, 2 of them its own: 4 MiB.
  EXPECT_EQ(llc_share(508 * mib, 254, 2, mib), 4 * mib);
  // A 32 MiB CCX shared by 16 CPUs, 2 of them ours.
  EXPECT_EQ(llc_share(32 * mib, 16, 2, mib), 4 * mib);
  // Unknown sharing, or no more sharers than our CPUs: the whole instance.
  EXPECT_EQ(llc_share(32 * mib, 0, 2, mib), 32 * mib);
  EXPECT_EQ(llc_share(32 * mib, 2, 2, mib), 32 * mib);
  EXPECT_EQ(llc_share(32 * mib, 8, 16, mib), 32 * mib);
  // A guest's view of its host's 480 MiB L3, listed as its own 2 CPUs': 16 MiB a CPU.
  EXPECT_EQ(llc_share(480 * mib, 2, 2, mib), 32 * mib);
  EXPECT_EQ(llc_share(480 * mib, 0, 1, mib), 16 * mib);
  EXPECT_EQ(llc_share(480 * mib, 240, 2, mib), 4 * mib);
  // An X3D part's 96 MiB for 16 CPUs stays whole.
  EXPECT_EQ(llc_share(96 * mib, 16, 16, mib), 96 * mib);
  // Never below the floor, never above the instance.
  EXPECT_EQ(llc_share(8 * mib, 64, 1, mib), mib);
  EXPECT_EQ(llc_share(mib / 2, 64, 1, mib), mib / 2);
}

TEST(CpuInfo, CpuListCountReadsLinuxCpuLists) {
  EXPECT_EQ(cpu_list_count("0"), 1);
  EXPECT_EQ(cpu_list_count("0-1"), 2);
  EXPECT_EQ(cpu_list_count("0-3,8,10-11"), 7);
  for (const char* bad : {"", "a", "3-1", "0-", "-2", "1,,2", "0-1x", "12345678"})
    EXPECT_EQ(cpu_list_count(bad), -1) << "'" << bad << "'";
}

TEST(CpuInfo, EnvironmentReplacesWhatItNames) {
  const CacheSizes machine{32 << 10, 1 << 20, 32 << 20};
  {
    ScopedEnv llc("BNLAB_LLC_BYTES", "300M");
    const CacheSizes got = cache_sizes_from_environment(machine);
    EXPECT_EQ(got.llc, int64_t{300} << 20);
    EXPECT_EQ(got.l2, machine.l2);
    EXPECT_EQ(got.l1d, machine.l1d);
  }
  ScopedEnv l1d("BNLAB_L1D_BYTES", "49152");
  ScopedEnv l2("BNLAB_L2_BYTES", "2K");
  const CacheSizes got = cache_sizes_from_environment(machine);
  EXPECT_EQ(got.l1d, 49152);
  EXPECT_EQ(got.l2, 2048);
  EXPECT_EQ(got.llc, machine.llc);
}

TEST(CpuInfo, BadEnvironmentSizeIsAnErrorNamingIt) {
  for (const char* bad : {"abc", "-5", "0", "12X", "1e9"}) {
    ScopedEnv llc("BNLAB_LLC_BYTES", bad);
    try {
      cache_sizes_from_environment({});
      ADD_FAILURE() << "no error for '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("BNLAB_LLC_BYTES"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
}

// Run by ctest with BNLAB_LLC_BYTES=3M (tests/core/CMakeLists.txt): the variable
// reaches cpu_info() and the sizes the kernels use.
TEST(CpuInfo, EnvironmentOverrideReachesTheKernels) {
  const char* llc = std::getenv("BNLAB_LLC_BYTES");
  if (llc == nullptr || std::string(llc) != "3M") GTEST_SKIP() << "needs BNLAB_LLC_BYTES=3M";
  EXPECT_EQ(cpu_info().caches.llc, int64_t{3} << 20);
  EXPECT_NE(cpu_info().cache_source.find("BNLAB_"), std::string::npos);
  EXPECT_EQ(cache_sizes().llc, int64_t{3} << 20);
}

TEST(CpuInfo, SetCacheSizesReplacesNonzeroFieldsAndZeroRestores) {
  const CacheSizes machine = cpu_info().caches;
  set_cache_sizes({0, 0, 12345});
  EXPECT_EQ(cache_sizes().llc, 12345);
  EXPECT_EQ(cache_sizes().l2, machine.l2);
  set_cache_sizes({});
  EXPECT_EQ(cache_sizes().llc, machine.llc);
  EXPECT_THROW(set_cache_sizes({-1, 0, 0}), Error);
}

}  // namespace
}  // namespace bnlab
