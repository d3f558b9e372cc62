// Thread counts: one documented maximum (bnlab::kMaxThreads), in the C++ API,
// the C API and whatever OpenMP was told.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "bnlab/bnlab.h"
#include "bnlab/error.hpp"
#include "bnlab/threading.hpp"

namespace {

using bnlab::kMaxThreads;

class Threads : public ::testing::Test {
 protected:
  void TearDown() override {
    bnlab::set_num_threads(0);
    omp_set_num_threads(default_omp_threads_);
  }
  const int default_omp_threads_ = omp_get_max_threads();
};

TEST_F(Threads, SetAndDefaultRoundTrip) {
  bnlab::set_num_threads(3);
  EXPECT_EQ(bnlab::num_threads(), 3);
  bnlab::set_num_threads(kMaxThreads);
  EXPECT_EQ(bnlab::num_threads(), kMaxThreads);
  bnlab::set_num_threads(-5);  // <= 0: the default
  EXPECT_EQ(bnlab::num_threads(), std::min(omp_get_max_threads(), kMaxThreads));
}

TEST_F(Threads, MoreThanTheMaximumIsAnErrorNamingBoth) {
  bnlab::set_num_threads(2);
  for (const int threads : {kMaxThreads + 1, 32768, 100000}) {
    try {
      bnlab::set_num_threads(threads);
      ADD_FAILURE() << "no error for " << threads;
    } catch (const bnlab::Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(std::to_string(threads)), std::string::npos) << message;
      EXPECT_NE(message.find("maximum of 1024"), std::string::npos) << message;
    }
    EXPECT_EQ(bnlab::num_threads(), 2);  // the setting before stays
  }
}

TEST_F(Threads, OpenMpsOwnCountIsBoundedToo) {
  // OMP_NUM_THREADS=100000 (or omp_set_num_threads) reached libgomp as it was.
  omp_set_num_threads(100000);
  EXPECT_EQ(bnlab::num_threads(), kMaxThreads);
  omp_set_num_threads(7);
  EXPECT_EQ(bnlab::num_threads(), 7);
}

// The C ABI's setter is void: above the maximum it clamps and says so, and the
// next call runs (bnlab_set_num_threads(100000) crashed it inside libgomp).
TEST_F(Threads, CApiClampsAndTheNextCallRuns) {
  bnlab_set_num_threads(100000);
  const std::string message = bnlab_last_error();
  EXPECT_NE(message.find("100000"), std::string::npos) << message;
  EXPECT_EQ(bnlab::num_threads(), kMaxThreads);
  bnlab_set_num_threads(4);
  EXPECT_STREQ(bnlab_last_error(), "");
  EXPECT_EQ(bnlab::num_threads(), 4);

  // y = (x - mean) / sqrt(var + eps) for one channel of 8 values, under the
  // clamped maximum.
  bnlab_set_num_threads(100000);
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8}, y(8);
  ASSERT_EQ(bnlab_batch_norm_forward_training(x.data(), 8, 1, 1, BNLAB_CHANNELS_FIRST, nullptr,
                                              nullptr, nullptr, nullptr, 0.1, 1, 1e-5, y.data(),
                                              nullptr, nullptr),
            BNLAB_OK)
      << bnlab_last_error();
  double mean = 0, var = 0;
  for (float v : x) mean += v / 8.0;
  for (float v : x) var += (v - mean) * (v - mean) / 8.0;
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_NEAR(y[i], (x[i] - mean) / std::sqrt(var + 1e-5), 1e-5) << i;
}

}  // namespace
