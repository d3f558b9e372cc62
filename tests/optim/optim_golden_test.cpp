// bnlab against PyTorch 1.13: the optimizer variants, clip_grad_norm_,
// CrossEntropyLoss(label_smoothing) and the learning-rate schedules, on the
// values tests/golden/make_optim_goldens.py wrote (run by hand; format there).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "bnlab/nn/loss.hpp"
#include "bnlab/optim/lr_schedule.hpp"
#include "bnlab/optim/optimizer.hpp"

namespace bnlab::optim {
namespace {

using nlohmann::json;

json load(const std::string& name) {
  const std::string path = std::string(BNLAB_GOLDEN_DIR) + "/optim/" + name + ".json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return json::parse(in);
}

std::unique_ptr<Optimizer> make(const json& s,
                                std::vector<std::pair<std::string, nn::Parameter*>> params) {
  const std::string name = s.at("name");
  const double lr = s.at("lr"), wd = s.at("weight_decay");
  if (name == "sgd")
    return std::make_unique<SGD>(params, lr, s.at("momentum").get<double>(), wd,
                                 s.at("dampening").get<double>(), s.at("nesterov").get<bool>());
  const double b1 = s.at("betas")[0], b2 = s.at("betas")[1], eps = s.at("eps");
  if (name == "adam") return std::make_unique<Adam>(params, lr, b1, b2, eps, wd);
  return std::make_unique<AdamW>(params, lr, b1, b2, eps, wd);
}

void copy_into(Tensor& t, const json& values) {
  const auto v = values.get<std::vector<float>>();
  ASSERT_EQ(int64_t(v.size()), t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = v[size_t(i)];
}

// Five steps on two parameters with the golden's gradients; every value after
// every step within 1e-5 relative of PyTorch's (float32 on both sides).
TEST(OptimizerGolden, EveryVariantMatchesPyTorchStepByStep) {
  const json cases = load("optimizers");
  ASSERT_GE(cases.size(), 7u);
  for (const auto& [name, c] : cases.items()) {
    SCOPED_TRACE(name);
    std::vector<std::unique_ptr<nn::Parameter>> owned;
    std::vector<std::pair<std::string, nn::Parameter*>> params;
    for (size_t i = 0; i < c.at("shapes").size(); ++i) {
      const Shape shape = c.at("shapes")[i].get<Shape>();
      owned.push_back(std::make_unique<nn::Parameter>(nn::Parameter{Tensor(shape), Tensor(shape)}));
      copy_into(owned.back()->value, c.at("initial")[i]);
      params.emplace_back(std::to_string(i), owned.back().get());
    }
    const std::unique_ptr<Optimizer> optimizer = make(c.at("optimizer"), params);
    const bool clip = !c.at("clip").is_null();
    for (size_t step = 0; step < c.at("grads").size(); ++step) {
      for (size_t i = 0; i < owned.size(); ++i) copy_into(owned[i]->grad, c.at("grads")[step][i]);
      if (clip) {
        const double total = clip_grad_norm_(params, c.at("clip").get<double>());
        EXPECT_NEAR(total, c.at("norms")[step].get<double>(), 1e-5 * total) << "step " << step;
      }
      optimizer->step();
      for (size_t i = 0; i < owned.size(); ++i) {
        const auto expected = c.at("values")[step][i].get<std::vector<double>>();
        for (size_t j = 0; j < expected.size(); ++j)
          ASSERT_NEAR(owned[i]->value[int64_t(j)], expected[j],
                      1e-5 * (1.0 + std::fabs(expected[j])))
              << "step " << step << ", parameter " << i << ", value " << j;
      }
    }
  }
}

TEST(LabelSmoothingGolden, LossAndGradientMatchPyTorch) {
  const json cases = load("label_smoothing");
  for (const auto& [name, c] : cases.items()) {
    SCOPED_TRACE(name);
    const Shape shape = c.at("shape").get<Shape>();
    Tensor logits(shape);
    copy_into(logits, c.at("logits"));
    const auto labels = c.at("labels").get<std::vector<int32_t>>();
    nn::CrossEntropyLoss loss(c.at("label_smoothing").get<double>());
    const double expected = c.at("loss");
    EXPECT_NEAR(loss.forward(logits, labels.data()), expected, 1e-6 * (1.0 + expected));
    const Tensor& grad = loss.backward();
    const auto expected_grad = c.at("grad").get<std::vector<double>>();
    for (size_t i = 0; i < expected_grad.size(); ++i)
      EXPECT_NEAR(grad[int64_t(i)], expected_grad[i], 1e-7) << i;
  }
}

// The lr at every step equals PyTorch's schedulers' (in double on both sides).
TEST(LrScheduleGolden, EveryScheduleMatchesPyTorchEpochByEpoch) {
  const json cases = load("schedules");
  ASSERT_GE(cases.size(), 9u);
  for (const auto& [name, c] : cases.items()) {
    SCOPED_TRACE(name);
    const int64_t epochs = c.at("epochs"), steps = c.at("steps_per_epoch");
    const LrSchedule schedule(c.at("schedule").get<std::string>(), c.at("lr").get<double>(), epochs,
                              c.at("warmup_epochs").get<int64_t>());
    const auto lrs = c.at("lrs").get<std::vector<double>>();
    ASSERT_EQ(int64_t(lrs.size()), epochs * steps);
    for (int64_t e = 0; e < epochs; ++e)
      for (int64_t s = 0; s < steps; ++s)
        EXPECT_NEAR(schedule.lr(e, s, steps), lrs[size_t(e * steps + s)],
                    1e-12 * lrs[size_t(e * steps + s)] + 1e-15)
            << "epoch " << e << ", step " << s;
  }
}

}  // namespace
}  // namespace bnlab::optim
