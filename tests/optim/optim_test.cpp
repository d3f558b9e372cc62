#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "bnlab/error.hpp"
#include "bnlab/optim/optimizer.hpp"

namespace bnlab::optim {
namespace {

// One parameter of 3 values whose gradient the test sets before each step.
struct OneParameter {
  nn::Parameter param{Tensor({3}), Tensor({3})};
  std::vector<std::pair<std::string, nn::Parameter*>> list() { return {{"p", &param}}; }
  void set(const std::vector<float>& value, const std::vector<float>& grad) {
    for (int i = 0; i < 3; ++i) {
      param.value[i] = value[i];
      param.grad[i] = grad[i];
    }
  }
};

const std::vector<std::vector<float>> kGrads{{0.5f, -1.0f, 2.0f}, {0.1f, 0.2f, -0.3f}, {-1.5f, 0.0f, 0.7f}};
const std::vector<float> kStart{1.0f, -2.0f, 0.5f};

TEST(SGD, PlainStepIsLrTimesGradient) {
  OneParameter p;
  p.set(kStart, kGrads[0]);
  SGD sgd(p.list(), 0.1);
  sgd.step();
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(p.param.value[i], kStart[i] - 0.1 * kGrads[0][i], 1e-7);
}

// PyTorch: b = g on the first step, then b = momentum * b + g; wd adds wd * p to g.
TEST(SGD, MomentumAndWeightDecayFollowPyTorch) {
  OneParameter p;
  p.set(kStart, kGrads[0]);
  SGD sgd(p.list(), 0.05, 0.9, 1e-2);
  std::vector<double> value(kStart.begin(), kStart.end()), buffer(3, 0.0);
  for (size_t t = 0; t < kGrads.size(); ++t) {
    for (int i = 0; i < 3; ++i) p.param.grad[i] = kGrads[t][i];
    sgd.step();
    for (int i = 0; i < 3; ++i) {
      const double g = kGrads[t][i] + 1e-2 * value[i];
      buffer[i] = t == 0 ? g : 0.9 * buffer[i] + g;
      value[i] -= 0.05 * buffer[i];
      EXPECT_NEAR(p.param.value[i], value[i], 1e-6) << "step " << t << " element " << i;
    }
  }
}

// Three steps of Adam (decoupled: AdamW) against PyTorch's rule in double:
// Adam adds wd * p to the gradient, AdamW first shrinks p by 1 - lr * wd.
void expect_adam_steps(bool decoupled, double lr, double b1, double b2, double eps, double wd) {
  OneParameter p;
  p.set(kStart, kGrads[0]);
  std::unique_ptr<Adam> adam = decoupled ? std::make_unique<AdamW>(p.list(), lr, b1, b2, eps, wd)
                                         : std::make_unique<Adam>(p.list(), lr, b1, b2, eps, wd);
  std::vector<double> value(kStart.begin(), kStart.end()), m(3, 0.0), v(3, 0.0);
  for (size_t t = 0; t < kGrads.size(); ++t) {
    for (int i = 0; i < 3; ++i) p.param.grad[i] = kGrads[t][i];
    adam->step();
    const double step = static_cast<double>(t + 1);
    for (int i = 0; i < 3; ++i) {
      if (decoupled) value[i] *= 1 - lr * wd;
      const double g = kGrads[t][i] + (decoupled ? 0.0 : wd * value[i]);
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      const double m_hat = m[i] / (1 - std::pow(b1, step));
      const double v_hat = v[i] / (1 - std::pow(b2, step));
      value[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
      EXPECT_NEAR(p.param.value[i], value[i], 1e-6) << "step " << t << " element " << i;
    }
  }
}

TEST(Adam, StepsFollowPyTorch) { expect_adam_steps(false, 0.01, 0.8, 0.99, 1e-6, 0.1); }

TEST(Adam, FirstStepMovesEachValueByAboutLr) {
  OneParameter p;
  p.set(kStart, kGrads[0]);
  Adam adam(p.list(), 0.001);
  adam.step();
  for (int i = 0; i < 3; ++i)
    EXPECT_NEAR(p.param.value[i], kStart[i] - 0.001 * (kGrads[0][i] > 0 ? 1 : -1), 1e-7);
}

TEST(SGD, LargeParametersAreUpdatedInEveryChunk) {
  const int64_t numel = 40000;  // several chunks of the threaded loop
  nn::Parameter param{Tensor({numel}), Tensor({numel})};
  for (int64_t i = 0; i < numel; ++i) {
    param.value[i] = static_cast<float>(i % 7) - 3.0f;
    param.grad[i] = static_cast<float>(i % 5) * 0.25f;
  }
  SGD sgd({{"p", &param}}, 0.1, 0.5);
  sgd.step();
  sgd.step();
  for (int64_t i = 0; i < numel; ++i) {
    const double g = (i % 5) * 0.25;
    const double expected = (i % 7) - 3.0 - 0.1 * g - 0.1 * (0.5 * g + g);
    ASSERT_NEAR(param.value[i], expected, 1e-6) << i;
  }
}

TEST(Adam, LargeParametersAreUpdatedInEveryChunk) {
  const int64_t numel = 40000;
  nn::Parameter param{Tensor({numel}, 1.0f), Tensor({numel})};
  for (int64_t i = 0; i < numel; ++i) param.grad[i] = i % 2 ? 0.5f : -2.0f;
  Adam adam({{"p", &param}}, 0.01);
  adam.step();
  for (int64_t i = 0; i < numel; ++i)
    ASSERT_NEAR(param.value[i], i % 2 ? 0.99 : 1.01, 1e-6) << i;
}

TEST(Optimizer, ZeroGradClearsGradients) {
  OneParameter p;
  p.set(kStart, kGrads[0]);
  SGD sgd(p.list(), 0.1);
  sgd.zero_grad();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(p.param.grad[i], 0.0f);
}

// step_and_zero_grad is step() then zero_grad(): the same values bit for bit
// (the update is the same loop), every gradient zero after it, over several
// chunks of the threaded loop, for each update rule.
TEST(Optimizer, StepAndZeroGradEqualsStepThenZeroGrad) {
  const int64_t numel = 40000;
  const auto make = [&] {
    auto param = std::make_unique<nn::Parameter>(nn::Parameter{Tensor({numel}), Tensor({numel})});
    for (int64_t i = 0; i < numel; ++i) param->value[i] = static_cast<float>(i % 7) - 3.0f;
    return param;
  };
  const auto set_grad = [&](nn::Parameter& p, int round) {
    for (int64_t i = 0; i < numel; ++i) p.grad[i] = static_cast<float>((i + round) % 5) * 0.25f - 0.5f;
  };
  for (int rule = 0; rule < 5; ++rule) {
    SCOPED_TRACE("rule " + std::to_string(rule));
    auto a = make(), b = make();
    const auto optimizer = [&](nn::Parameter& p) -> std::unique_ptr<Optimizer> {
      if (rule == 3)
        return std::make_unique<AdamW>(
            std::vector<std::pair<std::string, nn::Parameter*>>{{"p", &p}}, 0.01);
      if (rule == 4)
        return std::make_unique<SGD>(std::vector<std::pair<std::string, nn::Parameter*>>{{"p", &p}},
                                     0.1, 0.9, 0.01, 0.0, true);
      if (rule == 0)
        return std::make_unique<SGD>(std::vector<std::pair<std::string, nn::Parameter*>>{{"p", &p}},
                                     0.1);
      if (rule == 1)
        return std::make_unique<SGD>(std::vector<std::pair<std::string, nn::Parameter*>>{{"p", &p}},
                                     0.1, 0.9, 0.01);
      return std::make_unique<Adam>(std::vector<std::pair<std::string, nn::Parameter*>>{{"p", &p}}, 0.01);
    };
    auto oa = optimizer(*a), ob = optimizer(*b);
    for (int round = 0; round < 3; ++round) {
      set_grad(*a, round);
      set_grad(*b, round);
      oa->step();
      oa->zero_grad();
      ob->step_and_zero_grad();
      for (int64_t i = 0; i < numel; ++i) {
        ASSERT_EQ(a->value[i], b->value[i]) << "round " << round << ", value " << i;
        ASSERT_EQ(b->grad[i], 0.0f) << "round " << round << ", grad " << i;
      }
    }
  }
}

// PyTorch 1.13: b = momentum * b + (1 - dampening) * g after the first step
// (b = g then); Nesterov steps along g + momentum * b.
TEST(SGD, DampeningAndNesterovFollowPyTorch) {
  for (const bool nesterov : {false, true}) {
    SCOPED_TRACE(nesterov ? "nesterov" : "dampening");
    const double momentum = 0.8, dampening = nesterov ? 0.0 : 0.3, lr = 0.05, wd = 1e-2;
    OneParameter p;
    p.set(kStart, kGrads[0]);
    SGD sgd(p.list(), lr, momentum, wd, dampening, nesterov);
    std::vector<double> value(kStart.begin(), kStart.end()), buffer(3, 0.0);
    for (size_t t = 0; t < kGrads.size(); ++t) {
      for (int i = 0; i < 3; ++i) p.param.grad[i] = kGrads[t][i];
      sgd.step();
      for (int i = 0; i < 3; ++i) {
        const double g = kGrads[t][i] + wd * value[i];
        buffer[i] = t == 0 ? g : momentum * buffer[i] + (1 - dampening) * g;
        value[i] -= lr * (nesterov ? g + momentum * buffer[i] : buffer[i]);
        EXPECT_NEAR(p.param.value[i], value[i], 1e-6) << "step " << t << " element " << i;
      }
    }
  }
}

// PyTorch's rule: Nesterov needs momentum and no dampening.
TEST(SGD, NesterovWithoutMomentumOrWithDampeningIsRefused) {
  OneParameter p;
  EXPECT_THROW(SGD(p.list(), 0.1, 0.0, 0.0, 0.0, true), Error);
  try {
    SGD(p.list(), 0.1, 0.9, 0.0, 0.1, true);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nesterov"), std::string::npos) << e.what();
  }
  EXPECT_THROW(SGD(p.list(), 0.1, 0.9, 0.0, 1.5), Error);
  EXPECT_NO_THROW(SGD(p.list(), 0.1, 0.9, 0.0, 0.0, true));
}

// AdamW: p *= 1 - lr * wd, then the Adam step on the raw gradient.
TEST(AdamW, DecaysTheWeightsApartFromTheMoments) {
  expect_adam_steps(true, 0.01, 0.85, 0.98, 1e-6, 0.1);
}

TEST(AdamW, DefaultWeightDecayIsPyTorchs) {
  OneParameter p;
  EXPECT_EQ(AdamW(p.list()).weight_decay, 0.01);
  EXPECT_EQ(Adam(p.list()).weight_decay, 0.0);
}

// clip_grad_norm_: the 2-norm over every gradient; scaled to max_norm (up to
// PyTorch's 1e-6) only when above it.
TEST(ClipGradNorm, ScalesTheGlobalNormDownToMaxNormOnly) {
  nn::Parameter a{Tensor({2}), Tensor({2})}, b{Tensor({1}), Tensor({1})};
  a.grad[0] = 3.0f;
  a.grad[1] = 0.0f;
  b.grad[0] = 4.0f;  // total norm 5
  const std::vector<std::pair<std::string, nn::Parameter*>> params{{"a", &a}, {"b", &b}};
  EXPECT_NEAR(clip_grad_norm_(params, 10.0), 5.0, 1e-12);
  EXPECT_EQ(a.grad[0], 3.0f);  // under the limit: untouched
  EXPECT_NEAR(clip_grad_norm_(params, 1.0), 5.0, 1e-12);
  const double coef = 1.0 / (5.0 + 1e-6);
  EXPECT_NEAR(a.grad[0], 3.0 * coef, 1e-7);
  EXPECT_NEAR(b.grad[0], 4.0 * coef, 1e-7);
  EXPECT_THROW(clip_grad_norm_(params, 0.0), Error);
  EXPECT_THROW(clip_grad_norm_(params, INFINITY), Error);
}

// Many chunks: the norm is summed chunk by chunk in a fixed order.
TEST(ClipGradNorm, LargeGradientsGiveTheFloat64Norm) {
  const int64_t numel = 50000;
  nn::Parameter param{Tensor({numel}), Tensor({numel})};
  double squares = 0.0;
  for (int64_t i = 0; i < numel; ++i) {
    param.grad[i] = static_cast<float>(i % 11) * 0.1f - 0.5f;
    squares += double(param.grad[i]) * double(param.grad[i]);
  }
  const double total = clip_grad_norm_({{"p", &param}}, 1.0);
  EXPECT_NEAR(total, std::sqrt(squares), 1e-9 * total);
  double after = 0.0;
  for (int64_t i = 0; i < numel; ++i) after += double(param.grad[i]) * double(param.grad[i]);
  EXPECT_NEAR(std::sqrt(after), 1.0, 1e-5);
}

TEST(Optimizer, InfiniteOrNanHyperparametersAreRefused) {
  OneParameter p;
  for (const double bad : {double(INFINITY), double(NAN)}) {
    EXPECT_THROW(SGD(p.list(), bad), Error);
    EXPECT_THROW(SGD(p.list(), 0.1, bad), Error);
    EXPECT_THROW(SGD(p.list(), 0.1, 0.9, bad), Error);
    EXPECT_THROW(Adam(p.list(), bad), Error);
    EXPECT_THROW(AdamW(p.list(), 0.1, 0.9, 0.999, bad), Error);
    EXPECT_THROW(AdamW(p.list(), 0.1, 0.9, 0.999, 1e-8, bad), Error);
  }
  try {
    SGD(p.list(), INFINITY);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lr must be a finite number >= 0, got inf"),
              std::string::npos)
        << e.what();
  }
}

TEST(Optimizer, InvalidHyperparametersAreNamed) {
  OneParameter p;
  EXPECT_THROW(SGD(p.list(), -1.0), Error);
  EXPECT_THROW(SGD(p.list(), 0.1, -0.5), Error);
  EXPECT_THROW(Adam(p.list(), 0.1, 1.0), Error);
  try {
    Adam(p.list(), 0.1, 0.9, 0.999, 1e-8, -1.0);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("weight_decay"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace bnlab::optim
