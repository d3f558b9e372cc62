// batch_norm_backward_inference: the backward of the inference forward, whose
// running statistics are constants. Against central differences of the
// forward computed in double here (small shapes, both layouts, affine or not,
// fused ReLU or not), against the closed form in double on shapes large
// enough for the threaded and streamed paths, for every kernel variant; and
// its null outputs and argument errors.
//   y = act((x - rm) * invstd_r * w + b),  invstd_r = 1/sqrt(rv + eps)
//   dx = w * invstd_r * g,  dweight = sum(g * (x - rm) * invstd_r),  dbias = sum(g)
// with g = dy, or 0 where y <= 0 under the ReLU.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "bn_reference.hpp"
#include "bnlab/batch_norm.hpp"
#include "bnlab/error.hpp"
#include "bnlab/threading.hpp"

namespace bnlab::test {
namespace {

constexpr double kEps = 1e-5;

struct EvalInputs {
  std::vector<float> x, weight, bias, running_mean, running_var, dy;
};

EvalInputs make_inputs(const BatchNormShape& sh, uint32_t seed) {
  EvalInputs in;
  in.x = channel_data(sh, seed);
  in.weight = random_vector(sh.c, seed + 1, 1.0f, 0.4f);
  in.bias = random_vector(sh.c, seed + 2, 0.2f, 0.5f);
  in.running_mean = random_vector(sh.c, seed + 3, 0.0f, 1.0f);
  in.running_var = random_vector(sh.c, seed + 4, 2.0f, 0.5f);
  in.dy = random_vector(sh.numel(), seed + 5);
  return in;
}

// The pre-activation v = (x - rm) * invstd_r * w + b of element e, in double.
double pre_activation(double x, int64_t e, const BatchNormShape& sh, const std::vector<double>& w,
                      const std::vector<double>& b, const EvalInputs& in) {
  const int64_t j = channel_of(e, sh);
  const double invstd = 1.0 / std::sqrt(static_cast<double>(in.running_var[j]) + kEps);
  return (x - in.running_mean[j]) * invstd * w[j] + b[j];
}

// loss = sum(dy * act(v)) in double, for central differences.
double loss(const std::vector<double>& x, const BatchNormShape& sh, const std::vector<double>& w,
            const std::vector<double>& b, const EvalInputs& in, bool relu) {
  double total = 0.0;
  for (int64_t e = 0; e < sh.numel(); ++e) {
    const double v = pre_activation(x[e], e, sh, w, b, in);
    total += in.dy[e] * (relu && v < 0.0 ? 0.0 : v);
  }
  return total;
}



class EvalBackward : public ::testing::TestWithParam<GradCase> {};

TEST_P(EvalBackward, MatchesCentralDifferencesOfTheInferenceForward) {
  const GradCase& ec = GetParam();
  const BatchNormShape sh{ec.n, ec.c, ec.s, ec.layout};
  EvalInputs in = make_inputs(sh, 300);
  if (!ec.affine) {
    std::fill(in.weight.begin(), in.weight.end(), 1.0f);
    std::fill(in.bias.begin(), in.bias.end(), 0.0f);
  }
  std::vector<double> xd = to_double(in.x), wd = to_double(in.weight), bd = to_double(in.bias);
  // Inputs off the ReLU's kink: nudge any pre-activation within 1e-3 of 0.
  for (int64_t e = 0; e < sh.numel(); ++e)
    if (ec.relu && std::fabs(pre_activation(xd[e], e, sh, wd, bd, in)) < 1e-3) {
      in.x[e] += 0.01f;
      xd[e] = in.x[e];
    }
  const NumericGradients fd =
      numeric_gradients(xd, wd, bd, [&] { return loss(xd, sh, wd, bd, in, ec.relu); });

  for (const std::string& variant : kernel_variants()) {
    SCOPED_TRACE("variant " + variant);
    ScopedKernelVariant use(variant);
    const Activation act = ec.relu ? Activation::relu : Activation::none;
    const float* w = ec.affine ? in.weight.data() : nullptr;
    std::vector<float> y(in.x.size());
    batch_norm_forward_inference(in.x.data(), sh, w, ec.affine ? in.bias.data() : nullptr,
                                 in.running_mean.data(), in.running_var.data(), kEps, y.data(), act);
    std::vector<float> dx(in.x.size()), dw(sh.c), db(sh.c);
    batch_norm_backward_inference(in.x.data(), in.dy.data(), sh, w, in.running_mean.data(),
                                  in.running_var.data(), kEps, dx.data(), dw.data(), db.data(), act,
                                  y.data());
    EXPECT_TRUE(all_close("dx", dx.data(), fd.dx, 2e-5));
    EXPECT_TRUE(all_close("dweight", dw.data(), fd.dweight, 2e-5));
    EXPECT_TRUE(all_close("dbias", db.data(), fd.dbias, 2e-5));
  }
}

// s = 5 and 1: the rows view; s = 70: channels-first spans.
INSTANTIATE_TEST_SUITE_P(SmallShapes, EvalBackward,
                         ::testing::ValuesIn(grad_cases({{3, 4, 5}, {4, 3, 1}, {2, 5, 70}, {2, 16, 5}})),
                         grad_case_name);

// The closed form in double, with the scale of each channel sum's terms.
ReferenceBackward closed_form(const EvalInputs& in, const BatchNormShape& sh,
                              const std::vector<float>* relu_y) {
  ReferenceBackward r;
  r.dx.resize(in.x.size());
  r.dweight.assign(sh.c, 0.0);
  r.dbias.assign(sh.c, 0.0);
  r.dweight_scale.assign(sh.c, 0.0);
  r.dbias_scale.assign(sh.c, 0.0);
  for (int64_t e = 0; e < sh.numel(); ++e) {
    const int64_t j = channel_of(e, sh);
    const double invstd = 1.0 / std::sqrt(static_cast<double>(in.running_var[j]) + kEps);
    const double g = relu_y && !((*relu_y)[e] > 0.0f) ? 0.0 : in.dy[e];
    const double xhat = (in.x[e] - static_cast<double>(in.running_mean[j])) * invstd;
    r.dx[e] = in.weight[j] * invstd * g;
    r.dweight[j] += g * xhat;
    r.dbias[j] += g;
    r.dweight_scale[j] += std::fabs(g * xhat);
    r.dbias_scale[j] += std::fabs(g);
  }
  return r;
}

TEST(EvalBackwardLarge, ThreadedShapesOfEveryVariantMatchTheClosedForm) {
  set_num_threads(2);
  // Channels-first spans, channels-last rows, and 40 MB channels-first (streamed).
  const BatchNormShape shapes[] = {{8, 64, 3136, Layout::channels_first},
                                   {16, 64, 3136, Layout::channels_last},
                                   {2, 20, 262147, Layout::channels_first}};
  for (const BatchNormShape& sh : shapes) {
    SCOPED_TRACE(describe(sh));
    const EvalInputs in = make_inputs(sh, 500);
    std::vector<float> y(in.x.size());
    batch_norm_forward_inference(in.x.data(), sh, in.weight.data(), in.bias.data(),
                                 in.running_mean.data(), in.running_var.data(), kEps, y.data(),
                                 Activation::relu);
    const ReferenceBackward plain = closed_form(in, sh, nullptr);
    const ReferenceBackward masked = closed_form(in, sh, &y);
    for (const std::string& variant : kernel_variants()) {
      SCOPED_TRACE("variant " + variant);
      ScopedKernelVariant use(variant);
      for (bool relu : {false, true}) {
        const ReferenceBackward& want = relu ? masked : plain;
        std::vector<float> dx(in.x.size()), dw(sh.c), db(sh.c);
        batch_norm_backward_inference(in.x.data(), in.dy.data(), sh, in.weight.data(),
                                      in.running_mean.data(), in.running_var.data(), kEps,
                                      dx.data(), dw.data(), db.data(),
                                      relu ? Activation::relu : Activation::none,
                                      relu ? y.data() : nullptr);
        EXPECT_TRUE(all_close("dx", dx.data(), want.dx, kTolerance));
        EXPECT_TRUE(all_close("dweight", dw.data(), want.dweight, kTolerance, &want.dweight_scale));
        EXPECT_TRUE(all_close("dbias", db.data(), want.dbias, kTolerance, &want.dbias_scale));
      }
    }
  }
  set_num_threads(0);
}

TEST(EvalBackwardArguments, OutputsMayBeNullAndBadArgumentsAreNamed) {
  const BatchNormShape sh{3, 4, 5, Layout::channels_first};
  const EvalInputs in = make_inputs(sh, 700);
  std::vector<float> dx(in.x.size()), dw(sh.c), db(sh.c), dx_only(in.x.size()), dw_only(sh.c);
  batch_norm_backward_inference(in.x.data(), in.dy.data(), sh, in.weight.data(),
                                in.running_mean.data(), in.running_var.data(), kEps, dx.data(),
                                dw.data(), db.data());
  batch_norm_backward_inference(in.x.data(), in.dy.data(), sh, in.weight.data(),
                                in.running_mean.data(), in.running_var.data(), kEps,
                                dx_only.data(), nullptr, nullptr);
  batch_norm_backward_inference(in.x.data(), in.dy.data(), sh, in.weight.data(),
                                in.running_mean.data(), in.running_var.data(), kEps, nullptr,
                                dw_only.data(), nullptr);
  EXPECT_EQ(dx_only, dx);
  EXPECT_EQ(dw_only, dw);
  // An empty batch: zero parameter gradients.
  std::vector<float> dw_empty(sh.c, 5.0f), db_empty(sh.c, 5.0f);
  batch_norm_backward_inference(nullptr, nullptr, {0, 4, 5, Layout::channels_first}, nullptr,
                                in.running_mean.data(), in.running_var.data(), kEps, nullptr,
                                dw_empty.data(), db_empty.data());
  EXPECT_EQ(dw_empty, std::vector<float>(sh.c, 0.0f));
  EXPECT_EQ(db_empty, std::vector<float>(sh.c, 0.0f));
  const auto message_of = [&](const std::function<void()>& call) {
    try {
      call();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(message_of([&] {
              batch_norm_backward_inference(in.x.data(), in.dy.data(), sh, nullptr,
                                            in.running_mean.data(), nullptr, kEps, dx.data(),
                                            nullptr, nullptr);
            }).find("running_var"),
            std::string::npos);
  // A huge c with null buffers: named before any scratch of c values is taken.
  EXPECT_NE(message_of([&] {
              batch_norm_backward_inference(nullptr, nullptr,
                                            {32, int64_t{1} << 31, 32, Layout::blocked16},
                                            nullptr, nullptr, nullptr, kEps, nullptr, nullptr,
                                            nullptr);
            }).find("x must not be null"),
            std::string::npos);
  EXPECT_NE(message_of([&] {
              batch_norm_backward_inference(in.x.data(), in.dy.data(), sh, nullptr,
                                            in.running_mean.data(), in.running_var.data(), 0.0,
                                            dx.data(), nullptr, nullptr);
            }).find("eps"),
            std::string::npos);
  EXPECT_NE(message_of([&] {
              batch_norm_backward_inference(in.x.data(), in.dy.data(), sh, nullptr,
                                            in.running_mean.data(), in.running_var.data(), kEps,
                                            dx.data(), nullptr, nullptr, Activation::relu, nullptr);
            }).find("y"),
            std::string::npos);
}

}  // namespace
}  // namespace bnlab::test
