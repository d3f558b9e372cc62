// Issue 16: the kernels' cache-sized thresholds follow the machine's cache
// sizes (here set by set_cache_sizes, as BNLAB_LLC_BYTES sets them), and the
// results are bit for bit the same whichever walk the sizes choose: memory
// order or channel by channel / block by block, plain or streaming stores; and
// whatever the buffers' alignment (numpy's are only 16-byte aligned).
#include <gtest/gtest.h>

#include <vector>

#include "bn_reference.hpp"
#include "bnlab/aligned.hpp"
#include "bnlab/batch_norm.hpp"
#include "bnlab/batch_norm_bf16.hpp"
#include "bnlab/cpu_info.hpp"
#include "bnlab/group_norm.hpp"
#include "bnlab/layer_norm.hpp"
#include "kernels/cache_thresholds.hpp"

namespace bnlab::test {
namespace {

// Replaces the cache sizes for the lifetime of the object, then restores the machine's.
class ScopedCacheSizes {
 public:
  explicit ScopedCacheSizes(const CacheSizes& sizes) { set_cache_sizes(sizes); }
  ~ScopedCacheSizes() { set_cache_sizes({}); }
  ScopedCacheSizes(const ScopedCacheSizes&) = delete;
  ScopedCacheSizes& operator=(const ScopedCacheSizes&) = delete;
};

constexpr int64_t kHugeLlc = int64_t{1}
                             << 30;  // every test tensor fits: memory order, plain stores
constexpr int64_t kTinyLlc = int64_t{32} << 10;  // none fits: by channel / block, streaming
constexpr int64_t kTinyL2 = int64_t{4} << 10;    // no channel's x and dy fit half of it
constexpr int64_t kLargeL2 = int64_t{4} << 20;   // every test channel's x and dy fit half of it

TEST(CacheThresholds, FollowTheCacheSizes) {
  ScopedCacheSizes sizes({0, int64_t{2} << 20, int64_t{64} << 20});
  const kernels::CacheThresholds t = kernels::cache_thresholds();
  EXPECT_EQ(t.stream_bytes, int64_t{64} << 20);
  EXPECT_EQ(t.by_channel_bytes, int64_t{64} << 20);
  EXPECT_EQ(t.by_channel_slice_bytes, int64_t{8} << 20);
  EXPECT_EQ(t.by_channel_l2_slice_bytes, int64_t{1} << 20);
  EXPECT_EQ(t.by_block_bytes, int64_t{32} << 20);
  EXPECT_EQ(t.norm_row_block_bytes, int64_t{512} << 10);
  EXPECT_EQ(t.norm_min_tile_block_bytes, int64_t{256} << 10);
  EXPECT_EQ(t.norm_max_part_bytes, int64_t{32} << 20);
}

struct BatchNormOutputs {
  std::vector<float> y, y_relu, y_eval, mean, invstd, dx, dweight, dbias;
};

BatchNormOutputs run_batch_norm(const BatchNormShape& sh, const std::vector<float>& x,
                                const std::vector<float>& dy, const std::vector<float>& weight,
                                const std::vector<float>& bias) {
  BatchNormOutputs o;
  o.y.resize(x.size());
  o.y_relu.resize(x.size());
  o.y_eval.resize(x.size());
  o.mean.resize(sh.c);
  o.invstd.resize(sh.c);
  o.dx.resize(x.size());
  o.dweight.resize(sh.c);
  o.dbias.resize(sh.c);
  EXPECT_EQ(batch_norm_forward_training(x.data(), sh, weight.data(), bias.data(), {}, 1e-5,
                                        o.y.data(), o.mean.data(), o.invstd.data()),
            BatchNormStatus::ok);
  EXPECT_EQ(batch_norm_forward_training(x.data(), sh, weight.data(), bias.data(), {}, 1e-5,
                                        o.y_relu.data(), nullptr, nullptr, Activation::relu),
            BatchNormStatus::ok);
  batch_norm_forward_inference(x.data(), sh, weight.data(), bias.data(), o.mean.data(),
                               o.invstd.data(), 1e-5, o.y_eval.data());
  batch_norm_backward(x.data(), dy.data(), sh, weight.data(), o.mean.data(), o.invstd.data(),
                      o.dx.data(), o.dweight.data(), o.dbias.data());
  return o;
}

void expect_same(const BatchNormOutputs& a, const BatchNormOutputs& b) {
  EXPECT_EQ(a.y, b.y);
  EXPECT_EQ(a.y_relu, b.y_relu);
  EXPECT_EQ(a.y_eval, b.y_eval);
  EXPECT_EQ(a.mean, b.mean);
  EXPECT_EQ(a.invstd, b.invstd);
  EXPECT_EQ(a.dx, b.dx);
  EXPECT_EQ(a.dweight, b.dweight);
  EXPECT_EQ(a.dbias, b.dbias);
}

TEST(CacheThresholds, BatchNormResultsAreIdenticalWhicheverWalkIsChosen) {
  // Channels-first spans that go channel by channel under the tiny LLC (a
  // channel's x and dy: 4 KiB, an eighth of it), blocked16 that goes block by
  // block (a block's 16 KiB, half of it), channels-last that only streams.
  // Channel by channel in L2 only: spans of two blocks, and a plan part
  // holding two samples of each channel (the forward's moments merge part by
  // part as memory order does).
  struct Case {
    BatchNormShape sh;
    bool by_channel_past_llc;  // channels-first: by channel under the tiny LLC too
  };
  const Case cases[] = {{{2, 32, 256, Layout::channels_first}, true},
                        {{2, 96, 64, Layout::blocked16}, false},
                        {{4, 24, 100, Layout::channels_last}, false},
                        {{2, 16, 4100, Layout::channels_first}, false},
                        {{64, 16, 64, Layout::channels_first}, false}};
  for (const auto& [sh, by_channel_past_llc] : cases) {
    const std::vector<float> x = channel_data(sh, 31), dy = random_vector(sh.numel(), 32);
    const std::vector<float> weight = random_vector(sh.c, 33, 1.0f, 0.3f);
    const std::vector<float> bias = random_vector(sh.c, 34);
    for (const std::string& variant : kernel_variants()) {
      SCOPED_TRACE(describe(sh) + " variant " + variant);
      ScopedKernelVariant use(variant);
      BatchNormOutputs in_cache, beyond_cache, in_l2;
      {
        ScopedCacheSizes sizes({0, kTinyL2, kHugeLlc});
        const kernels::CacheThresholds t = kernels::cache_thresholds();
        ASSERT_LE(2 * sh.numel() * 4, t.stream_bytes);  // plain stores, memory order
        if (sh.layout == Layout::channels_first) {
          ASSERT_GT(2 * sh.per_channel() * 4, t.by_channel_l2_slice_bytes);
        }
        in_cache = run_batch_norm(sh, x, dy, weight, bias);
      }
      {
        // Channels-first by channel with plain stores: the channel's slices fit in L2.
        ScopedCacheSizes sizes({0, kLargeL2, kHugeLlc});
        in_l2 = run_batch_norm(sh, x, dy, weight, bias);
      }
      expect_same(in_cache, in_l2);
      {
        ScopedCacheSizes sizes({0, 0, kTinyLlc});
        const kernels::CacheThresholds t = kernels::cache_thresholds();
        ASSERT_GT(sh.numel() * 4, t.by_channel_bytes);  // streams, and walks by channel or block
        if (by_channel_past_llc) {
          ASSERT_LE(2 * sh.per_channel() * 4, t.by_channel_slice_bytes);
        }
        if (sh.layout == Layout::blocked16) {
          ASSERT_LE(2 * sh.per_channel() * 16 * 4, t.by_block_bytes);
        }
        beyond_cache = run_batch_norm(sh, x, dy, weight, bias);
      }
      expect_same(in_cache, beyond_cache);
    }
  }
}

// The bf16 training forward and the backward channel by channel (a channel's
// two slices in half of L2, or past a tiny LLC) against memory order: pieces
// of several samples, pieces of some channels of one sample, tasks of several
// pieces; the backward through the fused ReLU.
TEST(CacheThresholds, Bf16TrainingIsIdenticalWhicheverWalkIsChosen) {
  const BatchNormShape shapes[] = {{2, 32, 256, Layout::channels_first},
                                   {200, 16, 512, Layout::channels_first},
                                   {5, 16, 5000, Layout::channels_first},
                                   {40, 16, 5000, Layout::channels_first}};
  for (const BatchNormShape& sh : shapes) {
    std::vector<uint16_t> x(static_cast<size_t>(sh.numel()));
    const std::vector<float> xf = channel_data(sh, 51);
    floats_to_bf16(xf.data(), x.data(), sh.numel());
    const std::vector<float> weight = random_vector(sh.c, 52, 1.0f, 0.3f);
    const std::vector<float> bias = random_vector(sh.c, 53);
    std::vector<uint16_t> dy(x.size());
    const std::vector<float> dyf = random_vector(sh.numel(), 54);
    floats_to_bf16(dyf.data(), dy.data(), sh.numel());
    for (const std::string& variant : split_commas(bf16_conversion_variants())) {
      SCOPED_TRACE(describe(sh) + " variant " + variant);
      set_bf16_conversion_variant(variant);
      std::vector<uint16_t> y[3], dx[3];
      std::vector<float> mean[3], invstd[3], running[3], dweight[3], dbias[3];
      const CacheSizes sizes[3] = {
          {0, kTinyL2, kHugeLlc}, {0, kLargeL2, kHugeLlc}, {0, 0, kTinyLlc}};
      for (int k = 0; k < 3; ++k) {
        ScopedCacheSizes use(sizes[k]);
        y[k].resize(x.size());
        mean[k].resize(sh.c);
        invstd[k].resize(sh.c);
        running[k].assign(2 * sh.c, 0.5f);
        const RunningStats stats{running[k].data(), running[k].data() + sh.c, 0.1, true};
        EXPECT_EQ(batch_norm_forward_training_bf16(x.data(), sh, weight.data(), bias.data(), stats,
                                                   1e-5, y[k].data(), mean[k].data(),
                                                   invstd[k].data(), Activation::relu),
                  BatchNormStatus::ok);
        dx[k].resize(x.size());
        dweight[k].resize(sh.c);
        dbias[k].resize(sh.c);
        batch_norm_backward_bf16(x.data(), dy.data(), sh, weight.data(), mean[k].data(),
                                 invstd[k].data(), dx[k].data(), dweight[k].data(), dbias[k].data(),
                                 Activation::relu, y[k].data());
      }
      for (int k = 1; k < 3; ++k) {
        EXPECT_EQ(y[0], y[k]) << k;
        EXPECT_EQ(mean[0], mean[k]) << k;
        EXPECT_EQ(invstd[0], invstd[k]) << k;
        EXPECT_EQ(running[0], running[k]) << k;
        EXPECT_EQ(dx[0], dx[k]) << k;
        EXPECT_EQ(dweight[0], dweight[k]) << k;
        EXPECT_EQ(dbias[0], dbias[k]) << k;
      }
    }
    set_bf16_conversion_variant("auto");
  }
}

TEST(CacheThresholds, GroupNormResultsAreIdenticalStreamedOrNot) {
  for (Layout layout : {Layout::channels_first, Layout::channels_last, Layout::blocked16}) {
    const GroupNormShape sh{3, 32, 64, 8, layout};
    const std::vector<float> x = random_vector(sh.numel(), 41, 0.5f, 2.0f);
    const std::vector<float> dy = random_vector(sh.numel(), 42);
    const std::vector<float> weight = random_vector(sh.c, 43, 1.0f, 0.3f);
    const std::vector<float> bias = random_vector(sh.c, 44);
    std::vector<float> y[2], dx[2], mean(sh.n * sh.groups), invstd(sh.n * sh.groups);
    std::vector<float> dw(sh.c), db(sh.c);
    for (int k = 0; k < 2; ++k) {
      ScopedCacheSizes sizes({0, 0, k == 0 ? kHugeLlc : kTinyLlc});
      y[k].resize(x.size());
      dx[k].resize(x.size());
      group_norm_forward(x.data(), sh, weight.data(), bias.data(), 1e-5, y[k].data(), mean.data(),
                         invstd.data());
      group_norm_backward(x.data(), dy.data(), sh, weight.data(), mean.data(), invstd.data(),
                          dx[k].data(), dw.data(), db.data());
    }
    EXPECT_EQ(y[0], y[1]) << layout_name(layout);
    EXPECT_EQ(dx[0], dx[1]) << layout_name(layout);
  }
}

// x, dy and every output `offset_bytes` past a 64-byte boundary.
struct OffsetBuffers {
  static constexpr int64_t kPad = 16;  // floats
  AlignedVector<float> x, dy, y, y_relu, dx;
  int64_t at;  // floats
  OffsetBuffers(const std::vector<float>& x0, const std::vector<float>& dy0, int64_t offset_bytes)
      : at(offset_bytes / 4) {
    for (auto* v : {&x, &dy, &y, &y_relu, &dx}) v->assign(x0.size() + kPad, 0.0f);
    std::copy(x0.begin(), x0.end(), x.begin() + at);
    std::copy(dy0.begin(), dy0.end(), dy.begin() + at);
  }
  std::vector<float> view(const AlignedVector<float>& v) const {
    return {v.begin() + at, v.begin() + at + static_cast<int64_t>(v.size()) - kPad};
  }
};

// Every kernel's outputs at offsets 4, 8, 16 and 32 bytes are those at 0, bit
// for bit, with plain and with streaming stores (a tiny LLC), in every variant.
TEST(Alignment, ResultsAreIdenticalAtEveryOffset) {
  const BatchNormShape shapes[] = {{2, 32, 100, Layout::channels_first},
                                   {3, 32, 50, Layout::channels_last},
                                   {3, 24, 50, Layout::channels_last},
                                   {3, 32, 50, Layout::blocked16},
                                   {64, 16, 3, Layout::channels_first}};
  for (const BatchNormShape& sh : shapes)
    for (const int64_t llc : {kHugeLlc, kTinyLlc}) {
      ScopedCacheSizes sizes({0, 0, llc});
      const std::vector<float> x0 = channel_data(sh, 51), dy0 = random_vector(sh.numel(), 52);
      const std::vector<float> weight = random_vector(sh.c, 53, 1.0f, 0.3f);
      const std::vector<float> bias = random_vector(sh.c, 54);
      const GroupNormShape gsh{sh.n, sh.c, sh.s, 8, sh.layout};
      for (const std::string& variant : kernel_variants()) {
        ScopedKernelVariant use(variant);
        set_group_norm_kernel_variant(variant);
        std::vector<std::vector<float>> want;
        for (const int64_t offset : {0, 4, 8, 16, 32}) {
          SCOPED_TRACE(describe(sh) + " variant " + variant + " offset " + std::to_string(offset) +
                       (llc == kTinyLlc ? " streaming" : ""));
          OffsetBuffers b(x0, dy0, offset);
          std::vector<float> mean(sh.c), invstd(sh.c), dw(sh.c), db(sh.c);
          std::vector<std::vector<float>> got;
          batch_norm_forward_training(b.x.data() + b.at, sh, weight.data(), bias.data(), {}, 1e-5,
                                      b.y.data() + b.at, mean.data(), invstd.data());
          batch_norm_forward_training(b.x.data() + b.at, sh, weight.data(), bias.data(), {}, 1e-5,
                                      b.y_relu.data() + b.at, nullptr, nullptr, Activation::relu);
          batch_norm_backward(b.x.data() + b.at, b.dy.data() + b.at, sh, weight.data(), mean.data(),
                              invstd.data(), b.dx.data() + b.at, dw.data(), db.data(),
                              Activation::relu, b.y_relu.data() + b.at);
          got.insert(got.end(), {b.view(b.y), b.view(b.y_relu), b.view(b.dx), dw, db});
          batch_norm_forward_inference(b.x.data() + b.at, sh, weight.data(), bias.data(),
                                       mean.data(), invstd.data(), 1e-5, b.y.data() + b.at);
          got.push_back(b.view(b.y));
          std::vector<float> gmean(sh.n * 8), ginvstd(sh.n * 8);
          group_norm_forward(b.x.data() + b.at, gsh, weight.data(), bias.data(), 1e-5,
                             b.y.data() + b.at, gmean.data(), ginvstd.data());
          group_norm_backward(b.x.data() + b.at, b.dy.data() + b.at, gsh, weight.data(),
                              gmean.data(), ginvstd.data(), b.dx.data() + b.at, dw.data(),
                              db.data());
          got.insert(got.end(), {b.view(b.y), b.view(b.dx), dw, db});
          if (offset == 0) {
            want = got;
          } else {
            ASSERT_EQ(got.size(), want.size());
            for (size_t k = 0; k < got.size(); ++k) EXPECT_EQ(got[k], want[k]) << "output " << k;
          }
        }
        set_group_norm_kernel_variant("auto");
      }
    }
}

}  // namespace
}  // namespace bnlab::test
