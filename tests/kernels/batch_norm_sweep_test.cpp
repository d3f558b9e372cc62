// Every kernel (forward training, forward inference, backward) against the
// float64 reference of bn_reference.hpp, for every kernel variant the CPU runs,
// over shapes that reach each code path (S = 1, odd sizes, C not a multiple of
// the vector width, N = 1 with S > 1, spans longer than one block, rows wider
// than one tile), both layouts, and every flag combination.
// Tolerance: |got - ref| <= 1e-5 * (1 + |ref|); channel sums against
// 1e-5 * (1 + sum of |terms|) (see bn_reference.hpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>

#include "bn_reference.hpp"
#include "bnlab/batch_norm.hpp"
#include "bnlab/error.hpp"

namespace bnlab::test {
namespace {

struct Sizes {
  int64_t n, c, s;
};

// Why each shape is here:
const Sizes kShapes[] = {
    {2, 3, 1},                  // S = 1, the (N, C) case
    {1, 5, 7},                  // N = 1 with S > 1
    {3, 17, 5},                 // odd everything, C not a multiple of 8 or 16
    {4, 33, 1},                 // S = 1, C just past a multiple of 16
    {5, 19, 65},                // channels-first spans just above kSpanMin, odd
    {9, 20, 63},                // channels-first just below kSpanMin: the rows view
    {2, 3, 130},                // spans of two vectors and a tail
    {7, 1, 3},                  // one channel
    {2, 16, 64},                // exact vector multiples
    {3, 40, 100}, {2, 300, 2},  // channels-last rows wider than one 256-column tile
    {1, 2, 4099},               // a span longer than one 4096-float block
    {70, 3, 1},                 // many rows, few columns
    {3, 48, 70}, {4, 32, 1},    // blocked16 too: three blocks, and s = 1
    {2, 16, 300},               // blocked16 units longer than one 256-row block
    {3, 64, 37},                // blocked16 with four blocks
};

using Param = std::tuple<std::string, Sizes, Layout>;

class BatchNormSweep : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override { set_batch_norm_kernel_variant(std::get<0>(GetParam())); }
  void TearDown() override { set_batch_norm_kernel_variant("auto"); }
  BatchNormShape shape() const {
    const Sizes& z = std::get<1>(GetParam());
    return {z.n, z.c, z.s, std::get<2>(GetParam())};
  }
};

TEST_P(BatchNormSweep, ForwardTrainingMatchesFloat64ForEveryFlagCombination) {
  const BatchNormShape sh = shape();
  const std::vector<float> x = channel_data(sh, 11);
  const std::vector<float> weight = random_vector(sh.c, 12, 1.0f, 0.5f);
  const std::vector<float> bias = random_vector(sh.c, 13, 0.0f, 0.5f);
  const std::vector<float> rm0 = random_vector(sh.c, 14), rv0 = random_vector(sh.c, 15, 2.0f, 0.3f);
  const double eps = 1e-5, momentum = 0.1;
  const double count = static_cast<double>(sh.n * sh.s);

  for (bool affine : {false, true})
    for (int running : {0, 1, 2})    // none, unbiased (PyTorch), biased (ONNX)
      for (int save : {0, 1, 2, 3})  // bit 0: save_mean given, bit 1: save_invstd given
        for (bool alias : {false, true})
          for (bool relu : {false, true}) {
            SCOPED_TRACE(describe(sh) + " affine=" + std::to_string(affine) +
                         " running=" + std::to_string(running) + " save=" + std::to_string(save) +
                         " alias=" + std::to_string(alias) + " relu=" + std::to_string(relu));
            std::vector<float> y(x.size(), -7.0f), rm = rm0, rv = rv0;
            std::vector<float> save_mean(sh.c, -7.0f), save_invstd(sh.c, -7.0f);
            if (alias) y = x;
            RunningStats stats;
            if (running != 0) stats = {rm.data(), rv.data(), momentum, running == 1};
            const BatchNormStatus status = batch_norm_forward_training(
                alias ? y.data() : x.data(), sh, affine ? weight.data() : nullptr,
                affine ? bias.data() : nullptr, stats, eps, y.data(),
                (save & 1) ? save_mean.data() : nullptr, (save & 2) ? save_invstd.data() : nullptr,
                relu ? Activation::relu : Activation::none);
            ASSERT_EQ(status, BatchNormStatus::ok);

            const ReferenceForward ref = reference_forward_training(
                x, sh, affine ? weight.data() : nullptr, affine ? bias.data() : nullptr, eps, relu);
            EXPECT_TRUE(all_close("y", y.data(), ref.y, kTolerance));
            if (save & 1) {
              EXPECT_TRUE(all_close("save_mean", save_mean.data(), ref.mean, kTolerance));
            } else {
              EXPECT_EQ(save_mean, std::vector<float>(sh.c, -7.0f));
            }
            if (save & 2) {
              EXPECT_TRUE(all_close("save_invstd", save_invstd.data(), ref.invstd, kTolerance));
            } else {
              EXPECT_EQ(save_invstd, std::vector<float>(sh.c, -7.0f));
            }
            if (running != 0) {
              const double bessel = running == 1 ? count / (count - 1.0) : 1.0;
              std::vector<double> want_mean(sh.c), want_var(sh.c);
              for (int64_t j = 0; j < sh.c; ++j) {
                want_mean[j] = (1.0 - momentum) * rm0[j] + momentum * ref.mean[j];
                want_var[j] = (1.0 - momentum) * rv0[j] + momentum * ref.var[j] * bessel;
              }
              EXPECT_TRUE(all_close("running_mean", rm.data(), want_mean, kTolerance));
              EXPECT_TRUE(all_close("running_var", rv.data(), want_var, kTolerance));
            }
          }
}

TEST_P(BatchNormSweep, ForwardInferenceMatchesFloat64ForEveryFlagCombination) {
  const BatchNormShape sh = shape();
  const std::vector<float> x = channel_data(sh, 21);
  const std::vector<float> weight = random_vector(sh.c, 22, 1.0f, 0.5f);
  const std::vector<float> bias = random_vector(sh.c, 23, 0.0f, 0.5f);
  const std::vector<float> rm = random_vector(sh.c, 24);
  std::vector<float> rv = random_vector(sh.c, 25, 1.5f, 0.3f);
  for (float& v : rv) v = std::fabs(v);
  const double eps = 1e-3;
  for (bool affine : {false, true})
    for (bool alias : {false, true})
      for (bool relu : {false, true}) {
        SCOPED_TRACE(describe(sh) + " affine=" + std::to_string(affine) +
                     " alias=" + std::to_string(alias) + " relu=" + std::to_string(relu));
        std::vector<float> y(x.size(), -7.0f);
        if (alias) y = x;
        batch_norm_forward_inference(alias ? y.data() : x.data(), sh,
                                     affine ? weight.data() : nullptr,
                                     affine ? bias.data() : nullptr, rm.data(), rv.data(), eps,
                                     y.data(), relu ? Activation::relu : Activation::none);
        const std::vector<double> want = reference_forward_inference(
            x, sh, affine ? weight.data() : nullptr, affine ? bias.data() : nullptr, rm.data(),
            rv.data(), eps, relu);
        EXPECT_TRUE(all_close("y", y.data(), want, kTolerance));
      }
}

TEST_P(BatchNormSweep, BackwardMatchesFloat64ForEveryOutputCombination) {
  const BatchNormShape sh = shape();
  const std::vector<float> x = channel_data(sh, 31);
  const std::vector<float> dy = random_vector(sh.numel(), 32);
  const std::vector<float> weight = random_vector(sh.c, 33, 1.0f, 0.5f);
  const std::vector<float> bias = random_vector(sh.c, 34, 0.0f, 0.5f);
  const double eps = 1e-5;

  for (bool affine : {false, true})
    for (bool relu : {false, true}) {
      // The forward gives save_mean/save_invstd and, with relu, the mask's y.
      std::vector<float> y(x.size()), save_mean(sh.c), save_invstd(sh.c);
      ASSERT_EQ(batch_norm_forward_training(x.data(), sh, affine ? weight.data() : nullptr,
                                            affine ? bias.data() : nullptr, RunningStats{}, eps,
                                            y.data(), save_mean.data(), save_invstd.data(),
                                            relu ? Activation::relu : Activation::none),
                BatchNormStatus::ok);
      const ReferenceBackward ref =
          reference_backward(x, dy, sh, affine ? weight.data() : nullptr, save_mean.data(),
                             save_invstd.data(), relu ? y.data() : nullptr);
      for (int outputs = 0; outputs < 8; ++outputs) {
        const bool want_dx = outputs & 1, want_dw = outputs & 2, want_db = outputs & 4;
        SCOPED_TRACE(describe(sh) + " affine=" + std::to_string(affine) +
                     " relu=" + std::to_string(relu) + " dx=" + std::to_string(want_dx) +
                     " dweight=" + std::to_string(want_dw) + " dbias=" + std::to_string(want_db));
        std::vector<float> dx(x.size(), -7.0f), dw(sh.c, -7.0f), db(sh.c, -7.0f);
        batch_norm_backward(x.data(), dy.data(), sh, affine ? weight.data() : nullptr,
                            save_mean.data(), save_invstd.data(), want_dx ? dx.data() : nullptr,
                            want_dw ? dw.data() : nullptr, want_db ? db.data() : nullptr,
                            relu ? Activation::relu : Activation::none, relu ? y.data() : nullptr);
        if (want_dx) {
          EXPECT_TRUE(all_close("dx", dx.data(), ref.dx, kTolerance));
        } else {
          EXPECT_EQ(dx, std::vector<float>(x.size(), -7.0f));
        }
        if (want_dw) {
          EXPECT_TRUE(all_close("dweight", dw.data(), ref.dweight, kTolerance, &ref.dweight_scale));
        }
        if (want_db) {
          EXPECT_TRUE(all_close("dbias", db.data(), ref.dbias, kTolerance, &ref.dbias_scale));
        }
      }
    }
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  const auto& [variant, z, layout] = info.param;
  std::string name = variant + "_n" + std::to_string(z.n) + "c" + std::to_string(z.c) + "s" +
                     std::to_string(z.s);
  name += '_';
  name += layout_name(layout);
  return name;
}

// Every variant, shape and layout the shape can take.
std::vector<Param> sweep_params() {
  std::vector<Param> params;
  for (const std::string& variant : kernel_variants())
    for (const Sizes& z : kShapes)
      for (Layout layout : layouts_for(z.c)) params.emplace_back(variant, z, layout);
  return params;
}

INSTANTIATE_TEST_SUITE_P(AllVariants, BatchNormSweep, ::testing::ValuesIn(sweep_params()),
                         param_name);

TEST(KernelVariants, ListNamesPlainAndAutoAndSelectsEach) {
  const std::vector<std::string> names = kernel_variants();
  EXPECT_NE(std::find(names.begin(), names.end(), "plain"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "auto"), names.end());
  for (const std::string& name : names) {
    if (name == "auto") continue;
    ScopedKernelVariant use(name);
    EXPECT_EQ(batch_norm_kernel_variant(), name);
  }
  EXPECT_NE(batch_norm_kernel_variant(), "auto");  // "auto" resolves to a concrete variant
}

TEST(KernelVariants, UnknownNameThrowsAndNamesIt) {
  try {
    set_batch_norm_kernel_variant("NEON9000");
    FAIL() << "expected bnlab::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NEON9000"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace bnlab::test
