// The 2x2 max pool's row loop (src/kernels/max_pool2d.cpp), every variant this
// CPU runs, against a window-by-window reference written here: values bit for
// bit (NaN where the reference has NaN) and the winner's index exactly, for
// every row length from 1 to 70 windows (full vectors and every tail).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "bnlab/random.hpp"
#include "kernels/max_pool2d.hpp"

namespace bnlab::kernels {
namespace {

struct Row {
  std::vector<float> y;
  std::vector<int32_t> argmax;
};

// The first maximum of each window in the order (0,0), (0,1), (1,0), (1,1);
// the first NaN wins over every number.
Row reference(const std::vector<float>& plane, int32_t w, int64_t out_w, int32_t first) {
  Row r;
  for (int64_t ow = 0; ow < out_w; ++ow) {
    const int32_t at[4] = {first + static_cast<int32_t>(2 * ow), first + static_cast<int32_t>(2 * ow) + 1,
                           first + static_cast<int32_t>(2 * ow) + w,
                           first + static_cast<int32_t>(2 * ow) + w + 1};
    int32_t best = at[0];
    for (int k = 1; k < 4; ++k) {
      const float v = plane[at[k]], b = plane[best];
      if (std::isnan(b)) break;
      if (std::isnan(v) || v > b) best = at[k];
    }
    r.y.push_back(plane[best]);
    r.argmax.push_back(best);
  }
  return r;
}

// A plane of small integers (many ties), some NaN and infinities.
std::vector<float> plane_values(int64_t count, uint64_t seed) {
  Generator gen(seed);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& x : v) {
    const uint64_t r = gen.below(40);
    x = r == 0   ? std::numeric_limits<float>::quiet_NaN()
        : r == 1 ? -std::numeric_limits<float>::infinity()
        : r == 2 ? std::numeric_limits<float>::infinity()
                 : static_cast<float>(static_cast<int64_t>(r % 7) - 3);
  }
  return v;
}

TEST(MaxPool2x2Row, EveryVariantMatchesTheReferenceForEveryRowLength) {
  const std::vector<std::string> variants = max_pool_2x2_variants();
  ASSERT_EQ(variants.back(), "plain");
  for (int v = 0; v < static_cast<int>(variants.size()); ++v) {
    SCOPED_TRACE("variant " + variants[v]);
    for (int64_t out_w = 1; out_w <= 70; ++out_w)
      for (int32_t extra : {0, 1}) {  // odd widths leave the last column out
        const int32_t w = static_cast<int32_t>(2 * out_w) + extra;
        const std::vector<float> plane = plane_values(4 * w, 100 + out_w);
        const int32_t first = 2 * w;  // the second pair of rows
        const Row want = reference(plane, w, out_w, first);
        std::vector<float> y(static_cast<size_t>(out_w) + 1, -7.0f);
        std::vector<int32_t> argmax(static_cast<size_t>(out_w) + 1, -7);
        max_pool_2x2_row_variant(v, plane.data() + first, plane.data() + first + w, out_w, first,
                                 w, y.data(), argmax.data());
        for (int64_t i = 0; i < out_w; ++i) {
          ASSERT_EQ(argmax[i], want.argmax[i]) << "out_w " << out_w << " window " << i;
          if (std::isnan(want.y[i])) {
            ASSERT_TRUE(std::isnan(y[i])) << "out_w " << out_w << " window " << i;
          } else {
            ASSERT_EQ(y[i], want.y[i]) << "out_w " << out_w << " window " << i;
          }
        }
        EXPECT_EQ(y[out_w], -7.0f) << "wrote past y, out_w " << out_w;
        EXPECT_EQ(argmax[out_w], -7) << "wrote past argmax, out_w " << out_w;
      }
  }
}

TEST(MaxPool2x2Row, TheDefaultIsTheBestVariant) {
  const std::vector<float> plane = plane_values(4 * 36, 7);
  std::vector<float> y(18), y_best(18);
  std::vector<int32_t> a(18), a_best(18);
  max_pool_2x2_row(plane.data(), plane.data() + 36, 18, 0, 36, y.data(), a.data());
  max_pool_2x2_row_variant(0, plane.data(), plane.data() + 36, 18, 0, 36, y_best.data(),
                           a_best.data());
  EXPECT_EQ(a, a_best);
}

}  // namespace
}  // namespace bnlab::kernels
