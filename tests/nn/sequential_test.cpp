#include <gtest/gtest.h>

#include <memory>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/nn/loss.hpp"
#include "grad_check.hpp"

namespace bnlab::nn {
namespace {

using test::check_gradients;
using test::GradCheckOptions;
using test::random_tensor;

// Flatten, Linear(12, 6, bias=False), BatchNorm1d(6), ReLU, Linear(6, 3).
Sequential small_mlp(uint64_t seed) {
  Generator gen(seed);
  Sequential net;
  net.add(std::make_unique<Flatten>());
  net.add(std::make_unique<Linear>(12, 6, false, gen));
  net.add(std::make_unique<BatchNorm>(1, 6));
  net.add(std::make_unique<ReLU>());
  net.add(std::make_unique<Linear>(6, 3, true, gen));
  return net;
}

TEST(Sequential, ReprMatchesPyTorch) {
  Sequential net = small_mlp(1);
  EXPECT_EQ(net.repr(),
            "Sequential(\n"
            "  (0): Flatten(start_dim=1, end_dim=-1)\n"
            "  (1): Linear(in_features=12, out_features=6, bias=False)\n"
            "  (2): BatchNorm1d(6, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
            "  (3): ReLU()\n"
            "  (4): Linear(in_features=6, out_features=3, bias=True)\n"
            ")");
  EXPECT_EQ(Sequential().repr(), "Sequential()");
  auto inner = std::make_unique<Sequential>();
  inner->add(std::make_unique<ReLU>());
  Sequential outer;
  outer.add(std::move(inner));
  EXPECT_EQ(outer.repr(),
            "Sequential(\n"
            "  (0): Sequential(\n"
            "    (0): ReLU()\n"
            "  )\n"
            ")");
}

TEST(Sequential, StateDictNamesAreIndexDotName) {
  Sequential net = small_mlp(2);
  std::vector<std::string> names;
  for (auto& [name, param] : net.parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"1.weight", "2.weight", "2.bias", "4.weight", "4.bias"}));
  std::vector<std::string> buffers;
  for (auto& buffer : net.buffers()) buffers.push_back(buffer.name);
  EXPECT_EQ(buffers, (std::vector<std::string>{"2.running_mean", "2.running_var", "2.num_batches_tracked"}));
}

TEST(Sequential, OutputShapeNamesTheFailingChild) {
  Generator gen(0);
  Sequential net;
  net.add(std::make_unique<Linear>(784, 10, true, gen));
  net.add(std::make_unique<BatchNorm>(1, 11));
  try {
    net.output_shape({64, 784});
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("layer 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("BatchNorm1d(11"), std::string::npos) << msg;
  }
}

TEST(Sequential, TrainAndEvalReachEveryChild) {
  Sequential net = small_mlp(3);
  net.eval();
  EXPECT_FALSE(net[2].is_training());
  net.train();
  EXPECT_TRUE(net[2].is_training());
}

TEST(Sequential, GradientsThroughTheWholeNetwork) {
  Sequential net = small_mlp(4);
  GradCheckOptions o;
  o.h = 1e-3;
  o.atol = 3e-3;
  check_gradients(net, random_tensor({5, 3, 2, 2}, 5), 6, o);
}

TEST(Sequential, FusedBatchNormReluGivesTheSameOutputsAndGradients) {
  Sequential plain = small_mlp(7);
  Sequential fused = small_mlp(7);
  fused.fuse_batch_norm_relu();
  EXPECT_TRUE(dynamic_cast<BatchNorm&>(fused[2]).fuse_relu);
  EXPECT_TRUE(dynamic_cast<ReLU&>(fused[3]).fused);
  const Tensor x = random_tensor({8, 3, 2, 2}, 8);
  const std::vector<int32_t> labels{0, 1, 2, 0, 1, 2, 0, 1};
  for (bool training : {true, false}) {
    plain.train(training);
    fused.train(training);
    plain.zero_grad();
    fused.zero_grad();
    CrossEntropyLoss loss_plain, loss_fused;
    const double lp = loss_plain.forward(plain.forward(x), labels.data());
    const double lf = loss_fused.forward(fused.forward(x), labels.data());
    EXPECT_NEAR(lp, lf, 1e-6);
    const Tensor dx_plain = plain.backward(loss_plain.backward());
    const Tensor& dx_fused = fused.backward(loss_fused.backward());
    for (int64_t i = 0; i < x.numel(); ++i) EXPECT_NEAR(dx_plain[i], dx_fused[i], 1e-6);
    auto pp = plain.parameters();
    auto pf = fused.parameters();
    for (size_t k = 0; k < pp.size(); ++k)
      for (int64_t i = 0; i < pp[k].second->grad.numel(); ++i)
        EXPECT_NEAR(pp[k].second->grad[i], pf[k].second->grad[i], 1e-6) << pp[k].first;
  }
  fused.fuse_batch_norm_relu(false);
  EXPECT_FALSE(dynamic_cast<BatchNorm&>(fused[2]).fuse_relu);
  EXPECT_FALSE(dynamic_cast<ReLU&>(fused[3]).fused);
}

// Without the input gradient, the parameter grads are the same and nothing
// before the first learnable child runs its backward.
TEST(Sequential, SkippingTheInputGradientKeepsParameterGrads) {
  for (const bool conv_first : {false, true}) {
    auto build = [&] {
      if (!conv_first) return small_mlp(12);
      Generator gen(12);
      Sequential net;
      net.add(std::make_unique<Conv2d>(3, 2, 3, 1, 1, true, gen));
      net.add(std::make_unique<BatchNorm>(2, 2));
      net.add(std::make_unique<ReLU>());
      net.add(std::make_unique<Flatten>());
      net.add(std::make_unique<Linear>(8, 3, true, gen));
      return net;
    };
    Sequential full = build(), skipped = build();
    skipped.compute_grad_input = false;
    const Tensor x = random_tensor({4, 3, 2, 2}, 13);
    const Tensor dy = random_tensor({4, 3}, 14);
    full.forward(x);
    const Tensor& dx_full = full.backward(dy);
    EXPECT_EQ(dx_full.shape(), x.shape());
    skipped.forward(x);
    const Tensor& dx_skipped = skipped.backward(dy);
    EXPECT_EQ(dx_skipped.numel(), 0);
    auto pf = full.parameters();
    auto ps = skipped.parameters();
    ASSERT_EQ(pf.size(), ps.size());
    for (size_t k = 0; k < pf.size(); ++k)
      for (int64_t i = 0; i < pf[k].second->grad.numel(); ++i)
        EXPECT_EQ(pf[k].second->grad[i], ps[k].second->grad[i]) << pf[k].first;
    // The child's own flag is back to its default after the call.
    EXPECT_TRUE(conv_first ? dynamic_cast<Conv2d&>(skipped[0]).compute_grad_input
                           : dynamic_cast<Linear&>(skipped[1]).compute_grad_input);
  }
}

TEST(Sequential, BatchNormFirstSkipsItsInputGradient) {
  Sequential net;
  net.add(std::make_unique<BatchNorm>(1, 3));
  net.compute_grad_input = false;
  const Tensor x = random_tensor({4, 3}, 15);  // modules keep a pointer to their input
  net.forward(x);
  EXPECT_EQ(net.backward(random_tensor({4, 3}, 16)).numel(), 0);
  EXPECT_NE(dynamic_cast<BatchNorm&>(net[0]).bias.grad[0], 0.0f);
}

TEST(Sequential, ZeroGradClearsEveryParameter) {
  Sequential net = small_mlp(9);
  const Tensor x = random_tensor({4, 3, 2, 2}, 10);
  net.forward(x);
  net.backward(random_tensor({4, 3}, 11));
  net.zero_grad();
  for (auto& [name, param] : net.parameters())
    for (int64_t i = 0; i < param->grad.numel(); ++i) EXPECT_EQ(param->grad[i], 0.0f) << name;
}

// A layer Sequential has never heard of: y = x * scale per feature, with the
// gradient-input switch it honours. Only Module's virtuals describe it.
class Scale : public Module {
 public:
  explicit Scale(int64_t features) {
    scale.value = Tensor({features}, 2.0f);
    scale.grad = Tensor({features}, 0.0f);
  }
  const Tensor& forward(const Tensor& input) override {
    input_ = &input;
    output_.resize(input.shape());
    const int64_t features = scale.value.numel();
    for (int64_t i = 0; i < input.numel(); ++i) output_[i] = input[i] * scale.value[i % features];
    return output_;
  }
  const Tensor& backward(const Tensor& grad_output) override {
    const int64_t features = scale.value.numel();
    for (int64_t i = 0; i < grad_output.numel(); ++i)
      scale.grad[i % features] += grad_output[i] * (*input_)[i];
    ++backward_calls;
    if (!compute_grad_input) {
      grad_input_.resize({0});
      return grad_input_;
    }
    grad_input_.resize(grad_output.shape());
    for (int64_t i = 0; i < grad_output.numel(); ++i)
      grad_input_[i] = grad_output[i] * scale.value[i % features];
    return grad_input_;
  }
  std::string repr() const override { return "Scale()"; }
  Shape output_shape(const Shape& input) const override { return input; }
  std::vector<std::pair<std::string, Parameter*>> parameters() override {
    return {{"scale", &scale}};
  }

  Parameter scale;
  int backward_calls = 0;

 private:
  const Tensor* input_ = nullptr;
  Tensor output_, grad_input_;
};

TEST(Sequential, ANewLayerNeedsNoChangeInSequential) {
  Sequential net;
  net.add(std::make_unique<ReLU>());
  net.add(std::make_unique<Scale>(3));
  net.add(std::make_unique<ReLU>());
  auto& scale = dynamic_cast<Scale&>(net[1]);  // the test's own type, not Sequential's
  // Its parameters get Sequential's names, and has_parameters' default finds them.
  ASSERT_EQ(net.parameters().size(), 1u);
  EXPECT_EQ(net.parameters()[0].first, "1.scale");
  EXPECT_TRUE(net.has_parameters());
  EXPECT_EQ(net.output_shape({4, 3}), (Shape{4, 3}));
  // As the first learnable child it gets no input gradient to compute.
  net.compute_grad_input = false;
  const Tensor x = random_tensor({4, 3}, 17);
  net.forward(x);
  EXPECT_EQ(net.backward(random_tensor({4, 3}, 18)).numel(), 0);
  EXPECT_EQ(scale.backward_calls, 1);
  EXPECT_TRUE(scale.compute_grad_input);  // restored after the call
  EXPECT_NE(scale.scale.grad[0] + scale.scale.grad[1] + scale.scale.grad[2], 0.0f);
  // The whole network's gradients match central differences with it inside.
  net.compute_grad_input = true;
  Tensor away = random_tensor({4, 3}, 19);  // no input within 0.1 of ReLU's kink
  for (int64_t i = 0; i < away.numel(); ++i) away[i] += away[i] >= 0 ? 0.1f : -0.1f;
  check_gradients(net, away, 20);
}

}  // namespace
}  // namespace bnlab::nn
