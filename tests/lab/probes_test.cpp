// The lab's probes against plain float64 references: the noise after BN
// (its backward by central differences, its moving mean and variance), the
// gradient shift of Definition 2.1 and the landscape along the gradient on
// small networks whose gradients the test computes by hand; every probe
// leaves weights, gradients and BN statistics as it found them.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "bnlab/nn/layers.hpp"
#include "bnlab/random.hpp"
#include "lab/gradient_probes.hpp"
#include "lab/shift_noise.hpp"

using namespace bnlab;
using namespace bnlab::lab;

namespace {

Tensor random_tensor(const Shape& shape, uint64_t seed) {
  Tensor t(shape);
  Generator gen(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = gen.normal();
  return t;
}

// Softmax cross-entropy of logits z (n, k), mean over rows, and dL/dz, in double.
double cross_entropy(const std::vector<double>& z, const std::vector<int32_t>& y, int64_t k,
                     std::vector<double>& dz) {
  const int64_t n = static_cast<int64_t>(y.size());
  dz.assign(z.size(), 0.0);
  double loss = 0;
  for (int64_t i = 0; i < n; ++i) {
    double top = z[size_t(i * k)];
    for (int64_t j = 1; j < k; ++j) top = std::max(top, z[size_t(i * k + j)]);
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += std::exp(z[size_t(i * k + j)] - top);
    loss += top + std::log(sum) - z[size_t(i * k + y[size_t(i)])];
    for (int64_t j = 0; j < k; ++j)
      dz[size_t(i * k + j)] = (std::exp(z[size_t(i * k + j)] - top) / sum - (j == y[size_t(i)])) / double(n);
  }
  return loss / double(n);
}

// A dense layer in double: out (n, o) = in (n, i) W^T + b; and its weight gradients.
struct DenseRef {
  int64_t in, out;
  std::vector<double> w, b;
  std::vector<double> forward(const std::vector<double>& x, int64_t n) const {
    std::vector<double> y(size_t(n * out));
    for (int64_t r = 0; r < n; ++r)
      for (int64_t o = 0; o < out; ++o) {
        double s = b[size_t(o)];
        for (int64_t i = 0; i < in; ++i) s += x[size_t(r * in + i)] * w[size_t(o * in + i)];
        y[size_t(r * out + o)] = s;
      }
    return y;
  }
  void grads(const std::vector<double>& x, const std::vector<double>& dy, int64_t n,
             std::vector<double>& dw, std::vector<double>& db, std::vector<double>* dx) const {
    dw.assign(w.size(), 0.0);
    db.assign(b.size(), 0.0);
    if (dx) dx->assign(size_t(n * in), 0.0);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t o = 0; o < out; ++o) {
        double g = dy[size_t(r * out + o)];
        db[size_t(o)] += g;
        for (int64_t i = 0; i < in; ++i) {
          dw[size_t(o * in + i)] += g * x[size_t(r * in + i)];
          if (dx) (*dx)[size_t(r * in + i)] += g * w[size_t(o * in + i)];
        }
      }
  }
};

DenseRef dense_ref(nn::Linear& l) {
  DenseRef d{l.in_features, l.out_features, {}, {}};
  for (int64_t i = 0; i < l.weight.value.numel(); ++i) d.w.push_back(l.weight.value[i]);
  for (int64_t i = 0; i < l.bias->value.numel(); ++i) d.b.push_back(l.bias->value[i]);
  return d;
}

std::vector<double> to_vector(const Tensor& t) { return {t.data(), t.data() + t.numel()}; }

double norm_of_difference(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i] - b[i]) * (a[i] - b[i]);
  return std::sqrt(s);
}

}  // namespace

TEST(NonStationaryNoise, BackwardMatchesCentralDifferencesForOneDraw) {
  NonStationaryNoise noise(3, 5);
  Tensor x = random_tensor({4, 3}, 1), w = random_tensor({4, 3}, 2);
  auto f = [&](const Tensor& in) {
    noise.draw = 7;  // the same noise for every evaluation
    const Tensor& y = noise.forward(in);
    double s = 0;
    for (int64_t i = 0; i < y.numel(); ++i) s += double(w[i]) * y[i];
    return s;
  };
  f(x);
  const Tensor& dx = noise.backward(w);
  std::vector<double> analytic = to_vector(dx);
  const double h = 1e-2;
  for (int64_t i = 0; i < x.numel(); ++i) {
    Tensor plus = x, minus = x;
    plus[i] += static_cast<float>(h);
    minus[i] -= static_cast<float>(h);
    double numeric = (f(plus) - f(minus)) / (2 * h);
    EXPECT_NEAR(analytic[size_t(i)], numeric, 1e-3) << i;
  }
}

TEST(NonStationaryNoise, EachStepMovesTheMeanAndVarianceAndEvalIsTheMeanMap) {
  NonStationaryNoise noise(2, 3);
  const int64_t n = 20000;
  Tensor x = random_tensor({n, 2}, 4);
  double previous_mean = NAN;
  for (int step = 0; step < 3; ++step) {
    std::vector<double> y = to_vector(noise.forward(x));
    double mean = 0, sq = 0;
    for (int64_t i = 0; i < n; ++i) mean += y[size_t(i * 2)];
    mean /= double(n);
    for (int64_t i = 0; i < n; ++i) sq += (y[size_t(i * 2)] - mean) * (y[size_t(i * 2)] - mean);
    double sd = std::sqrt(sq / double(n));
    EXPECT_LE(std::abs(mean), NonStationaryNoise::kMaxShift + 0.05);
    EXPECT_GE(sd, 0.97);  // s in [1, 2] and the jitter: never below unit variance
    EXPECT_LE(sd, std::hypot(NonStationaryNoise::kMaxScale, NonStationaryNoise::kJitter) + 0.05);
    if (step > 0) {
      EXPECT_NE(mean, previous_mean);
    }
    previous_mean = mean;
  }
  noise.eval();
  const Tensor& y = noise.forward(x);
  const float mean_scale = (1.0f + NonStationaryNoise::kMaxScale) / 2;
  for (int64_t i = 0; i < 10; ++i) EXPECT_FLOAT_EQ(y[i], mean_scale * x[i]);
}

TEST(NonStationaryNoise, GoesAfterEveryBatchNorm) {
  Generator gen(0);
  nn::Sequential net;
  net.add(std::make_unique<nn::Linear>(4, 3, false, gen));
  net.add(std::make_unique<nn::BatchNorm>(1, 3));
  net.add(std::make_unique<nn::Sigmoid>());
  net.add(std::make_unique<nn::Linear>(3, 3, false, gen));
  net.add(std::make_unique<nn::BatchNorm>(1, 3));
  add_noise_after_batch_norms(net, 1);
  ASSERT_EQ(net.size(), 7u);
  EXPECT_NE(dynamic_cast<NonStationaryNoise*>(&net[2]), nullptr);
  EXPECT_NE(dynamic_cast<NonStationaryNoise*>(&net[6]), nullptr);
}

/* Linear(4, 5), ReLU, Linear(5, 3): G = dL/dW2, G' = dL/dW2 after W1 and b1
   took the step -lr * grad; both by hand in double. */
TEST(GradientShift, MatchesAHandComputedGradientAfterTheLayerBelowMoved) {
  Generator gen(3);
  nn::Sequential net;
  net.add(std::make_unique<nn::Linear>(4, 5, true, gen));
  net.add(std::make_unique<nn::ReLU>());
  net.add(std::make_unique<nn::Linear>(5, 3, true, gen));
  const int64_t n = 8;
  Tensor x = random_tensor({n, 4}, 5);
  std::vector<int32_t> y = {0, 1, 2, 0, 1, 2, 2, 1};
  const double lr = 0.5;
  auto& first = dynamic_cast<nn::Linear&>(net[0]);
  auto& second = dynamic_cast<nn::Linear&>(net[2]);
  DenseRef a = dense_ref(first), b = dense_ref(second);
  std::vector<double> xs = to_vector(x);
  // dL/dW2 and dL/dW1, db1 at (a, b).
  auto grads = [&](const DenseRef& l1, std::vector<double>& dw2, std::vector<double>& dw1,
                   std::vector<double>& db1) {
    std::vector<double> hidden = l1.forward(xs, n);
    for (double& v : hidden) v = std::max(v, 0.0);
    std::vector<double> dz, db2, dh;
    cross_entropy(b.forward(hidden, n), y, 3, dz);
    b.grads(hidden, dz, n, dw2, db2, &dh);
    std::vector<double> pre = l1.forward(xs, n);
    for (size_t i = 0; i < dh.size(); ++i)
      if (pre[i] <= 0) dh[i] = 0;
    l1.grads(xs, dh, n, dw1, db1, nullptr);
  };
  std::vector<double> g, dw1, db1, g_moved, unused_w, unused_b;
  grads(a, g, dw1, db1);
  DenseRef moved = a;
  for (size_t i = 0; i < moved.w.size(); ++i) moved.w[i] -= lr * dw1[i];
  for (size_t i = 0; i < moved.b.size(); ++i) moved.b[i] -= lr * db1[i];
  grads(moved, g_moved, unused_w, unused_b);
  double dot = 0, gg = 0, mm = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    dot += g[i] * g_moved[i];
    gg += g[i] * g[i];
    mm += g_moved[i] * g_moved[i];
  }
  std::vector<double> w1_before = to_vector(first.weight.value);
  std::vector<LayerShift> shift = gradient_shift(net, x, y.data(), lr);
  ASSERT_EQ(shift.size(), 1u);  // the first layer has nothing before it
  EXPECT_NEAR(shift[0].difference_norm, norm_of_difference(g, g_moved), 1e-5);
  EXPECT_NEAR(shift[0].cosine, dot / std::sqrt(gg * mm), 1e-5);
  EXPECT_NEAR(shift[0].gradient_norm, std::sqrt(gg), 1e-5);
  EXPECT_EQ(to_vector(first.weight.value), w1_before);  // weights put back
  for (int64_t i = 0; i < first.weight.grad.numel(); ++i) EXPECT_EQ(first.weight.grad[i], 0.0f);
  // No step at all: the gradient does not move.
  std::vector<LayerShift> still = gradient_shift(net, x, y.data(), 0.0);
  EXPECT_EQ(still[0].difference_norm, 0.0);
  EXPECT_NEAR(still[0].cosine, 1.0, 1e-12);
}

/* Softmax regression, Linear(4, 3): L(w - eta g) and its gradient by hand
   in double for each eta; the three measures as the header defines them. */
TEST(Landscape, MatchesAHandComputedSoftmaxRegression) {
  Generator gen(9);
  nn::Sequential net;
  net.add(std::make_unique<nn::Linear>(4, 3, true, gen));
  const int64_t n = 6;
  Tensor x = random_tensor({n, 4}, 10);
  std::vector<int32_t> y = {2, 0, 1, 1, 0, 2};
  std::vector<double> xs = to_vector(x);
  DenseRef w0 = dense_ref(dynamic_cast<nn::Linear&>(net[0]));
  auto loss_and_grad = [&](const DenseRef& w, std::vector<double>& g) {
    std::vector<double> dz, dw, db;
    double loss = cross_entropy(w.forward(xs, n), y, 3, dz);
    w.grads(xs, dz, n, dw, db, nullptr);
    g = dw;
    g.insert(g.end(), db.begin(), db.end());
    return loss;
  };
  std::vector<double> g0;
  loss_and_grad(w0, g0);
  double g_norm = norm_of_difference(g0, std::vector<double>(g0.size(), 0.0));
  const std::vector<double> etas = {0.05, 0.5, 2.0};
  double low = INFINITY, high = -INFINITY, predictiveness = 0, beta = 0;
  for (double eta : etas) {
    DenseRef w = w0;
    for (size_t i = 0; i < w.w.size(); ++i) w.w[i] -= eta * g0[i];
    for (size_t i = 0; i < w.b.size(); ++i) w.b[i] -= eta * g0[w.w.size() + i];
    std::vector<double> g;
    double loss = loss_and_grad(w, g);
    low = std::min(low, loss);
    high = std::max(high, loss);
    double d = norm_of_difference(g0, g);
    predictiveness = std::max(predictiveness, d);
    beta = std::max(beta, d / (eta * g_norm));
  }
  LandscapeSample s = landscape_along_gradient(net, x, y.data(), etas);
  EXPECT_NEAR(s.loss_variation, high - low, 1e-5);
  EXPECT_NEAR(s.gradient_predictiveness, predictiveness, 1e-5);
  EXPECT_NEAR(s.beta_smoothness, beta, 1e-4 * beta);
  EXPECT_EQ(to_vector(dynamic_cast<nn::Linear&>(net[0]).weight.value),
            std::vector<double>(w0.w.begin(), w0.w.end()));
}

TEST(Landscape, LeavesBatchNormRunningStatisticsAlone) {
  Generator gen(2);
  nn::Sequential net;
  net.add(std::make_unique<nn::Linear>(4, 3, false, gen));
  net.add(std::make_unique<nn::BatchNorm>(1, 3));
  net.add(std::make_unique<nn::ReLU>());
  net.add(std::make_unique<nn::Linear>(3, 3, true, gen));
  Tensor x = random_tensor({8, 4}, 3);
  std::vector<int32_t> y = {0, 1, 2, 0, 1, 2, 0, 1};
  auto& bn = dynamic_cast<nn::BatchNorm&>(net[1]);
  landscape_along_gradient(net, x, y.data(), {0.1, 1.0});
  gradient_shift(net, x, y.data(), 0.1);
  EXPECT_EQ(bn.num_batches_tracked, 0);
  for (int64_t c = 0; c < 3; ++c) {
    EXPECT_EQ(bn.running_mean[c], 0.0f);
    EXPECT_EQ(bn.running_var[c], 1.0f);
  }
}
