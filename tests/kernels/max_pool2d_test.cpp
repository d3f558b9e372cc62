// The 2x2 max pool's row loop (src/kernels/max_pool2d.cpp), every variant this
// CPU runs, against a window-by-window reference written here: values bit for
// bit (NaN where the reference has NaN) and the winner's index exactly, for
// every row length from 1 to 70 windows (full vectors and every tail); the
// nChw16c row the same way, lane by lane.
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

// y and argmax against the reference row, element by element (NaN matching
// NaN), and the sentinel past the end of both untouched.
void expect_row(const std::vector<float>& y, const std::vector<int32_t>& argmax, const Row& want,
                size_t count, int64_t out_w) {
  for (size_t i = 0; i < count; ++i) {
    ASSERT_EQ(argmax[i], want.argmax[i]) << "out_w " << out_w << " element " << i;
    if (std::isnan(want.y[i])) {
      ASSERT_TRUE(std::isnan(y[i])) << "out_w " << out_w << " element " << i;
    } else {
      ASSERT_EQ(y[i], want.y[i]) << "out_w " << out_w << " element " << i;
    }
  }
  EXPECT_EQ(y[count], -7.0f) << "wrote past y, out_w " << out_w;
  EXPECT_EQ(argmax[count], -7) << "wrote past argmax, out_w " << out_w;
}

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
        expect_row(y, argmax, want, static_cast<size_t>(out_w), out_w);
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

// nChw16c: each position holds 16 channels; lane l of window ow compares
// (0,0), (0,1), (1,0), (1,1) of channel l, first maximum, first NaN.
Row reference_blocked16(const std::vector<float>& plane, int32_t w, int64_t out_w, int32_t first) {
  Row r;
  for (int64_t ow = 0; ow < out_w; ++ow)
    for (int32_t l = 0; l < 16; ++l) {
      const int32_t top_left = first + static_cast<int32_t>(2 * ow);
      const int32_t at[4] = {top_left, top_left + 1, top_left + w, top_left + w + 1};
      int32_t best = at[0];
      for (int k = 1; k < 4; ++k) {
        const float v = plane[16 * at[k] + l], b = plane[16 * best + l];
        if (std::isnan(b)) break;
        if (std::isnan(v) || v > b) best = at[k];
      }
      r.y.push_back(plane[16 * best + l]);
      r.argmax.push_back(best);
    }
  return r;
}

TEST(MaxPool2x2Nchw16cRow, EveryVariantMatchesTheReferenceForEveryRowLength) {
  const std::vector<std::string> variants = max_pool_2x2_variants();
  for (int v = 0; v < static_cast<int>(variants.size()); ++v) {
    SCOPED_TRACE("variant " + variants[v]);
    for (int64_t out_w = 1; out_w <= 20; ++out_w)
      for (int32_t extra : {0, 1}) {  // odd widths leave the last column out
        const int32_t w = static_cast<int32_t>(2 * out_w) + extra;
        const std::vector<float> plane = plane_values(16 * 4 * w, 200 + out_w);
        const int32_t first = 2 * w;  // the second pair of rows
        const Row want = reference_blocked16(plane, w, out_w, first);
        const size_t count = static_cast<size_t>(16 * out_w);
        std::vector<float> y(count + 1, -7.0f);
        std::vector<int32_t> argmax(count + 1, -7);
        max_pool_2x2_blocked16_row_variant(v, plane.data() + 16 * first,
                                         plane.data() + 16 * (first + w), out_w, first, w, y.data(),
                                         argmax.data());
        expect_row(y, argmax, want, count, out_w);
      }
  }
}

// Its backward against the scatter it replaces: dx = 0, dx[argmax] += dy,
// lane by lane; the argmax comes from the reference forward (ties and NaN
// included), dy has -0 in places (the scatter's add makes it +0).
TEST(MaxPool2x2Nchw16cRow, BackwardOfEveryVariantMatchesTheScatter) {
  const std::vector<std::string> variants = max_pool_2x2_variants();
  for (int v = 0; v < static_cast<int>(variants.size()); ++v) {
    SCOPED_TRACE("variant " + variants[v]);
    for (int64_t out_w = 1; out_w <= 20; ++out_w)
      for (int32_t extra : {0, 1}) {
        const int32_t w = static_cast<int32_t>(2 * out_w) + extra;
        const int32_t first = 2 * w;
        const Row forward =
            reference_blocked16(plane_values(16 * 4 * w, 300 + out_w), w, out_w, first);
        std::vector<float> dy = plane_values(16 * out_w, 400 + out_w);
        for (size_t i = 0; i < dy.size(); i += 5) dy[i] = -0.0f;
        // The scatter over the whole plane; the row pair lies at first.
        std::vector<float> want(static_cast<size_t>(16 * 4 * w), 0.0f);
        for (size_t i = 0; i < dy.size(); ++i) want[16 * forward.argmax[i] + i % 16] += dy[i];
        // Sentinels where the kernel must not write: rows outside the pair, an odd last column.
        std::vector<float> dx(want.size(), -7.0f);
        max_pool_2x2_blocked16_row_backward_variant(v, dy.data(), forward.argmax.data(), out_w, first,
                                                  w, dx.data() + 16 * first,
                                                  dx.data() + 16 * (first + w));
        for (int32_t r = 2; r < 4; ++r)
          for (int32_t c = 0; c < w; ++c)
            for (int32_t l = 0; l < 16; ++l) {
              const size_t i = static_cast<size_t>(16 * (r * w + c) + l);
              if (c == 2 * out_w) {
                ASSERT_EQ(dx[i], -7.0f) << "wrote the last odd column, out_w " << out_w;
              } else {
                ASSERT_EQ(std::signbit(dx[i]), std::signbit(want[i]))
                    << "out_w " << out_w << " at " << i;
                if (std::isnan(want[i])) {
                  ASSERT_TRUE(std::isnan(dx[i])) << "out_w " << out_w << " at " << i;
                } else {
                  ASSERT_EQ(dx[i], want[i]) << "out_w " << out_w << " at " << i;
                }
              }
            }
        for (size_t i = 0; i < static_cast<size_t>(16 * 2 * w); ++i)
          ASSERT_EQ(dx[i], -7.0f) << "wrote above the row pair, out_w " << out_w;
      }
  }
}

}  // namespace
}  // namespace bnlab::kernels
