// bf16 chains under --precision bf16 (MemoryFormat's plain_bf16 and
// blocked16_bf16, bnlab/nn/module.hpp): each module's bf16 path against the
// float computation on the same bf16-rounded inputs, within one bf16 rounding
// (|got - want| <= 2^-8 |want| + atol, atol covering float accumulation
// order); the plan Sequential makes, with modules without a bf16 path in the
// middle; a small network trained a few steps under bf16 beside fp32, and
// fp32 untouched by it.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include "bnlab/batch_norm_bf16.hpp"
#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/nn/loss.hpp"
#include "bnlab/nn/precision.hpp"
#include "grad_check.hpp"

namespace bnlab::nn {
namespace {

using test::random_tensor;
constexpr double kOneRounding = 1.0 / 256.0;  // bf16's 8 significant bits: half an ulp is 2^-9 relative

// t's values rounded to bf16, held as a bf16 activation (see bf16_data).
Tensor to_bf16(const Tensor& t) {
  Tensor out(t.shape());
  floats_to_bf16(t.data(), bf16_data(out), t.numel());
  return out;
}
// A bf16 activation widened to float (exact).
Tensor widened(const Tensor& b) {
  Tensor out(b.shape());
  bf16_to_floats(bf16_data(b), out.data(), b.numel());
  return out;
}
Tensor rounded(const Tensor& t) { return widened(to_bf16(t)); }

Tensor to_blocked_bf16(const Tensor& bf16_plain) {
  Tensor out(bf16_plain.shape());
  to_blocked16(bf16_data(bf16_plain), bf16_data(out), bf16_plain.size(0), bf16_plain.size(1),
               bf16_plain.size(2) * bf16_plain.size(3));
  return out;
}
Tensor from_blocked_bf16(const Tensor& bf16_blocked) {
  Tensor out(bf16_blocked.shape());
  from_blocked16(bf16_data(bf16_blocked), bf16_data(out), bf16_blocked.size(0),
                 bf16_blocked.size(1), bf16_blocked.size(2) * bf16_blocked.size(3));
  return out;
}

// |got - want| <= rel * |want| + atol * max|want|, first offender in the message.
void expect_within(const std::string& what, const Tensor& got, const std::vector<double>& want,
                   double rel, double atol) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(want.size())) << what;
  double scale = 0.0;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  for (int64_t i = 0; i < got.numel(); ++i)
    ASSERT_LE(std::fabs(got[i] - want[size_t(i)]), rel * std::fabs(want[size_t(i)]) + atol * scale)
        << what << "[" << i << "]: " << got[i] << " against " << want[size_t(i)];
}
std::vector<double> values(const Tensor& t) { return {t.data(), t.data() + t.numel()}; }

class Bf16Chain : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cpu_has_bf16()) GTEST_SKIP() << "no bf16 on this CPU (" << onednn_isa_name() << ")";
  }
  void TearDown() override { set_compute_precision(ComputePrecision::fp32); }
};

TEST(Bf16ChainUse, ModulesSayWhetherTheyKeepBf16) {
  Generator gen(1);
  const Shape s4{2, 16, 4, 4}, s2{2, 16};
  EXPECT_EQ(BatchNorm(1, 16).bf16_use(s2), ChainUse::keeps);
  EXPECT_EQ(BatchNorm(2, 16).bf16_use(s4), ChainUse::keeps);
  BatchNorm frozen(2, 16);
  frozen.freeze_batch_norm(false);
  EXPECT_EQ(frozen.bf16_use(s4), ChainUse::no);  // no bf16 backward with running statistics
  EXPECT_EQ(ReLU().bf16_use(s2), ChainUse::keeps);
  EXPECT_EQ(Sigmoid().bf16_use(s2), ChainUse::no);
  EXPECT_EQ(MaxPool2d(2).bf16_use(s4), ChainUse::keeps);
  EXPECT_EQ(MaxPool2d(3, 2).bf16_use(s4), ChainUse::no);  // overlapping windows
  EXPECT_EQ(Flatten().bf16_use(s4), ChainUse::keeps);
  EXPECT_EQ(Dropout(0.5, gen).bf16_use(s2), ChainUse::no);
  Linear linear(16, 8, false, gen);
  EXPECT_EQ(linear.bf16_use(s2), ChainUse::ends);
  EXPECT_TRUE(linear.can_output_bf16(s2));
  Conv2d conv(16, 8, 3, 1, 1, false, gen);
  EXPECT_EQ(conv.bf16_use(s4), ChainUse::ends);
  EXPECT_TRUE(conv.can_output_bf16(s4));
  const Tensor x = random_tensor(s2, 2);
  EXPECT_THROW(Sigmoid().forward_formatted(x, MemoryFormat::plain_bf16, MemoryFormat::plain_bf16),
               Error);
  EXPECT_THROW(ReLU().forward_formatted(x, MemoryFormat::plain_bf16, MemoryFormat::plain), Error);
  EXPECT_THROW(Flatten().forward_formatted(random_tensor(s4, 3), MemoryFormat::plain_bf16,
                                           MemoryFormat::plain),
               Error);
}

// Float64 batch norm with batch statistics on x (n, c, s) channels first:
// y = (x - mean) * invstd * w + b; dx, dw, db for dy.
struct BnReference {
  std::vector<double> y, dx, dw, db;
};
BnReference bn_reference(const Tensor& x, const Tensor& dy, const Tensor& w, const Tensor& b,
                         double eps) {
  const int64_t n = x.size(0), c = x.size(1), s = x.numel() / (n * c);
  BnReference r{std::vector<double>(size_t(x.numel())), std::vector<double>(size_t(x.numel())),
                std::vector<double>(size_t(c)), std::vector<double>(size_t(c))};
  const double m = double(n * s);
  for (int64_t j = 0; j < c; ++j) {
    const auto at = [&](int64_t i, int64_t k) { return size_t((i * c + j) * s + k); };
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) mean += x[int64_t(at(i, k))];
    mean /= m;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) var += std::pow(x[int64_t(at(i, k))] - mean, 2);
    const double invstd = 1.0 / std::sqrt(var / m + eps);
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) {
        const double xhat = (x[int64_t(at(i, k))] - mean) * invstd;
        r.y[at(i, k)] = xhat * w[j] + b[j];
        sum_dy += dy[int64_t(at(i, k))];
        sum_dy_xhat += dy[int64_t(at(i, k))] * xhat;
      }
    r.dw[size_t(j)] = sum_dy_xhat;
    r.db[size_t(j)] = sum_dy;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) {
        const double xhat = (x[int64_t(at(i, k))] - mean) * invstd;
        r.dx[at(i, k)] = w[j] * invstd * (dy[int64_t(at(i, k))] - sum_dy / m - xhat * sum_dy_xhat / m);
      }
  }
  return r;
}

void set_affine(BatchNorm& bn) {
  for (int64_t j = 0; j < bn.num_features; ++j) {
    bn.weight.value[j] = 0.5f + 0.03f * float(j);
    bn.bias.value[j] = 0.1f * float(j % 5) - 0.2f;
  }
}

TEST_F(Bf16Chain, BatchNormTrainingMatchesFloat64OnTheRoundedInputs) {
  struct Case {
    int dims;
    Shape shape;
    MemoryFormat format;
  };
  for (const Case& k : {Case{1, {64, 24}, MemoryFormat::plain_bf16},
                        Case{2, {3, 32, 5, 7}, MemoryFormat::plain_bf16},
                        Case{2, {3, 32, 5, 7}, MemoryFormat::blocked16_bf16}}) {
    SCOPED_TRACE(shape_string(k.shape) + " " + format_name(k.format));
    BatchNorm bn(k.dims, k.shape[1]);
    set_affine(bn);
    const Tensor x16 = to_bf16(random_tensor(k.shape, 5, 2.0f, 0.5f));
    const Tensor dy16 = to_bf16(random_tensor(k.shape, 6));
    const bool blocked = is_blocked16(k.format);
    const Tensor x_in = blocked ? to_blocked_bf16(x16) : x16;  // kept until backward
    const Tensor& y = bn.forward_formatted(x_in, k.format, k.format);
    const Tensor y_plain = blocked ? from_blocked_bf16(y) : y;
    const Tensor dx = bn.backward(blocked ? to_blocked_bf16(dy16) : dy16);
    const Tensor dx_plain = blocked ? from_blocked_bf16(dx) : dx;
    const BnReference r = bn_reference(widened(x16), widened(dy16), bn.weight.value, bn.bias.value, bn.eps);
    expect_within("y", widened(y_plain), r.y, kOneRounding, 1e-5);
    expect_within("dx", widened(dx_plain), r.dx, kOneRounding, 1e-5);
    expect_within("dweight", bn.weight.grad, r.dw, 0.0, 1e-5);  // float, no rounding
    expect_within("dbias", bn.bias.grad, r.db, 0.0, 1e-5);
  }
}

// A module's bf16 path against its float path on the widened bf16 inputs:
// output and input gradient within `rel` (0: the same values), parameter
// gradients within 1e-4.
void expect_bf16_path_matches_float(Module& bf, Module& fp, const Tensor& x, MemoryFormat in,
                                    MemoryFormat out, double rel, double atol) {
  const Tensor x16 = to_bf16(x);
  const Tensor x_in = is_bf16(in) ? x16 : widened(x16);
  const Tensor x_wide = widened(x16);  // modules keep a pointer to their input until backward
  const Tensor y = bf.forward_formatted(x_in, in, out);
  const Tensor y_want = fp.forward(x_wide);
  expect_within("y", is_bf16(out) ? widened(y) : y, values(y_want), rel, atol);
  const Tensor dy16 = to_bf16(random_tensor(y.shape(), 77));
  const Tensor dx = bf.backward(is_bf16(out) ? dy16 : widened(dy16));
  const Tensor dx_want = fp.backward(widened(dy16));
  expect_within("dx", is_bf16(in) ? widened(dx) : dx, values(dx_want), rel, atol);
  auto p1 = bf.parameters(), p2 = fp.parameters();
  for (size_t k = 0; k < p1.size(); ++k)
    expect_within(p1[k].first, p1[k].second->grad, values(p2[k].second->grad), 1e-4, 1e-5);
}

TEST_F(Bf16Chain, BatchNormFusedReluAndEvalMatchTheFloatPath) {
  for (bool training : {true, false}) {
    SCOPED_TRACE(training ? "train" : "eval");
    BatchNorm a(2, 16), b(2, 16);
    for (BatchNorm* m : {&a, &b}) {
      set_affine(*m);
      for (int64_t j = 0; j < 16; ++j) {
        m->running_mean[j] = 0.05f * float(j);
        m->running_var[j] = 1.0f + 0.1f * float(j);
      }
      m->fuse_relu = true;
      m->train(training);
    }
    expect_bf16_path_matches_float(a, b, random_tensor({4, 16, 3, 3}, 8, 1.5f, 0.2f),
                                   MemoryFormat::plain_bf16, MemoryFormat::plain_bf16,
                                   kOneRounding, 1e-5);
  }
}

// ReLU, MaxPool2d and Flatten move bf16 values without arithmetic: the same
// values as the float path, exactly.
TEST_F(Bf16Chain, ReluMaxPoolAndFlattenAreExact) {
  ReLU r1, r2;
  expect_bf16_path_matches_float(r1, r2, random_tensor({3, 40}, 9), MemoryFormat::plain_bf16,
                                 MemoryFormat::plain_bf16, 0.0, 0.0);
  for (MemoryFormat f : {MemoryFormat::plain_bf16, MemoryFormat::blocked16_bf16}) {
    SCOPED_TRACE(format_name(f));
    for (int64_t k : {2, 3}) {
      MaxPool2d p1(k), p2(k);
      const Tensor x = random_tensor({2, 16, 7, 7}, 10);
      if (!is_blocked16(f)) {
        expect_bf16_path_matches_float(p1, p2, x, f, f, 0.0, 0.0);
        continue;
      }
      // nChw16c: compare after putting the values back in NCHW order.
      const Tensor x16 = to_bf16(x), x_in = to_blocked_bf16(x16), x_wide = widened(x16);
      const Tensor y = from_blocked_bf16(p1.forward_formatted(x_in, f, f));
      expect_within("y", widened(y), values(p2.forward(x_wide)), 0.0, 0.0);
      const Tensor dy16 = to_bf16(random_tensor(y.shape(), 11));
      const Tensor dx = from_blocked_bf16(p1.backward(to_blocked_bf16(dy16)));
      expect_within("dx", widened(dx), values(p2.backward(widened(dy16))), 0.0, 0.0);
    }
  }
  // ReLU's bit tests against the float rule on the values that need care.
  Tensor specials({1, 12});
  const float nan = std::nanf(""), inf = INFINITY;
  const float v[12] = {-0.0f, 0.0f, nan, -nan, -inf, inf, -1e-40f, 1e-40f, -2.5f, 2.5f, -1e38f, 3e38f};
  for (int64_t i = 0; i < 12; ++i) specials[i] = v[i];
  ReLU r3, r4;
  const Tensor s16 = to_bf16(specials), s_wide = widened(s16);
  const Tensor sy = widened(r3.forward_formatted(s16, MemoryFormat::plain_bf16, MemoryFormat::plain_bf16));
  const Tensor& sy_want = r4.forward(s_wide);
  const Tensor ones = to_bf16(Tensor({1, 12}, 1.0f));
  const Tensor sdx = widened(r3.backward(ones));
  const Tensor& sdx_want = r4.backward(widened(ones));
  for (int64_t i = 0; i < 12; ++i) {
    EXPECT_EQ(std::signbit(sy[i]), std::signbit(sy_want[i])) << i;
    EXPECT_TRUE(sy[i] == sy_want[i] || (std::isnan(sy[i]) && std::isnan(sy_want[i]))) << i;
    EXPECT_EQ(sdx[i], sdx_want[i]) << i;
  }
  Flatten f1, f2;
  const Tensor x16 = to_bf16(random_tensor({2, 16, 3, 3}, 12));
  const Tensor x_in = to_blocked_bf16(x16), x_wide = widened(x16);
  const Tensor y = f1.forward_formatted(x_in, MemoryFormat::blocked16_bf16, MemoryFormat::plain_bf16);
  expect_within("flatten y", widened(y), values(f2.forward(x_wide)), 0.0, 0.0);
  const Tensor dy16 = to_bf16(random_tensor(y.shape(), 13));
  const Tensor dx = from_blocked_bf16(f1.backward(dy16));
  expect_within("flatten dx", widened(dx), values(f2.backward(widened(dy16))), 0.0, 0.0);
}

// Linear with bf16 in and out against float64 on the rounded x, W and dy:
// y = x W^T + b, dx = dy W, dW = dy^T x, each rounded once to bf16 (y, dx).
TEST_F(Bf16Chain, LinearReadsAndWritesBf16) {
  set_compute_precision(ComputePrecision::bf16);
  Generator gen(14);
  Linear linear(48, 24, true, gen);
  const int64_t n = 9, in = 48, out = 24;
  const Tensor x16 = to_bf16(random_tensor({n, in}, 15));
  const Tensor dy16 = to_bf16(random_tensor({n, out}, 16));
  const Tensor y = linear.forward_formatted(x16, MemoryFormat::plain_bf16, MemoryFormat::plain_bf16);
  const Tensor dx = linear.backward(dy16);
  const Tensor x = widened(x16), dy = widened(dy16), w = rounded(linear.weight.value);
  std::vector<double> y_want(size_t(n * out)), dx_want(size_t(n * in)), dw_want(size_t(out * in));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double sum = linear.bias->value[o];
      for (int64_t k = 0; k < in; ++k) sum += double(x[i * in + k]) * w[o * in + k];
      y_want[size_t(i * out + o)] = sum;
    }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < in; ++k) {
      double sum = 0.0;
      for (int64_t o = 0; o < out; ++o) sum += double(dy[i * out + o]) * w[o * in + k];
      dx_want[size_t(i * in + k)] = sum;
    }
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = 0; k < in; ++k) {
      double sum = 0.0;
      for (int64_t i = 0; i < n; ++i) sum += double(dy[i * out + o]) * x[i * in + k];
      dw_want[size_t(o * in + k)] = sum;
    }
  expect_within("y", widened(y), y_want, kOneRounding, 1e-5);
  expect_within("dx", widened(dx), dx_want, kOneRounding, 1e-5);
  expect_within("dweight", linear.weight.grad, dw_want, 0.0, 1e-5);
}

TEST_F(Bf16Chain, Conv2dReadsAndWritesBf16InBothLayouts) {
  set_compute_precision(ComputePrecision::bf16);
  for (MemoryFormat f : {MemoryFormat::plain_bf16, MemoryFormat::blocked16_bf16}) {
    SCOPED_TRACE(format_name(f));
    Generator g1(17), g2(17);
    Conv2d bf(16, 32, 3, 1, 1, true, g1), fp(16, 32, 3, 1, 1, true, g2);
    fp.weight.value = rounded(fp.weight.value);
    const Tensor x16 = to_bf16(random_tensor({2, 16, 6, 6}, 18));
    const bool blocked = is_blocked16(f);
    const Tensor x_in = blocked ? to_blocked_bf16(x16) : x16, x_wide = widened(x16);
    const Tensor y = bf.forward_formatted(x_in, f, f);
    const Tensor dy16 = to_bf16(random_tensor(y.shape(), 19));
    const Tensor dx = bf.backward(blocked ? to_blocked_bf16(dy16) : dy16);
    // The float reference: the rounded operands in fp32, products unrounded.
    set_compute_precision(ComputePrecision::fp32);
    const Tensor y_want = fp.forward(x_wide);
    const Tensor dx_want = fp.backward(widened(dy16));
    set_compute_precision(ComputePrecision::bf16);
    expect_within("y", widened(blocked ? from_blocked_bf16(y) : y), values(y_want), kOneRounding, 1e-5);
    expect_within("dx", widened(blocked ? from_blocked_bf16(dx) : dx), values(dx_want), kOneRounding, 1e-5);
    expect_within("dweight", bf.weight.grad, values(fp.weight.grad), 1e-4, 1e-5);
  }
}

// mlp-bn's shape, smaller: Flatten Linear BN ReLU Linear BN ReLU Linear.
std::unique_ptr<Sequential> small_mlp_bn(uint64_t seed) {
  Generator gen(seed);
  auto net = std::make_unique<Sequential>();
  net->add(std::make_unique<Flatten>());
  net->add(std::make_unique<Linear>(36, 32, false, gen));
  net->add(std::make_unique<BatchNorm>(1, 32));
  net->add(std::make_unique<ReLU>());
  net->add(std::make_unique<Linear>(32, 16, false, gen));
  net->add(std::make_unique<BatchNorm>(1, 16));
  net->add(std::make_unique<ReLU>());
  net->add(std::make_unique<Linear>(16, 4, true, gen));
  net->fuse_batch_norm_relu();
  return net;
}

// cnn-bn's shape, smaller: Conv BN ReLU MaxPool Conv BN ReLU MaxPool Flatten Linear BN ReLU Linear.
std::unique_ptr<Sequential> small_cnn_bn(uint64_t seed) {
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
  net->add(std::make_unique<Linear>(32 * 3 * 3, 16, false, gen));
  net->add(std::make_unique<BatchNorm>(1, 16));
  net->add(std::make_unique<ReLU>());
  net->add(std::make_unique<Linear>(16, 4, true, gen));
  net->fuse_batch_norm_relu();
  return net;
}

TEST_F(Bf16Chain, SequentialPlansBf16ChainsBetweenProducts) {
  const MemoryFormat p = MemoryFormat::plain, b = MemoryFormat::plain_bf16,
                     cb = MemoryFormat::blocked16_bf16;
  auto mlp = small_mlp_bn(1);
  const Tensor x = random_tensor({8, 1, 6, 6}, 2);
  mlp->forward(x);
  EXPECT_EQ(mlp->output_formats(), (std::vector<MemoryFormat>{p, p, p, p, p, p, p, p}));
  set_compute_precision(ComputePrecision::bf16);
  mlp->forward(x);  // the plan follows the precision
  EXPECT_EQ(mlp->output_formats(), (std::vector<MemoryFormat>{p, b, b, b, b, b, b, p}));
  auto cnn = small_cnn_bn(3);
  cnn->forward(random_tensor({2, 1, 12, 12}, 4));
  EXPECT_EQ(cnn->output_formats(),
            (std::vector<MemoryFormat>{cb, cb, cb, cb, cb, cb, cb, cb, b, b, b, b, p}));
  // A module without a bf16 path ends nothing: its stretch stays float,
  // and the chains on either side of it are kept.
  Generator gen(5);
  Sequential mixed;
  mixed.add(std::make_unique<Linear>(8, 8, false, gen));
  mixed.add(std::make_unique<BatchNorm>(1, 8));
  mixed.add(std::make_unique<Sigmoid>());
  mixed.add(std::make_unique<Linear>(8, 8, false, gen));
  mixed.add(std::make_unique<ReLU>());
  mixed.add(std::make_unique<Linear>(8, 8, false, gen));
  mixed.add(std::make_unique<Dropout>(0.5, gen));
  mixed.add(std::make_unique<Linear>(8, 2, false, gen));
  mixed.forward(random_tensor({4, 8}, 6));
  EXPECT_EQ(mixed.output_formats(), (std::vector<MemoryFormat>{p, p, p, b, b, p, p, p}));
}

// n steps of SGD (lr 0.1) on one fixed batch; the loss of each step.
std::vector<double> train_steps(Sequential& net, const Tensor& x, const std::vector<int32_t>& labels,
                                int steps) {
  CrossEntropyLoss loss;
  std::vector<double> losses;
  net.compute_grad_input = false;
  for (int s = 0; s < steps; ++s) {
    net.zero_grad();
    losses.push_back(loss.forward(net.forward(x), labels.data()));
    net.backward(loss.backward());
    for (auto& [name, param] : net.parameters())
      for (int64_t i = 0; i < param->value.numel(); ++i) param->value[i] -= 0.1f * param->grad[i];
  }
  return losses;
}

// Under bf16 the loss of each step stays within 2% (plus 0.01) of fp32's,
// the loss falls, and fp32 before and after a bf16 run gives the same bits.
TEST_F(Bf16Chain, SmallNetworksTrainUnderBf16LikeFp32) {
  for (bool cnn : {false, true}) {
    SCOPED_TRACE(cnn ? "cnn-bn" : "mlp-bn");
    const auto make = [&] { return cnn ? small_cnn_bn(21) : small_mlp_bn(21); };
    const Tensor x = random_tensor(cnn ? Shape{16, 1, 12, 12} : Shape{16, 1, 6, 6}, 22);
    std::vector<int32_t> labels(16);
    for (size_t i = 0; i < labels.size(); ++i) labels[i] = int32_t(i % 4);
    auto fp = make();
    const std::vector<double> fp32 = train_steps(*fp, x, labels, 8);
    set_compute_precision(ComputePrecision::bf16);
    auto bf = make();
    const std::vector<double> bf16 = train_steps(*bf, x, labels, 8);
    set_compute_precision(ComputePrecision::fp32);
    auto again = make();
    const std::vector<double> fp32_again = train_steps(*again, x, labels, 8);
    for (size_t s = 0; s < fp32.size(); ++s) {
      EXPECT_NEAR(bf16[s], fp32[s], 0.02 * fp32[s] + 0.01) << "step " << s;
      EXPECT_EQ(fp32_again[s], fp32[s]) << "step " << s;
    }
    EXPECT_LT(bf16.back(), 0.7 * bf16.front());
  }
}

}  // namespace
}  // namespace bnlab::nn
