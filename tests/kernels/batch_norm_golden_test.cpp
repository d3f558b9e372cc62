// bnlab against PyTorch: the golden vectors in tests/golden/batch_norm/, made by
// tests/golden/make_batch_norm_goldens.py (F.batch_norm and autograd in float64
// on float32 inputs; the ONNX cases follow the ONNX operator's specification).
// Each case runs in both layouts (the files are channels-first; the test
// permutes to channels-last) and with every kernel variant.
// Tolerance: |got - golden| <= 1e-5 * (1 + |golden|).
#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "bn_reference.hpp"
#include "bnlab/batch_norm.hpp"
#include "golden_reader.hpp"

namespace bnlab::test {
namespace {

using Param = std::tuple<std::string, Layout>;

class PyTorchGolden : public ::testing::TestWithParam<Param> {};

TEST_P(PyTorchGolden, EveryVariantMatchesPyTorch) {
  const auto& [name, layout] = GetParam();
  const Golden g = read_golden(name);
  const std::vector<double>& dims = entry(g, "dims");
  ASSERT_GE(dims.size(), 2u);
  BatchNormShape sh{static_cast<int64_t>(dims[0]), static_cast<int64_t>(dims[1]), 1, layout};
  for (size_t d = 2; d < dims.size(); ++d) sh.s *= static_cast<int64_t>(dims[d]);
  const bool training = flag(g, "training"), affine = flag(g, "affine");
  const bool track = flag(g, "track_running_stats"), relu = flag(g, "relu");
  const double eps = entry(g, "eps")[0], momentum = entry(g, "momentum")[0];
  const Activation act = relu ? Activation::relu : Activation::none;

  const std::vector<float> x = to_float(in_layout(entry(g, "x"), sh));
  ASSERT_EQ(static_cast<int64_t>(x.size()), sh.numel());
  const std::vector<float> weight = affine ? to_float(entry(g, "weight")) : std::vector<float>();
  const std::vector<float> bias = affine ? to_float(entry(g, "bias")) : std::vector<float>();
  const float* w = affine ? weight.data() : nullptr;
  const float* b = affine ? bias.data() : nullptr;
  const std::vector<float> rm_in =
      track ? to_float(entry(g, "running_mean_in")) : std::vector<float>();
  const std::vector<float> rv_in =
      track ? to_float(entry(g, "running_var_in")) : std::vector<float>();

  for (const std::string& variant : kernel_variants()) {
    SCOPED_TRACE(name + " " + describe(sh) + " variant " + variant);
    ScopedKernelVariant use(variant);
    std::vector<float> y(x.size());
    if (!training) {
      batch_norm_forward_inference(x.data(), sh, w, b, rm_in.data(), rv_in.data(), eps, y.data(),
                                   act);
      EXPECT_TRUE(all_close("y", y.data(), in_layout(entry(g, "y"), sh), kTolerance));
      continue;
    }
    std::vector<float> rm = rm_in, rv = rv_in, mean(sh.c), invstd(sh.c);
    RunningStats running;
    if (track) running = {rm.data(), rv.data(), momentum, flag(g, "unbiased")};
    ASSERT_EQ(batch_norm_forward_training(x.data(), sh, w, b, running, eps, y.data(), mean.data(),
                                          invstd.data(), act),
              BatchNormStatus::ok);
    EXPECT_TRUE(all_close("y", y.data(), in_layout(entry(g, "y"), sh), kTolerance));
    EXPECT_TRUE(all_close("save_mean", mean.data(), entry(g, "save_mean"), kTolerance));
    EXPECT_TRUE(all_close("save_invstd", invstd.data(), entry(g, "save_invstd"), kTolerance));
    if (track) {
      EXPECT_TRUE(all_close("running_mean", rm.data(), entry(g, "running_mean_out"), kTolerance));
      EXPECT_TRUE(all_close("running_var", rv.data(), entry(g, "running_var_out"), kTolerance));
    }
    const std::vector<float> dy = to_float(in_layout(entry(g, "dy"), sh));
    std::vector<float> dx(x.size()), dw(sh.c), db(sh.c);
    batch_norm_backward(x.data(), dy.data(), sh, w, mean.data(), invstd.data(), dx.data(),
                        dw.data(), db.data(), act, y.data());
    EXPECT_TRUE(all_close("dx", dx.data(), in_layout(entry(g, "dx"), sh), kTolerance));
    if (affine) {
      EXPECT_TRUE(all_close("dweight", dw.data(), entry(g, "dweight"), kTolerance));
      EXPECT_TRUE(all_close("dbias", db.data(), entry(g, "dbias"), kTolerance));
    }
  }
}

// Every file the script writes (a missing one fails its test).
const std::vector<std::string> kGoldenCases = {
    "train_2d_affine_m0.1",      "train_3d_noaffine_m0.3",
    "train_4d_affine_m0.1",      "train_4d_affine_m0.3_c17",
    "train_4d_affine_m0.1_s81",  "train_4d_noaffine_n1",
    "train_5d_affine_m0.1",      "train_3d_affine_no_running_stats",
    "train_4d_affine_relu",      "eval_4d_affine",
    "eval_2d_noaffine",          "eval_5d_affine",
    "onnx_4d_train_momentum0.9", "onnx_3d_train_momentum0.7",
    "train_4d_affine_relu_c32",  "eval_4d_affine_c16",
};
// The cases whose channels are a multiple of 16, for the blocked16 layout too.
const std::vector<std::string> kBlockedGoldenCases = {"train_4d_affine_relu_c32",
                                                      "eval_4d_affine_c16"};

std::string golden_param_name(const ::testing::TestParamInfo<Param>& info) {
  std::string name = std::get<0>(info.param);
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  name += '_';
  name += layout_name(std::get<1>(info.param));
  return name;
}

INSTANTIATE_TEST_SUITE_P(BatchNorm, PyTorchGolden,
                         ::testing::Combine(::testing::ValuesIn(kGoldenCases),
                                            ::testing::Values(Layout::channels_first,
                                                              Layout::channels_last)),
                         golden_param_name);
INSTANTIATE_TEST_SUITE_P(Blocked16, PyTorchGolden,
                         ::testing::Combine(::testing::ValuesIn(kBlockedGoldenCases),
                                            ::testing::Values(Layout::blocked16)),
                         golden_param_name);

TEST(PyTorchGoldenFormat, OnnxCasesStateTheirConvention) {
  // The ONNX files carry bnlab's momentum (1 - onnx_momentum) and a biased update.
  for (const char* name : {"onnx_4d_train_momentum0.9", "onnx_3d_train_momentum0.7"}) {
    const Golden g = read_golden(name);
    EXPECT_DOUBLE_EQ(entry(g, "momentum")[0], 1.0 - entry(g, "onnx_momentum")[0]) << name;
    EXPECT_EQ(entry(g, "unbiased")[0], 0.0) << name;
  }
}

}  // namespace
}  // namespace bnlab::test
