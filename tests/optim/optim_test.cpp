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

TEST(Adam, StepsFollowPyTorch) {
  OneParameter p;
  p.set(kStart, kGrads[0]);
  const double lr = 0.01, b1 = 0.8, b2 = 0.99, eps = 1e-6, wd = 0.1;
  Adam adam(p.list(), lr, b1, b2, eps, wd);
  std::vector<double> value(kStart.begin(), kStart.end()), m(3, 0.0), v(3, 0.0);
  for (size_t t = 0; t < kGrads.size(); ++t) {
    for (int i = 0; i < 3; ++i) p.param.grad[i] = kGrads[t][i];
    adam.step();
    const double step = static_cast<double>(t + 1);
    for (int i = 0; i < 3; ++i) {
      const double g = kGrads[t][i] + wd * value[i];
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      const double m_hat = m[i] / (1 - std::pow(b1, step));
      const double v_hat = v[i] / (1 - std::pow(b2, step));
      value[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
      EXPECT_NEAR(p.param.value[i], value[i], 1e-6) << "step " << t << " element " << i;
    }
  }
}

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
  for (int rule = 0; rule < 3; ++rule) {
    SCOPED_TRACE("rule " + std::to_string(rule));
    auto a = make(), b = make();
    const auto optimizer = [&](nn::Parameter& p) -> std::unique_ptr<Optimizer> {
      if (rule == 0) return std::make_unique<SGD>(std::vector<std::pair<std::string, nn::Parameter*>>{{"p", &p}}, 0.1);
      if (rule == 1) return std::make_unique<SGD>(std::vector<std::pair<std::string, nn::Parameter*>>{{"p", &p}}, 0.1, 0.9, 0.01);
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
