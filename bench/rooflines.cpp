// Walk rooflines: the fastest a kernel that walks a tensor a given way can run on
// this machine. Each walk is a stand-alone loop that makes the passes the walk
// forces and nothing more: per chunk, a statistics pass (a sum), then an output
// pass (a centred copy with streaming stores). A kernel row is then read against
// the roofline of its own walk, not only against the copy, so a gap that the
// walk forces (a pass count, a re-read from the LLC instead of L2) is told apart
// from a slow loop. See bench.hpp for the walks.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <string>

#include "bench.hpp"
#include "bnlab/aligned.hpp"
#include "bnlab/error.hpp"

namespace bnlab::bench {
namespace {

// Forward chunk: sum = Σ x. Backward chunk: sum = Σ dy, sum_xdy = Σ x * dy.
struct ChunkSums {
  double sum = 0, sum_xdy = 0;
};

// Both passes' loops, AVX2 where the CPU has it (every x86 the kernels tune for);
// 8 floats a step, 4 independent sums so the adds' latency does not bound them.
// count is a multiple of 32 and the outputs start on a 32-byte boundary.
__attribute__((target("avx2,fma"))) double sum_avx2(const float* x, int64_t count) {
  __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
  for (int64_t i = 0; i < count; i += 32) {
    a = _mm256_add_ps(a, _mm256_loadu_ps(x + i)), b = _mm256_add_ps(b, _mm256_loadu_ps(x + i + 8));
    c = _mm256_add_ps(c, _mm256_loadu_ps(x + i + 16)),
    d = _mm256_add_ps(d, _mm256_loadu_ps(x + i + 24));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
  double total = 0;
  for (float lane : lanes) total += lane;
  return total;
}

__attribute__((target("avx2,fma"))) ChunkSums grad_sums_avx2(const float* x, const float* dy,
                                                             int64_t count) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, p0 = s0, p1 = s0;
  for (int64_t i = 0; i < count; i += 16) {
    const __m256 dy0 = _mm256_loadu_ps(dy + i), dy1 = _mm256_loadu_ps(dy + i + 8);
    s0 = _mm256_add_ps(s0, dy0), s1 = _mm256_add_ps(s1, dy1);
    p0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), dy0, p0);
    p1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), dy1, p1);
  }
  alignas(32) float sums[8], products[8];
  _mm256_store_ps(sums, _mm256_add_ps(s0, s1));
  _mm256_store_ps(products, _mm256_add_ps(p0, p1));
  ChunkSums out;
  for (int l = 0; l < 8; ++l) out.sum += sums[l], out.sum_xdy += products[l];
  return out;
}

// y = x - mean
__attribute__((target("avx2,fma"))) void centre_avx2(float* y, const float* x, int64_t count,
                                                     float mean) {
  const __m256 m = _mm256_set1_ps(mean);
  for (int64_t i = 0; i < count; i += 16) {
    _mm256_stream_ps(y + i, _mm256_sub_ps(_mm256_loadu_ps(x + i), m));
    _mm256_stream_ps(y + i + 8, _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), m));
  }
}

// dx = dy - mean_dy - x * mean_xdy
__attribute__((target("avx2,fma"))) void grad_avx2(float* dx, const float* x, const float* dy,
                                                   int64_t count, float mean_dy, float mean_xdy) {
  const __m256 m = _mm256_set1_ps(mean_dy), k = _mm256_set1_ps(mean_xdy);
  for (int64_t i = 0; i < count; i += 8) {
    const __m256 v = _mm256_sub_ps(_mm256_loadu_ps(dy + i), m);
    _mm256_stream_ps(dx + i, _mm256_fnmadd_ps(_mm256_loadu_ps(x + i), k, v));
  }
}

bool use_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

ChunkSums statistics(const RooflineBuffers& b, bool backward, int64_t begin, int64_t end) {
  const int64_t count = end - begin;
  const float* x = b.x.data() + begin;
  ChunkSums s;
  if (use_avx2()) {
    if (backward) return grad_sums_avx2(x, b.dy.data() + begin, count);
    s.sum = sum_avx2(x, count);
    return s;
  }
  for (int64_t i = 0; i < count; ++i) {
    if (backward)
      s.sum += b.dy[begin + i], s.sum_xdy += double(x[i]) * b.dy[begin + i];
    else
      s.sum += x[i];
  }
  return s;
}

void output_block(RooflineBuffers& b, bool backward, int64_t begin, int64_t end, const ChunkSums& s,
                  int64_t chunk) {
  const int64_t count = end - begin;
  const float mean = static_cast<float>(s.sum / chunk);
  const float mean_xdy = static_cast<float>(s.sum_xdy / chunk);
  const float* x = b.x.data() + begin;
  float* out = b.out.data() + begin;
  if (use_avx2()) {
    if (backward)
      grad_avx2(out, x, b.dy.data() + begin, count, mean, mean_xdy);
    else
      centre_avx2(out, x, count, mean);
    return;
  }
  for (int64_t i = 0; i < count; ++i)
    out[i] = backward ? b.dy[begin + i] - mean - x[i] * mean_xdy : x[i] - mean;
}

// The output pass over [begin, end) in blocks, the last block first: the blocks the
// statistics pass read last are still in L2 (the kernels walk their parts so too).
void output(RooflineBuffers& b, bool backward, int64_t begin, int64_t end, const ChunkSums& s,
            int64_t chunk) {
  constexpr int64_t kBlock = 4096;  // floats: 16 KiB, a multiple of the loops' 32
  for (int64_t last = end; last > begin;) {
    const int64_t first = std::max(begin, (last - 1) / kBlock * kBlock);
    output_block(b, backward, first, last, s, chunk);
    last = first;
  }
  _mm_sfence();  // each thread orders its own streaming stores
}

// Member `member` of a team of `team`: its part of [0, chunk), cut at 32 floats.
void team_part(int64_t chunk, int member, int team, int64_t& begin, int64_t& end) {
  const int64_t blocks = chunk / 32;
  begin = blocks * member / team * 32;
  end = member + 1 == team ? chunk : blocks * (member + 1) / team * 32;
}

}  // namespace

const char* walk_name(Walk walk) {
  switch (walk) {
    case Walk::output_only:
      return "output_only";
    case Walk::tensor:
      return "tensor";
    case Walk::sample:
      return "sample";
    case Walk::sample_team:
      return "sample_team";
    case Walk::group:
      return "group";
  }
  return "?";
}

RooflineBuffers::RooflineBuffers(int64_t samples, int64_t per_sample, int64_t groups, bool backward)
    : samples(samples), per_sample(per_sample), groups(groups) {
  if (samples < 1 || groups < 1 || per_sample < 1 || per_sample % (32 * groups) != 0)
    throw Error("rooflines: a sample of " + std::to_string(per_sample) +
                " floats does not split into " + std::to_string(groups) +
                " groups of a multiple of 32 floats");
  const int64_t numel = samples * per_sample;
  x = AlignedVector<float>(numel);
  out = AlignedVector<float>(numel);
  if (backward) dy = AlignedVector<float>(numel);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < numel; ++i) {
    x[i] = static_cast<float>(i % 977) * 0.001f;
    out[i] = 0;
    if (backward) dy[i] = static_cast<float>(i % 613) * 0.002f - 0.5f;
  }
}

void run_walk(RooflineBuffers& b, bool backward, Walk walk, int threads) {
  const int64_t numel = b.samples * b.per_sample;
  if (backward && b.dy.size() != static_cast<size_t>(numel))
    throw Error("rooflines: the backward walks need buffers made with backward set");
  int64_t chunk = numel;  // Walk::tensor, Walk::output_only
  if (walk == Walk::sample || walk == Walk::sample_team) chunk = b.per_sample;
  if (walk == Walk::group) chunk = b.per_sample / b.groups;
  const int64_t chunks = numel / chunk;
  if (walk == Walk::output_only) {
#pragma omp parallel num_threads(threads)
    {
      int64_t begin, end;
      team_part(numel, omp_get_thread_num(), omp_get_num_threads(), begin, end);
      output(b, backward, begin, end, ChunkSums{}, numel);
    }
  } else if (walk == Walk::sample || walk == Walk::group) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t k = 0; k < chunks; ++k)
      output(b, backward, k * chunk, (k + 1) * chunk,
             statistics(b, backward, k * chunk, (k + 1) * chunk), chunk);
  } else {
    // A team of every thread per chunk: each member sums its part, the team meets, and each
    // member writes its own part, read back from its own cache. Slots alternate by chunk so a
    // member still reading one chunk's sums is never overwritten by the next chunk's.
    std::vector<ChunkSums> slots(2 * static_cast<size_t>(threads));
#pragma omp parallel num_threads(threads)
    {
      const int member = omp_get_thread_num(), team = omp_get_num_threads();
      int64_t begin, end;
      team_part(chunk, member, team, begin, end);
      for (int64_t k = 0; k < chunks; ++k) {
        ChunkSums* slot = slots.data() + (k % 2) * threads;
        slot[member] = statistics(b, backward, k * chunk + begin, k * chunk + end);
#pragma omp barrier
        ChunkSums total;
        for (int m = 0; m < team; ++m) total.sum += slot[m].sum, total.sum_xdy += slot[m].sum_xdy;
        output(b, backward, k * chunk + begin, k * chunk + end, total, chunk);
      }
    }
  }
}

std::vector<Roofline> measure_rooflines(const std::vector<int64_t>& dims, int64_t groups,
                                        int threads, const TimingPolicy& policy) {
  if (dims.size() < 2) throw Error("rooflines: need at least N and C");
  int64_t per_sample = 1;
  for (size_t i = 1; i < dims.size(); ++i) per_sample *= dims[i];
  struct Planned {
    bool bf16;  // the bf16 kernels' walk: the same bytes, so half the floats a sample
    bool backward;
    Walk walk;
    const char* models;
  };
  const Planned planned[] = {
      {false, false, Walk::output_only, "inference_forward (no statistics pass)"},
      {false, false, Walk::tensor,
       "channels_last train_forward: every row's sums before any output"},
      {false, false, Walk::sample, "channels_last group_norm_forward, a thread per sample"},
      {false, false, Walk::sample_team,
       "channels_last, blocked16 group_norm_forward: a team per sample"},
      {false, false, Walk::group,
       "channels_first group_norm_forward (a group at a time), train_forward (a channel at a "
       "time), the second read from L2"},
      {false, true, Walk::tensor, "channels_last backward: every row's sums before any dx"},
      {false, true, Walk::sample, "channels_last group_norm_backward, a thread per sample"},
      {false, true, Walk::sample_team,
       "channels_last, blocked16 group_norm_backward: a team per sample"},
      {false, true, Walk::group,
       "channels_first group_norm_backward (a group at a time), backward (a channel at a time), "
       "the second read from L2"},
      {true, false, Walk::output_only, "bf16_inference_forward (no statistics pass)"},
      {true, false, Walk::tensor, "channels_last bf16_train_forward"},
      {true, false, Walk::group, "channels_first bf16_train_forward (a channel at a time)"},
      {true, true, Walk::tensor, "channels_last bf16_backward"},
      {true, true, Walk::group, "channels_first bf16_backward (a channel at a time)"},
  };
  std::vector<Roofline> out;
  for (bool bf16 : {false, true}) {
    // A bf16 walk moves 2-byte elements: as many bytes as float chunks of half the length,
    // so the float loops time it (a floor: the kernels also widen and round).
    const int64_t sample_floats = bf16 ? per_sample / 2 : per_sample;
    for (bool backward : {false, true}) {
      RooflineBuffers buffers(dims[0], sample_floats, groups, backward);
      for (const Planned& p : planned) {
        if (p.bf16 != bf16 || p.backward != backward) continue;
        Roofline r;
        r.walk = std::string(bf16 ? "bf16_" : "") + (backward ? "backward/" : "forward/") +
                 walk_name(p.walk);
        r.models = p.models;
        r.dims = dims;
        // The fewest passes over memory the op needs when its statistics come from cache:
        // read x (and dy) once, write the output once.
        r.passes = backward ? 3 : 2;
        r.tensor_bytes = dims[0] * sample_floats * static_cast<int64_t>(sizeof(float));
        r.timing = time_calls([&] { run_walk(buffers, backward, p.walk, threads); }, policy);
        out.push_back(r);
      }
    }
  }
  return out;
}

}  // namespace bnlab::bench
