// Timing, memory bandwidth and machine information for bnlab_bench.
#include <immintrin.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <string>

#include "bench.hpp"
#include "bnlab/aligned.hpp"
#include "bnlab/cpu_info.hpp"
#include "bnlab/error.hpp"

namespace bnlab::bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The [begin, end) share of `count` items that thread `thread` of `threads`
// takes, cut at multiples of `grain` so every share starts on a page.
void thread_share(int64_t count, int64_t grain, int thread, int threads, int64_t& begin,
                  int64_t& end) {
  const int64_t blocks = (count + grain - 1) / grain;
  begin = std::min(count, blocks * thread / threads * grain);
  end = std::min(count, blocks * (thread + 1) / threads * grain);
}

// Sum of p[0..count): 32 independent lanes so that the adds' latency does not
// bound the loop (a single accumulator would run at a quarter of the load rate).
// Compiled for AVX-512, AVX2 and the baseline and chosen at load time.
__attribute__((target_clones("avx512f", "avx2", "default"))) float sum_floats(const float* p,
                                                                            int64_t count) {
  constexpr int kLanes = 32;
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += p[i + l];
  float total = 0;
  for (; i < count; ++i) total += p[i];
  for (float lane : lanes) total += lane;
  return total;
}

// dst[0..count) = src[0..count) with 32-byte loads and non-temporal stores, as
// the kernels write large outputs: one read and one write per byte, no read of
// the destination's lines. count is a multiple of 32 and both start on a cache
// line (page-aligned shares of AlignedVectors). glibc's memcpy does not always
// stream on this machine (it can use rep movsb), so it is reported beside this.
__attribute__((target("avx2"))) void stream_copy_avx2(float* dst, const float* src, int64_t count) {
  for (int64_t i = 0; i < count; i += 32) {
    const __m256 a = _mm256_load_ps(src + i), b = _mm256_load_ps(src + i + 8);
    const __m256 c = _mm256_load_ps(src + i + 16), d = _mm256_load_ps(src + i + 24);
    _mm256_stream_ps(dst + i, a), _mm256_stream_ps(dst + i + 8, b);
    _mm256_stream_ps(dst + i + 16, c), _mm256_stream_ps(dst + i + 24, d);
  }
  _mm_sfence();
}

void stream_copy(float* dst, const float* src, int64_t count) {
  static const bool has_avx2 = __builtin_cpu_supports("avx2");
  if (has_avx2 && count % 32 == 0)
    stream_copy_avx2(dst, src, count);
  else
    std::memcpy(dst, src, count * sizeof(float));
}

}  // namespace

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  const size_t mid = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + mid, values.end());
  if (values.size() % 2 == 1) return values[mid];
  const double upper = values[mid];
  const double lower = *std::max_element(values.begin(), values.begin() + mid);
  return 0.5 * (lower + upper);
}

int reps_for(const TimingPolicy& policy, double one_call_s) {
  if (policy.fixed_reps > 0) return policy.fixed_reps;
  const double fit = one_call_s > 0 ? policy.budget_s / one_call_s : policy.max_reps;
  const int reps = fit >= policy.max_reps ? policy.max_reps : static_cast<int>(fit);
  return std::clamp(reps, std::max(1, policy.min_reps), std::max(1, policy.max_reps));
}

Timing time_calls(const std::function<void()>& fn, const TimingPolicy& policy) {
  // The last warm-up call's duration sizes the run; with no warm-up, one
  // timed call does.
  double one_call_s = 0;
  for (int i = 0; i < policy.warmup; ++i) {
    const auto start = Clock::now();
    fn();
    one_call_s = seconds_since(start);
  }
  std::vector<double> ms;
  if (policy.warmup == 0 && policy.fixed_reps <= 0) {
    const auto start = Clock::now();
    fn();
    one_call_s = seconds_since(start);
    ms.push_back(one_call_s * 1e3);
  }
  const int reps = reps_for(policy, one_call_s);
  ms.reserve(reps);
  while (static_cast<int>(ms.size()) < reps) {
    const auto start = Clock::now();
    fn();
    ms.push_back(seconds_since(start) * 1e3);
  }
  Timing timing;
  timing.reps = reps;
  timing.min_ms = *std::min_element(ms.begin(), ms.end());
  timing.median_ms = median(std::move(ms));
  return timing;
}

double effective_gbs(int passes, int64_t bytes, double ms) {
  return ms > 0 ? passes * static_cast<double>(bytes) / (ms * 1e-3) / 1e9 : 0;
}

/* Copy bandwidth: each thread copies its page-aligned share of src into dst with
 * streaming stores (stream_copy), so the traffic is one read and one write of
 * every byte, and GB/s = 2 * bytes / time; the same with glibc's memcpy is
 * memcpy_gbs. Read bandwidth: each thread sums
 * its share; GB/s = bytes / time. Both buffers are written before timing, so
 * no page is faulted in while the clock runs. Median of `reps` runs. */
Bandwidth measure_bandwidth(int64_t bytes, int threads, int reps) {
  if (bytes <= 0) throw Error("bandwidth buffer size must be positive, got " + std::to_string(bytes));
  const int64_t count = bytes / static_cast<int64_t>(sizeof(float));
  AlignedVector<float> src(count), dst(count);
  constexpr int64_t kPageFloats = 4096 / sizeof(float);
#pragma omp parallel num_threads(threads)
  {
    // First touch by the thread that will copy the share (same share as below).
    int64_t begin, end;
    thread_share(count, kPageFloats, omp_get_thread_num(), omp_get_num_threads(), begin, end);
    for (int64_t i = begin; i < end; ++i) src[i] = static_cast<float>(i & 1023);
    std::memset(dst.data() + begin, 0, (end - begin) * sizeof(float));
  }
  std::vector<double> copy_s, memcpy_s, read_s;
  volatile float sink = 0;
  for (int rep = 0; rep < std::max(1, reps) + 1; ++rep) {  // the first run is a warm-up
    auto start = Clock::now();
#pragma omp parallel num_threads(threads)
    {
      int64_t begin, end;
      thread_share(count, kPageFloats, omp_get_thread_num(), omp_get_num_threads(), begin, end);
      stream_copy(dst.data() + begin, src.data() + begin, end - begin);
    }
    const double copy = seconds_since(start);
    start = Clock::now();
#pragma omp parallel num_threads(threads)
    {
      int64_t begin, end;
      thread_share(count, kPageFloats, omp_get_thread_num(), omp_get_num_threads(), begin, end);
      std::memcpy(dst.data() + begin, src.data() + begin, (end - begin) * sizeof(float));
    }
    const double plain_copy = seconds_since(start);
    float total = 0;
    start = Clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      int64_t begin, end;
      thread_share(count, kPageFloats, omp_get_thread_num(), omp_get_num_threads(), begin, end);
      total += sum_floats(dst.data() + begin, end - begin);
    }
    const double read = seconds_since(start);
    sink = sink + total;
    if (rep > 0) copy_s.push_back(copy), memcpy_s.push_back(plain_copy), read_s.push_back(read);
  }
  Bandwidth bw;
  bw.buffer_bytes = count * static_cast<int64_t>(sizeof(float));
  bw.reps = static_cast<int>(copy_s.size());
  bw.copy_gbs = 2.0 * bw.buffer_bytes / median(copy_s) / 1e9;
  bw.read_gbs = bw.buffer_bytes / median(read_s) / 1e9;
  bw.memcpy_gbs = 2.0 * bw.buffer_bytes / median(memcpy_s) / 1e9;
  bw.copy_gbs_best = 2.0 * bw.buffer_bytes / *std::min_element(copy_s.begin(), copy_s.end()) / 1e9;
  bw.read_gbs_best = bw.buffer_bytes / *std::min_element(read_s.begin(), read_s.end()) / 1e9;
  return bw;
}

double load_average() {
  std::ifstream file("/proc/loadavg");
  double one_minute = -1;
  if (!(file >> one_minute)) return -1;
  return one_minute;
}

MachineInfo machine_info() {
  MachineInfo info;
  const CpuInfo& cpu = cpu_info();  // the sizes the kernels' thresholds come from
  info.cpu_model = cpu.model;
  info.l1d_bytes = cpu.caches.l1d;
  info.l2_bytes = cpu.caches.l2;
  info.llc_bytes = cpu.caches.llc;
  info.llc_instance_bytes = cpu.llc_instance;
  info.llc_sharing_cpus = cpu.llc_sharing_cpus;
  info.process_cpus = cpu.process_cpus;
  info.cache_source = cpu.cache_source;
  info.features = cpu.features;
  // batch_norm_kernel_variants() is "auto,BEST,...,plain": the first after auto.
  const std::string variants = batch_norm_kernel_variants();
  const size_t first = variants.find(',') + 1, end = variants.find(',', first);
  info.highway_target = variants.substr(first, end - first);
  info.cores_online = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  return info;
}

}  // namespace bnlab::bench
