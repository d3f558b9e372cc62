// --precision bf16 (bnlab/nn/precision.hpp): Linear's and Conv2d's products
// under bf16 are the float products of the inputs rounded to bf16 (the
// rounding is the only change; accumulation stays float), forward and both
// backward products; names and the refusal on a CPU without bf16.
// Tolerance: |bf16 path - float path on rounded inputs| <= 1e-4 * (1 + |r|)
// (float accumulation in a different order); without the rounding the two
// differ by about 1e-2, which the test also checks, so it can fail.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "bnlab/batch_norm_bf16.hpp"
#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/nn/precision.hpp"
#include "grad_check.hpp"
#include "nn/gemm.hpp"

namespace bnlab::nn {
namespace {

using test::random_tensor;

Tensor rounded(const Tensor& t) {
  Tensor out(t.shape());
  for (int64_t i = 0; i < t.numel(); ++i) out[i] = bf16_to_float(float_to_bf16(t[i]));
  return out;
}

// Largest |a - b| / (1 + |b|).
double worst_relative(const Tensor& a, const Tensor& b) {
  double worst = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::fabs(double(a[i]) - b[i]) / (1.0 + std::fabs(double(b[i]))));
  return worst;
}

class Bf16Precision : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu_has_bf16()) GTEST_SKIP() << "no bf16 on this CPU (" << onednn_isa_name() << ")";
  }
  void TearDown() override { set_compute_precision(ComputePrecision::fp32); }
};

// The module's output, input gradient and weight gradient for x and dy.
struct Results {
  Tensor y, dx, dw;
};
Results run(Module& m, Parameter& weight, const Tensor& x, const Tensor& dy) {
  weight.grad.fill(0.0f);
  Results r{m.forward(x), {}, {}};
  r.dx = m.backward(dy);
  r.dw = weight.grad;
  return r;
}

// Module under bf16 against the same module in float on bf16-rounded x, dy
// and weights.
void check_rounding_is_the_only_change(const std::function<std::unique_ptr<Module>()>& make,
                                       const Shape& in_shape) {
  auto bf = make();
  auto fp = make();
  Parameter& w_bf = *bf->parameters()[0].second;
  Parameter& w_fp = *fp->parameters()[0].second;
  const Tensor x = random_tensor(in_shape, 7);
  const Tensor dy = random_tensor(bf->output_shape(in_shape), 8);
  set_compute_precision(ComputePrecision::bf16);
  const Results got = run(*bf, w_bf, x, dy);
  set_compute_precision(ComputePrecision::fp32);
  const Results plain = run(*fp, w_fp, x, dy);  // no rounding: must differ
  w_fp.value = rounded(w_fp.value);
  const Results want = run(*fp, w_fp, rounded(x), rounded(dy));
  EXPECT_LE(worst_relative(got.y, want.y), 1e-4);
  EXPECT_LE(worst_relative(got.dx, want.dx), 1e-4);
  EXPECT_LE(worst_relative(got.dw, want.dw), 1e-4);
  EXPECT_GT(worst_relative(plain.y, want.y), 1e-3);  // the rounding is visible at this size
}

TEST_F(Bf16Precision, LinearRoundsItsInputsToBf16AndAccumulatesInFloat) {
  check_rounding_is_the_only_change(
      [] {
        Generator gen(1);
        return std::make_unique<Linear>(96, 40, true, gen);
      },
      {17, 96});
}

// Larger than one chunk of the threaded rounding (16 Ki values), in weight and input.
TEST_F(Bf16Precision, LinearRoundsLargeOperandsOverTheThreads) {
  check_rounding_is_the_only_change(
      [] {
        Generator gen(3);
        return std::make_unique<Linear>(1000, 70, false, gen);
      },
      {37, 1000});
}

TEST_F(Bf16Precision, RoundToBf16RoundsEveryValueAcrossChunks) {
  for (int64_t count : {0, 1, 16383, 16384, 16385, 70001}) {
    const Tensor x = random_tensor({count}, 11);
    AlignedVector<uint16_t> out;
    const uint16_t* got = round_to_bf16(x.data(), count, out);
    for (int64_t i = 0; i < count; ++i)
      ASSERT_EQ(got[i], float_to_bf16(x[i])) << "count " << count << ", value " << i;
  }
}

// A bf16 backward after an fp32 forward rounds the weight and input it has
// then, so it equals the backward of a bf16 forward.
TEST_F(Bf16Precision, LinearBf16BackwardAfterAnFp32Forward) {
  Generator g1(4), g2(4);
  Linear a(50, 30, true, g1), b(50, 30, true, g2);
  const Tensor x = random_tensor({9, 50}, 12);
  const Tensor dy = random_tensor({9, 30}, 13);
  set_compute_precision(ComputePrecision::bf16);
  const Results want = run(a, a.weight, x, dy);
  set_compute_precision(ComputePrecision::fp32);
  b.weight.grad.fill(0.0f);
  b.forward(x);
  set_compute_precision(ComputePrecision::bf16);
  const Tensor dx = b.backward(dy);
  EXPECT_EQ(worst_relative(dx, want.dx), 0.0);
  EXPECT_EQ(worst_relative(b.weight.grad, want.dw), 0.0);
}

TEST_F(Bf16Precision, Conv2dRoundsItsInputsToBf16AndAccumulatesInFloat) {
  for (int64_t channels : {3, 16}) {  // plain formats, and oneDNN's blocked ones
    check_rounding_is_the_only_change(
        [channels] {
          Generator gen(2);
          return std::make_unique<Conv2d>(channels, 32, 3, 1, 1, true, gen);
        },
        {2, channels, 9, 9});
  }
}

TEST(Precision, NamesAndTheRefusalWithoutBf16) {
  EXPECT_EQ(parse_compute_precision("bf16"), ComputePrecision::bf16);
  EXPECT_EQ(precision_name(ComputePrecision::fp32), "fp32");
  EXPECT_THROW(parse_compute_precision("fp16"), Error);
  if (cpu_has_bf16()) {
    EXPECT_NO_THROW(set_compute_precision(ComputePrecision::bf16));
  } else {
    try {
      set_compute_precision(ComputePrecision::bf16);
      ADD_FAILURE() << "bf16 accepted on a CPU without it";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("AVX512-BF16"), std::string::npos) << e.what();
    }
  }
  set_compute_precision(ComputePrecision::fp32);
  EXPECT_EQ(compute_precision(), ComputePrecision::fp32);
}

}  // namespace
}  // namespace bnlab::nn
