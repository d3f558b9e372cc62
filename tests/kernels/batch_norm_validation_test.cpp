// The C++ API's argument checks: bnlab::Error with the code the C API turns
// into a status, and a message naming the argument (the C API's statuses and
// messages are tested in tests/capi/).
#include <gtest/gtest.h>

#include <functional>
#include <limits>

#include "bn_reference.hpp"
#include "bnlab/batch_norm.hpp"
#include "bnlab/error.hpp"

namespace bnlab::test {
namespace {

// Runs f and checks that it throws bnlab::Error with code and a message containing part.
void expect_throws(const std::function<void()>& f, ErrorCode code, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "expected bnlab::Error containing '" << part << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(Validation, ShapeChecksNameTheFieldAndTheValue) {
  expect_throws(
      [] {
        validate({-1, 3, 4, Layout::channels_first});
      },
      ErrorCode::invalid_argument, "n must be non-negative, got -1");
  expect_throws(
      [] {
        validate({2, -5, 4, Layout::channels_first});
      },
      ErrorCode::invalid_argument, "c must be non-negative, got -5");
  expect_throws(
      [] {
        validate({2, 3, -7, Layout::channels_last});
      },
      ErrorCode::invalid_argument, "s must be non-negative, got -7");
  // Layout has a fixed underlying type (int), so any int is a value it can hold.
  expect_throws(
      [] {
        validate({2, 3, 4, static_cast<Layout>(3)});
      },
      ErrorCode::invalid_argument, "layout");
  expect_throws(
      [] {
        validate({2, 24, 4, Layout::blocked16});
      },
      ErrorCode::invalid_argument, "layout blocked16 needs c to be a multiple of 16, got c=24");
  EXPECT_NO_THROW(validate({2, 32, 4, Layout::blocked16}));
  expect_throws(
      [] {
        validate({int64_t{1} << 40, int64_t{1} << 40, 1, Layout::channels_first});
      },
      ErrorCode::invalid_argument, "n*c*s overflows");
  EXPECT_NO_THROW(validate({0, 0, 0, Layout::channels_first}));
  EXPECT_NO_THROW(validate({1 << 20, 1 << 10, 1 << 10, Layout::channels_last}));
}

TEST(Validation, TrainingWithOneValuePerChannelIsTooFewValues) {
  const std::vector<float> x(3, 1.0f);
  std::vector<float> y(3);
  for (Layout layout : {Layout::channels_first, Layout::channels_last})
    expect_throws(
        [&] {
          batch_norm_forward_training(x.data(), {1, 3, 1, layout}, nullptr, nullptr, {}, 1e-5,
                                      y.data(), nullptr, nullptr);
        },
        ErrorCode::too_few_values, "expected more than 1 value per channel when training");
}

TEST(Validation, TrainingRefusesBadEpsMomentumAndHalfRunningStats) {
  const BatchNormShape sh{2, 3, 4, Layout::channels_first};
  const std::vector<float> x = channel_data(sh, 1);
  std::vector<float> y(x.size()), rm(3, 0.0f), rv(3, 1.0f);
  auto train = [&](RunningStats running, double eps) {
    return [&, running, eps] {
      batch_norm_forward_training(x.data(), sh, nullptr, nullptr, running, eps, y.data(), nullptr,
                                  nullptr);
    };
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  expect_throws(train({}, 0.0), ErrorCode::invalid_argument, "eps");
  expect_throws(train({}, -1.0), ErrorCode::invalid_argument, "eps");
  expect_throws(train({}, nan), ErrorCode::invalid_argument, "eps");
  expect_throws(train({rm.data(), rv.data(), -0.5, true}, 1e-5), ErrorCode::invalid_argument,
                "momentum");
  expect_throws(train({rm.data(), rv.data(), 1.01, true}, 1e-5), ErrorCode::invalid_argument,
                "momentum");
  expect_throws(train({rm.data(), rv.data(), nan, true}, 1e-5), ErrorCode::invalid_argument,
                "momentum");
  expect_throws(train({rm.data(), nullptr, 0.1, true}, 1e-5), ErrorCode::invalid_argument,
                "running_var");
  expect_throws(train({nullptr, rv.data(), 0.1, true}, 1e-5), ErrorCode::invalid_argument,
                "running_mean");
  EXPECT_EQ(rm, std::vector<float>(3, 0.0f));  // nothing refused moved a running statistic
  EXPECT_EQ(rv, std::vector<float>(3, 1.0f));
  // Without running statistics the momentum is not used, so it is not checked.
  EXPECT_NO_THROW(train({nullptr, nullptr, 7.0, true}, 1e-5)());
}

TEST(Validation, BackwardWithReluNeedsTheForwardOutput) {
  const BatchNormShape sh{2, 3, 4, Layout::channels_last};
  const std::vector<float> x = channel_data(sh, 2), mean(3, 0.0f), invstd(3, 1.0f);
  std::vector<float> dx(x.size());
  expect_throws(
      [&] {
        batch_norm_backward(x.data(), x.data(), sh, nullptr, mean.data(), invstd.data(), dx.data(),
                            nullptr, nullptr, Activation::relu, nullptr);
      },
      ErrorCode::invalid_argument, "y");
}

}  // namespace
}  // namespace bnlab::test
