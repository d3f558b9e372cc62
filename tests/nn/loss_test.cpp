#include <gtest/gtest.h>

#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/nn/loss.hpp"
#include "grad_check.hpp"

namespace bnlab::nn {
namespace {

using test::random_tensor;

// mean_i (log sum_k exp(z[i,k]) - z[i, y_i]) in double, no max shift (small logits).
double cross_entropy_reference(const Tensor& z, const std::vector<int32_t>& labels) {
  const int64_t n = z.size(0), k = z.size(1);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += std::exp(static_cast<double>(z[i * k + j]));
    total += std::log(sum) - z[i * k + labels[i]];
  }
  return total / n;
}

TEST(CrossEntropyLoss, ForwardMatchesFloat64AndCountsCorrect) {
  const Tensor z = random_tensor({6, 4}, 1, 2.0f);
  const std::vector<int32_t> labels{0, 1, 2, 3, 0, 1};
  CrossEntropyLoss loss;
  EXPECT_NEAR(loss.forward(z, labels.data()), cross_entropy_reference(z, labels), 1e-6);
  int64_t correct = 0;
  for (int64_t i = 0; i < 6; ++i) {
    int64_t best = 0;
    for (int64_t j = 1; j < 4; ++j)
      if (z[i * 4 + j] > z[i * 4 + best]) best = j;
    correct += best == labels[i];
  }
  EXPECT_EQ(loss.correct(), correct);
}

TEST(CrossEntropyLoss, LargeLogitsStayFinite) {
  Tensor z({2, 3});
  const float big[6] = {1000.f, 0.f, -1000.f, 500.f, 501.f, 499.f};
  for (int i = 0; i < 6; ++i) z[i] = big[i];
  const std::vector<int32_t> labels{0, 1};
  CrossEntropyLoss loss;
  const double expected = 0.5 * (0.0 + (std::log(std::exp(-1.0) + 1.0 + std::exp(-2.0))));
  EXPECT_NEAR(loss.forward(z, labels.data()), expected, 1e-6);
}

TEST(CrossEntropyLoss, GradientMatchesCentralDifferences) {
  Tensor z = random_tensor({5, 4}, 2);
  const std::vector<int32_t> labels{3, 0, 2, 1, 1};
  CrossEntropyLoss loss;
  loss.forward(z, labels.data());
  const Tensor dz = loss.backward();
  const double h = 1e-2;
  for (int64_t i = 0; i < z.numel(); ++i) {
    const float saved = z[i];
    z[i] = saved + static_cast<float>(h);
    const double plus = loss.forward(z, labels.data());
    z[i] = saved - static_cast<float>(h);
    const double minus = loss.forward(z, labels.data());
    z[i] = saved;
    EXPECT_NEAR(dz[i], (plus - minus) / (2 * h), 1e-4) << i;
  }
}

// PyTorch's label smoothing in double: the target (1 - eps) onehot + eps / K.
double smoothed_reference(const Tensor& z, const std::vector<int32_t>& labels, double eps) {
  const int64_t n = z.size(0), k = z.size(1);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += std::exp(static_cast<double>(z[i * k + j]));
    for (int64_t j = 0; j < k; ++j) {
      const double target = (j == labels[i] ? 1.0 - eps : 0.0) + eps / double(k);
      total += target * (std::log(sum) - z[i * k + j]);
    }
  }
  return total / n;
}

TEST(CrossEntropyLoss, LabelSmoothingMatchesFloat64AndCentralDifferences) {
  Tensor z = random_tensor({5, 4}, 4, 2.0f);
  const std::vector<int32_t> labels{3, 0, 2, 1, 1};
  for (const double eps : {0.1, 0.5, 1.0}) {
    SCOPED_TRACE(eps);
    CrossEntropyLoss loss(eps);
    EXPECT_NEAR(loss.forward(z, labels.data()), smoothed_reference(z, labels, eps), 1e-6);
    const Tensor dz = loss.backward();
    const double h = 1e-2;
    for (int64_t i = 0; i < z.numel(); ++i) {
      const float saved = z[i];
      z[i] = saved + static_cast<float>(h);
      const double plus = smoothed_reference(z, labels, eps);
      z[i] = saved - static_cast<float>(h);
      const double minus = smoothed_reference(z, labels, eps);
      z[i] = saved;
      EXPECT_NEAR(dz[i], (plus - minus) / (2 * h), 1e-4) << i;
    }
  }
  EXPECT_THROW(CrossEntropyLoss(-0.1), Error);
  EXPECT_THROW(CrossEntropyLoss(1.5), Error);
  EXPECT_THROW(CrossEntropyLoss(NAN), Error);
}

TEST(CrossEntropyLoss, LabelOutOfRangeIsNamed) {
  const Tensor z = random_tensor({2, 3}, 3);
  const std::vector<int32_t> labels{0, 3};
  CrossEntropyLoss loss;
  try {
    loss.forward(z, labels.data());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("label 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(loss.forward(Tensor({6}), labels.data()), Error);
}

}  // namespace
}  // namespace bnlab::nn
