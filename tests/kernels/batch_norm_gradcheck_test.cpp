// Finite-difference checks of the backward: the loss L = sum(y * r), r random,
// y = the training forward computed in double (bn_reference.hpp, itself checked
// against the kernels in batch_norm_sweep_test.cpp). Central differences
//   dL/dv ~ (L(v + h) - L(v - h)) / (2h),  h = 1e-6,
// in double are accurate to ~1e-9 here, so the comparison measures the float
// kernel: |kernel - fd| <= 2e-5 * (1 + |fd|).
// Inputs are drawn so no pre-activation lies within 1e-3 of ReLU's kink.
#include <gtest/gtest.h>

#include <functional>

#include "bn_reference.hpp"
#include "bnlab/batch_norm.hpp"

namespace bnlab::test {
namespace {

constexpr double kGradTolerance = 2e-5;
constexpr double kEps = 1e-5;


// loss(x, weight, bias) = sum(y * r) in double.
double loss(const std::vector<double>& x, const BatchNormShape& sh, const std::vector<double>& w,
            const std::vector<double>& b, const std::vector<double>& r, bool relu) {
  const ReferenceForward f = reference_forward_training(x, sh, w.data(), b.data(), kEps, relu);
  double total = 0.0;
  for (size_t i = 0; i < r.size(); ++i) total += f.y[i] * r[i];
  return total;
}


// True when some pre-activation (x - mean) * invstd * w + b is within margin of 0.
bool near_kink(const std::vector<float>& x, const BatchNormShape& sh, const std::vector<float>& w,
               const std::vector<float>& b, double margin) {
  const ReferenceForward f = reference_forward_training(x, sh, w.data(), b.data(), kEps, false);
  for (double v : f.y)
    if (std::fabs(v) < margin) return true;
  return false;
}

class GradientCheck : public ::testing::TestWithParam<GradCase> {};

TEST_P(GradientCheck, BackwardMatchesCentralDifferencesOfTheForward) {
  const GradCase& gc = GetParam();
  const BatchNormShape sh{gc.n, gc.c, gc.s, gc.layout};
  // Weights away from 0 and inputs away from the kink, so the derivative exists.
  std::vector<float> x, weight(sh.c, 1.0f), bias(sh.c, 0.0f);
  uint32_t seed = 100;
  do {
    x = channel_data(sh, seed);
    if (gc.affine) {
      weight = random_vector(sh.c, seed + 1, 1.0f, 0.4f);
      bias = random_vector(sh.c, seed + 2, 0.2f, 0.5f);
    }
    ++seed;
  } while (gc.relu && near_kink(x, sh, weight, bias, 1e-3));
  const std::vector<float> r = random_vector(sh.numel(), 7);

  // The central differences, once; without affine the kernel's dweight/dbias
  // are the gradients at weight = 1, bias = 0, which is what these give.
  std::vector<double> xd = to_double(x), wd = to_double(weight), bd = to_double(bias);
  const std::vector<double> rd = to_double(r);
  const NumericGradients fd =
      numeric_gradients(xd, wd, bd, [&] { return loss(xd, sh, wd, bd, rd, gc.relu); });

  for (const std::string& variant : kernel_variants()) {
    SCOPED_TRACE("variant " + variant);
    ScopedKernelVariant use(variant);
    const Activation act = gc.relu ? Activation::relu : Activation::none;
    std::vector<float> y(x.size()), mean(sh.c), invstd(sh.c);
    ASSERT_EQ(batch_norm_forward_training(x.data(), sh, gc.affine ? weight.data() : nullptr,
                                          gc.affine ? bias.data() : nullptr, {}, kEps, y.data(),
                                          mean.data(), invstd.data(), act),
              BatchNormStatus::ok);
    std::vector<float> dx(x.size()), dw(sh.c), db(sh.c);
    batch_norm_backward(x.data(), r.data(), sh, gc.affine ? weight.data() : nullptr, mean.data(),
                        invstd.data(), dx.data(), dw.data(), db.data(), act, y.data());
    EXPECT_TRUE(all_close("dx", dx.data(), fd.dx, kGradTolerance));
    EXPECT_TRUE(all_close("dweight", dw.data(), fd.dweight, kGradTolerance));
    EXPECT_TRUE(all_close("dbias", db.data(), fd.dbias, kGradTolerance));
  }
}

INSTANTIATE_TEST_SUITE_P(SmallShapes, GradientCheck,
                         ::testing::ValuesIn(grad_cases({{3, 4, 5}, {4, 3, 1}, {1, 2, 9}, {2, 5, 70}, {2, 16, 5}, {3, 32, 2}})),
                         grad_case_name);

}  // namespace
}  // namespace bnlab::test
