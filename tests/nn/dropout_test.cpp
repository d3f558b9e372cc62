#include <gtest/gtest.h>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "grad_check.hpp"

namespace bnlab::nn {
namespace {

using test::check_gradients;
using test::GradCheckOptions;
using test::random_tensor;

TEST(Dropout, TrainingZeroesAboutPAndScalesTheRest) {
  Generator gen(1);
  Dropout dropout(0.3, gen);
  const Tensor x = random_tensor({100, 100}, 2);
  const Tensor& y = dropout.forward(x);
  int64_t zeros = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (y[i] == 0.0f) {
      ++zeros;
    } else {
      EXPECT_FLOAT_EQ(y[i], static_cast<float>(x[i] / 0.7)) << i;
    }
  }
  EXPECT_NEAR(static_cast<double>(zeros) / x.numel(), 0.3, 0.02);
}

TEST(Dropout, SameSeedSameMask) {
  Generator a(5), b(5);
  Dropout da(0.5, a), db(0.5, b);
  const Tensor x = random_tensor({8, 16}, 3);
  const Tensor ya = da.forward(x);
  const Tensor& yb = db.forward(x);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(ya[i], yb[i]);
}

TEST(Dropout, GradientsWithAFixedMask) {
  Generator gen(7);
  Dropout dropout(0.4, gen);
  GradCheckOptions o;
  o.before_forward = [&] { gen = Generator(7); };  // the same mask on every forward
  check_gradients(dropout, random_tensor({4, 6}, 8), 9, o);
}

TEST(Dropout, EvalAndZeroPAreIdentity) {
  Generator gen(0);
  Dropout dropout(0.5, gen);
  dropout.eval();
  const Tensor x = random_tensor({2, 3}, 10);
  EXPECT_EQ(&dropout.forward(x), &x);
  const Tensor dy = random_tensor({2, 3}, 11);
  EXPECT_EQ(&dropout.backward(dy), &dy);
  Dropout none(0.0, gen);
  EXPECT_EQ(&none.forward(x), &x);
}

TEST(Dropout, PEqualOneZeroesEverything) {
  Generator gen(0);
  Dropout dropout(1.0, gen);
  const Tensor& y = dropout.forward(random_tensor({3, 3}, 12));
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_EQ(y[i], 0.0f);
}

TEST(Dropout, ReprAndErrors) {
  Generator gen(0);
  EXPECT_EQ(Dropout(0.5, gen).repr(), "Dropout(p=0.5, inplace=False)");
  EXPECT_EQ(Dropout(0.25, gen).repr(), "Dropout(p=0.25, inplace=False)");
  EXPECT_THROW(Dropout(1.5, gen), Error);
  EXPECT_THROW(Dropout(-0.1, gen), Error);
}

}  // namespace
}  // namespace bnlab::nn
