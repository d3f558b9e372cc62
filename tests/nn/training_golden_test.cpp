// bnlab against PyTorch 1.13 on the same training run: the same network, the
// same initial weights, the same batches, K = 5 steps of SGD (momentum 0.9,
// weight decay 1e-4) or Adam. The goldens come from
// tests/golden/make_training_goldens.py (run by hand; format documented there).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "bnlab/nn/layers.hpp"
#include "bnlab/nn/loss.hpp"
#include "bnlab/optim/optimizer.hpp"

namespace bnlab::nn {
namespace {

using nlohmann::json;

json load_case(const std::string& name) {
  const std::string path = std::string(BNLAB_GOLDEN_DIR) + "/training/" + name + ".json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return json::parse(in);
}

// The networks of make_training_goldens.py, built module by module.
Sequential build(const std::string& family) {
  Generator gen(0);  // initial weights are overwritten from the golden
  Sequential net;
  if (family == "mlp") {
    net.add(std::make_unique<Flatten>());
    net.add(std::make_unique<Linear>(20, 16, false, gen));
    net.add(std::make_unique<BatchNorm>(1, 16));
    net.add(std::make_unique<ReLU>());
    net.add(std::make_unique<Linear>(16, 12, false, gen));
    net.add(std::make_unique<BatchNorm>(1, 12, 1e-5, std::nullopt));
    net.add(std::make_unique<ReLU>());
    net.add(std::make_unique<Linear>(12, 5, true, gen));
  } else if (family == "variants") {
    net.add(std::make_unique<Flatten>());
    net.add(std::make_unique<Linear>(20, 16, true, gen));
    net.add(std::make_unique<LeakyReLU>(0.1));
    net.add(std::make_unique<BatchNorm>(1, 16, 1e-5, 0.1, false));
    net.add(std::make_unique<Linear>(16, 12, true, gen));
    net.add(std::make_unique<Tanh>());
    net.add(std::make_unique<BatchNorm>(1, 12, 1e-3, 0.1, true, false));
    net.add(std::make_unique<Linear>(12, 8, true, gen));
    net.add(std::make_unique<Sigmoid>());
    net.add(std::make_unique<Linear>(8, 5, true, gen));
  } else {
    net.add(std::make_unique<Conv2d>(1, 4, 3, 1, 1, false, gen));
    net.add(std::make_unique<BatchNorm>(2, 4));
    net.add(std::make_unique<ReLU>());
    net.add(std::make_unique<MaxPool2d>(2));
    net.add(std::make_unique<Conv2d>(4, 6, 3, 2, 1, true, gen));
    net.add(std::make_unique<ReLU>());
    net.add(std::make_unique<BatchNorm>(2, 6, 1e-5, 0.3));
    net.add(std::make_unique<Flatten>());
    net.add(std::make_unique<Linear>(24, 5, true, gen));
  }
  return net;
}

Shape shape_of(const json& entry) { return entry.at("shape").get<Shape>(); }

void load_state(Sequential& net, const json& state) {
  size_t used = 0;
  for (auto& [name, param] : net.parameters()) {
    const json& entry = state.at(name);
    ASSERT_EQ(shape_of(entry), param->value.shape()) << name;
    const auto values = entry.at("values").get<std::vector<float>>();
    for (size_t i = 0; i < values.size(); ++i) param->value[static_cast<int64_t>(i)] = values[i];
    ++used;
  }
  for (Buffer& buffer : net.buffers()) {
    const json& entry = state.at(buffer.name);
    if (buffer.counter) {
      *buffer.counter = entry.at("values")[0].get<int64_t>();
    } else {
      ASSERT_EQ(shape_of(entry), buffer.tensor->shape()) << buffer.name;
      const auto values = entry.at("values").get<std::vector<float>>();
      for (size_t i = 0; i < values.size(); ++i) (*buffer.tensor)[static_cast<int64_t>(i)] = values[i];
    }
    ++used;
  }
  EXPECT_EQ(used, state.size()) << "state dict entries bnlab does not have";
}

// |bnlab - torch| <= 1e-4 + 1e-4 * |torch| for every value of every entry.
void expect_state_near(Sequential& net, const json& state) {
  for (auto& [name, param] : net.parameters()) {
    const auto expected = state.at(name).at("values").get<std::vector<double>>();
    for (size_t i = 0; i < expected.size(); ++i)
      EXPECT_NEAR(param->value[static_cast<int64_t>(i)], expected[i], 1e-4 + 1e-4 * std::abs(expected[i]))
          << name << "[" << i << "]";
  }
  for (Buffer& buffer : net.buffers()) {
    const json& values = state.at(buffer.name).at("values");
    if (buffer.counter) {
      EXPECT_EQ(*buffer.counter, values[0].get<int64_t>()) << buffer.name;
      continue;
    }
    const auto expected = values.get<std::vector<double>>();
    for (size_t i = 0; i < expected.size(); ++i)
      EXPECT_NEAR((*buffer.tensor)[static_cast<int64_t>(i)], expected[i], 1e-4 + 1e-4 * std::abs(expected[i]))
          << buffer.name << "[" << i << "]";
  }
}

struct GoldenCase {
  std::string name;
  bool fuse;
};

class TrainingGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(TrainingGolden, LossesParametersAndRunningStatsMatchPyTorch) {
  const GoldenCase& c = GetParam();
  const json golden = load_case(c.name);
  Sequential net = build(c.name.substr(0, c.name.find('_')));
  EXPECT_EQ(net.repr(), golden.at("repr").get<std::string>());
  load_state(net, golden.at("initial"));
  if (c.fuse) net.fuse_batch_norm_relu();

  const json& opt = golden.at("optimizer");
  std::unique_ptr<optim::Optimizer> optimizer;
  if (opt.at("name") == "sgd") {
    optimizer = std::make_unique<optim::SGD>(net.parameters(), opt.at("lr").get<double>(),
                                             opt.at("momentum").get<double>(),
                                             opt.at("weight_decay").get<double>());
  } else {
    optimizer = std::make_unique<optim::Adam>(
        net.parameters(), opt.at("lr").get<double>(), opt.at("betas")[0].get<double>(),
        opt.at("betas")[1].get<double>(), opt.at("eps").get<double>(),
        opt.at("weight_decay").get<double>());
  }

  const Shape input_shape = golden.at("input_shape").get<Shape>();
  const auto expected_losses = golden.at("losses").get<std::vector<double>>();
  const json& batches = golden.at("batches");
  ASSERT_EQ(batches.size(), expected_losses.size());
  CrossEntropyLoss loss;
  Tensor input(input_shape);
  std::vector<int32_t> labels;
  auto load_batch = [&](const json& batch) {
    const auto values = batch.at("inputs").get<std::vector<float>>();
    ASSERT_EQ(static_cast<int64_t>(values.size()), input.numel());
    for (size_t i = 0; i < values.size(); ++i) input[static_cast<int64_t>(i)] = values[i];
    labels = batch.at("labels").get<std::vector<int32_t>>();
  };
  for (size_t step = 0; step < batches.size(); ++step) {
    load_batch(batches[step]);
    optimizer->zero_grad();
    const double value = loss.forward(net.forward(input), labels.data());
    net.backward(loss.backward());
    optimizer->step();
    EXPECT_NEAR(value, expected_losses[step], 1e-4 * std::abs(expected_losses[step]))
        << "step " << step;
  }
  expect_state_near(net, golden.at("final"));

  net.eval();
  load_batch(batches[0]);
  const double eval_loss = loss.forward(net.forward(input), labels.data());
  const double expected_eval = golden.at("eval_loss").get<double>();
  EXPECT_NEAR(eval_loss, expected_eval, 1e-4 * std::abs(expected_eval));
}

INSTANTIATE_TEST_SUITE_P(PyTorch, TrainingGolden,
                         ::testing::Values(GoldenCase{"mlp_sgd", false}, GoldenCase{"mlp_sgd", true},
                                           GoldenCase{"mlp_adam", false}, GoldenCase{"mlp_adam", true},
                                           GoldenCase{"cnn_sgd", false}, GoldenCase{"cnn_sgd", true},
                                           GoldenCase{"cnn_adam", false}, GoldenCase{"cnn_adam", true},
                                           GoldenCase{"variants_sgd", false},
                                           GoldenCase{"variants_adam", false}),
                         [](const ::testing::TestParamInfo<GoldenCase>& info) {
                           return info.param.name + (info.param.fuse ? "_fused" : "_plain");
                         });

}  // namespace
}  // namespace bnlab::nn
