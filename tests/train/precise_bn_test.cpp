// Precise BN over a data set: the batches come from one seeded order, as
// many as asked or as the data holds; over the whole set, a BatchNorm right
// after Flatten gets each pixel's mean and unbiased variance, in float64 here.
#include "bnlab/train/precise_bn.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/nn/arch.hpp"

namespace bnlab::train {
namespace {

// 10 examples of 2x2 pixels with spread-out values.
data::Dataset small_set() {
  data::Dataset d;
  d.count = 10;
  d.rows = d.cols = 2;
  for (int64_t i = 0; i < 40; ++i) d.images.push_back(std::sin(0.7f * float(i)) * float(i % 7));
  d.labels.assign(10, 0);
  return d;
}

TEST(PreciseBnOnData, BatchesStopWhereAskedOrWhereTheDataEnds) {
  const data::Dataset d = small_set();
  Generator gen(0);
  auto net = nn::parse_arch("Flatten(), BatchNorm1d(4)", gen);
  nn::RecalibrationResult r = recalibrate_batch_norm(*net, d, 2, 4, 0);
  EXPECT_EQ(r.batches, 2);
  EXPECT_EQ(r.examples, 8);
  r = recalibrate_batch_norm(*net, d, 100, 4, 0);
  EXPECT_EQ(r.batches, 3);  // 4, 4 and the short last 2
  EXPECT_EQ(r.examples, 10);
  auto& bn = dynamic_cast<nn::BatchNorm&>((*net)[1]);
  for (int64_t p = 0; p < 4; ++p) {
    double sum = 0, m2 = 0;
    for (int64_t i = 0; i < 10; ++i) sum += d.images[size_t(i * 4 + p)];
    const double mean = sum / 10;
    for (int64_t i = 0; i < 10; ++i) m2 += std::pow(d.images[size_t(i * 4 + p)] - mean, 2);
    EXPECT_NEAR(bn.running_mean[p], mean, 1e-5 * (1 + std::fabs(mean))) << p;
    EXPECT_NEAR(bn.running_var[p], m2 / 9, 1e-5 * m2 / 9) << p;
  }
}

TEST(PreciseBnOnData, NonPositiveCountsAreErrorsNamingThem) {
  const data::Dataset d = small_set();
  Generator gen(0);
  auto net = nn::parse_arch("Flatten(), BatchNorm1d(4)", gen);
  try {
    recalibrate_batch_norm(*net, d, 0, 4, 0);
    FAIL() << "batches 0 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("batches must be > 0, got 0"), std::string::npos);
  }
  EXPECT_THROW(recalibrate_batch_norm(*net, d, 3, -1, 0), Error);
}

}  // namespace
}  // namespace bnlab::train
