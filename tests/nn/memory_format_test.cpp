// nChw16c chains inside Sequential (MemoryFormat in bnlab/nn/module.hpp): the
// plan, each module against its plain self, and whole networks against the
// same modules run one by one on plain tensors.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/nn/loss.hpp"
#include "grad_check.hpp"

namespace bnlab::nn {
namespace {

using test::from_blocked;
using test::random_tensor;
using test::to_blocked;


// max |a - b| <= atol + rtol * max |b|, with the first offender in the message.
void expect_close(const std::string& what, const Tensor& a, const Tensor& b, double rtol,
                  double atol = 1e-6) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  double scale = 0.0;
  for (int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::fabs(double(b[i])));
  for (int64_t i = 0; i < a.numel(); ++i)
    ASSERT_LE(std::fabs(double(a[i]) - b[i]), atol + rtol * scale)
        << what << "[" << i << "]: " << a[i] << " against " << b[i];
}

TEST(Nchw16c, CopiesArePermutationsAndInverse) {
  const Tensor x = random_tensor({2, 32, 3, 5}, 1);
  const Tensor b = to_blocked(x);
  // Element (i, j, h, w) of x at ((i*2 + j/16)*15 + h*5 + w)*16 + j%16.
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 32; ++j)
      for (int64_t k = 0; k < 15; ++k)
        ASSERT_EQ(b[((i * 2 + j / 16) * 15 + k) * 16 + j % 16], x[(i * 32 + j) * 15 + k]);
  const Tensor back = from_blocked(b);
  for (int64_t e = 0; e < x.numel(); ++e) ASSERT_EQ(back[e], x[e]);
}

TEST(Nchw16c, ModulesSayWhatTheyTake) {
  Generator gen(1);
  const Shape s16{2, 16, 4, 4}, s3{2, 3, 4, 4};
  EXPECT_EQ(BatchNorm(2, 16).blocked16_use(s16), Blocked16Use::keeps);
  EXPECT_EQ(BatchNorm(2, 3).blocked16_use(s3), Blocked16Use::no);
  EXPECT_EQ(ReLU().blocked16_use(s16), Blocked16Use::keeps);
  EXPECT_EQ(Sigmoid().blocked16_use(s3), Blocked16Use::no);
  EXPECT_EQ(MaxPool2d(2).blocked16_use(s16), Blocked16Use::keeps);
  EXPECT_EQ(Flatten().blocked16_use(s16), Blocked16Use::ends);
  EXPECT_EQ(Flatten().blocked16_use(Shape{2, 16}), Blocked16Use::no);
  EXPECT_EQ(Dropout(0.5, gen).blocked16_use(s16), Blocked16Use::no);  // its mask follows memory order
  Conv2d from3(3, 16, 3, 1, 1, false, gen), from16(16, 8, 3, 1, 1, false, gen);
  EXPECT_EQ(from3.blocked16_use(s3), Blocked16Use::no);
  EXPECT_TRUE(from3.can_output_blocked16(s3));
  EXPECT_EQ(from16.blocked16_use(s16), Blocked16Use::ends);
  EXPECT_FALSE(from16.can_output_blocked16(s16));
  EXPECT_EQ(Linear(4, 4, false, gen).blocked16_use(s16), Blocked16Use::no);
}

TEST(Nchw16c, ModulesRefuseFormatsTheyCannotHold) {
  Generator gen(2);
  const Tensor x3 = random_tensor({2, 3, 4, 4}, 3), x16 = random_tensor({2, 16, 4, 4}, 4);
  BatchNorm bn3(2, 3), bn16(2, 16);
  EXPECT_THROW(bn3.forward_formatted(x3, MemoryFormat::blocked16, MemoryFormat::blocked16), Error);
  EXPECT_THROW(bn16.forward_formatted(x16, MemoryFormat::blocked16, MemoryFormat::plain), Error);
  EXPECT_THROW(ReLU().forward_formatted(x3, MemoryFormat::blocked16, MemoryFormat::blocked16), Error);
  EXPECT_THROW(Flatten().forward_formatted(x16, MemoryFormat::plain, MemoryFormat::blocked16), Error);
  Conv2d conv(3, 8, 3, 1, 1, false, gen);
  EXPECT_THROW(conv.forward_formatted(x3, MemoryFormat::blocked16, MemoryFormat::plain), Error);
  EXPECT_THROW(conv.forward_formatted(x3, MemoryFormat::plain, MemoryFormat::blocked16), Error);
  Linear linear(4, 4, false, gen);
  EXPECT_THROW(linear.forward_formatted(x16, MemoryFormat::blocked16, MemoryFormat::plain), Error);
}

// A module run on nChw16c against the same module run on plain tensors:
// outputs, input gradients and parameter gradients.
void expect_same_in_both_formats(Module& plain, Module& formatted, const Tensor& x,
                                 MemoryFormat in, MemoryFormat out, double rtol,
                                 double atol = 1e-6) {
  const Tensor& y = plain.forward(x);
  const Tensor xin = in == MemoryFormat::blocked16 ? to_blocked(x) : x;
  const Tensor y2 = formatted.forward_formatted(xin, in, out);
  expect_close("y", out == MemoryFormat::blocked16 ? from_blocked(y2) : y2, y, rtol, atol);
  const Tensor dy = random_tensor(y.shape(), 99);
  const Tensor dx = plain.backward(dy);
  const Tensor dx2 = formatted.backward(out == MemoryFormat::blocked16 ? to_blocked(dy) : dy);
  expect_close("dx", in == MemoryFormat::blocked16 ? from_blocked(dx2) : dx2, dx, rtol, atol);
  auto p1 = plain.parameters(), p2 = formatted.parameters();
  ASSERT_EQ(p1.size(), p2.size());
  for (size_t k = 0; k < p1.size(); ++k)
    expect_close(p1[k].first, p2[k].second->grad, p1[k].second->grad, rtol, atol);
}

TEST(Nchw16c, BatchNorm2dTrainAndEvalWithFusedRelu) {
  for (bool training : {true, false})
    for (bool relu : {false, true}) {
      SCOPED_TRACE(std::string(training ? "train" : "eval") + (relu ? " relu" : ""));
      BatchNorm a(2, 32), b(2, 32);
      a.fuse_relu = b.fuse_relu = relu;
      for (BatchNorm* m : {&a, &b}) {
        for (int64_t j = 0; j < 32; ++j) {
          m->weight.value[j] = 0.5f + 0.03f * j;
          m->bias.value[j] = 0.1f * (j % 5) - 0.2f;
          m->running_mean[j] = 0.05f * j;
          m->running_var[j] = 1.0f + 0.1f * j;
        }
        m->train(training);
      }
      const Tensor x = random_tensor({3, 32, 5, 7}, 5, 2.0f, 0.5f);
      expect_same_in_both_formats(a, b, x, MemoryFormat::blocked16, MemoryFormat::blocked16, 1e-5);
      expect_close("running_mean", b.running_mean, a.running_mean, 1e-6);
      expect_close("running_var", b.running_var, a.running_var, 1e-6);
    }
}

TEST(Nchw16c, Conv2dInEveryCombinationOfFormats) {
  for (MemoryFormat in : {MemoryFormat::plain, MemoryFormat::blocked16})
    for (MemoryFormat out : {MemoryFormat::plain, MemoryFormat::blocked16}) {
      SCOPED_TRACE(std::to_string(int(in)) + " -> " + std::to_string(int(out)));
      Generator g1(7), g2(7);
      Conv2d a(16, 32, 3, 1, 1, true, g1), b(16, 32, 3, 1, 1, true, g2);
      expect_same_in_both_formats(a, b, random_tensor({2, 16, 6, 6}, 8), in, out, 1e-4);
    }
}

TEST(Nchw16c, FlattenPutsValuesBackInNchwOrder) {
  Flatten a, b;
  expect_same_in_both_formats(a, b, random_tensor({3, 16, 2, 3}, 9), MemoryFormat::blocked16,
                              MemoryFormat::plain, 0.0, 0.0);
}

// Conv(1, 16) BN ReLU MaxPool Conv(16, 32) BN ReLU MaxPool Flatten Linear: two
// chains, the second started by the Conv2d that ends the first.
std::unique_ptr<Sequential> small_cnn(uint64_t seed, bool fuse) {
  Generator gen(seed);
  auto net = std::make_unique<Sequential>();
  net->add(std::make_unique<Conv2d>(1, 16, 3, 1, 1, false, gen));
  net->add(std::make_unique<BatchNorm>(2, 16));
  net->add(std::make_unique<ReLU>());
  net->add(std::make_unique<MaxPool2d>(2));
  net->add(std::make_unique<Conv2d>(16, 32, 3, 1, 1, false, gen));
  net->add(std::make_unique<BatchNorm>(2, 32));
  net->add(std::make_unique<ReLU>());
  net->add(std::make_unique<MaxPool2d>(2));
  net->add(std::make_unique<Flatten>());
  net->add(std::make_unique<Linear>(32 * 2 * 2, 5, true, gen));
  if (fuse) net->fuse_batch_norm_relu();
  return net;
}

TEST(Nchw16c, SequentialPlansTwoChains) {
  auto net = small_cnn(10, true);
  net->forward(random_tensor({2, 1, 8, 8}, 10));
  const MemoryFormat c = MemoryFormat::blocked16, p = MemoryFormat::plain;
  EXPECT_EQ(net->output_formats(), (std::vector<MemoryFormat>{c, c, c, c, c, c, c, c, p, p}));
  net->children().pop_back();  // ends at Flatten: the second chain still ends there
  net->children().pop_back();  // ends at MaxPool2d: nothing ends the second chain
  net->forward(random_tensor({2, 1, 8, 8}, 10));
  EXPECT_EQ(net->output_formats(), (std::vector<MemoryFormat>{c, c, c, c, p, p, p, p}));
}

TEST(Nchw16c, SequentialChainsMatchTheModulesRunOneByOnePlain) {
  for (bool fuse : {false, true})
    for (bool training : {true, false}) {
      SCOPED_TRACE(std::string(fuse ? "fused " : "") + (training ? "train" : "eval"));
      auto chained = small_cnn(11, fuse), plain = small_cnn(11, fuse);
      chained->train(training);
      plain->train(training);
      const Tensor x = random_tensor({4, 1, 8, 8}, 12);
      const Tensor y = chained->forward(x);
      const Tensor* y2 = &x;
      for (size_t i = 0; i < plain->size(); ++i) y2 = &(*plain)[i].forward(*y2);
      expect_close("logits", y, *y2, 1e-5);
      const Tensor dy = random_tensor(y.shape(), 13);
      const Tensor dx = chained->backward(dy);
      const Tensor* dx2 = &dy;
      for (size_t i = plain->size(); i-- > 0;) dx2 = &(*plain)[i].backward(*dx2);
      expect_close("dx", dx, *dx2, 1e-5);
      auto p1 = chained->parameters(), p2 = plain->parameters();
      for (size_t k = 0; k < p1.size(); ++k)
        expect_close(p1[k].first, p1[k].second->grad, p2[k].second->grad, 1e-4);
    }
}

// Smooth (Tanh, no pooling) so that central differences hold: Conv(1, 16) BN
// Tanh Conv(16, 16) BN Tanh Flatten Linear, two chains.
TEST(Nchw16c, SequentialGradientsMatchFiniteDifferences) {
  Generator gen(21);
  Sequential net;
  net.add(std::make_unique<Conv2d>(1, 16, 3, 1, 1, false, gen));
  net.add(std::make_unique<BatchNorm>(2, 16));
  net.add(std::make_unique<Tanh>());
  net.add(std::make_unique<Conv2d>(16, 16, 3, 1, 1, false, gen));
  net.add(std::make_unique<BatchNorm>(2, 16));
  net.add(std::make_unique<Tanh>());
  net.add(std::make_unique<Flatten>());
  net.add(std::make_unique<Linear>(16 * 4 * 4, 3, true, gen));
  test::GradCheckOptions o;
  o.h = 1e-2;
  o.atol = 3e-3;
  test::check_gradients(net, random_tensor({3, 1, 4, 4}, 22), 23, o);
}

// A chain that no module ends (the network stops after the ReLU) stays plain:
// the Sequential's output is plain NCHW.
TEST(Nchw16c, AChainWithoutAnEndStaysPlain) {
  Generator g1(31), g2(31);
  Sequential chained, plain;
  for (Sequential* net : {&chained, &plain}) {
    Generator& gen = net == &chained ? g1 : g2;
    net->add(std::make_unique<Conv2d>(1, 16, 3, 1, 1, false, gen));
    net->add(std::make_unique<BatchNorm>(2, 16));
    net->add(std::make_unique<ReLU>());
  }
  const Tensor x = random_tensor({2, 1, 5, 5}, 32);
  const Tensor y = chained.forward(x);
  const Tensor* y2 = &x;
  for (size_t i = 0; i < plain.size(); ++i) y2 = &plain[i].forward(*y2);
  expect_close("y", y, *y2, 1e-6);
}

}  // namespace
}  // namespace bnlab::nn
