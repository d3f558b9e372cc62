#include <gtest/gtest.h>

#include "nn/python_repr.hpp"

namespace bnlab::nn {
namespace {

// Expected strings are Python 3's repr() of the same doubles.
TEST(PythonRepr, FloatsPrintAsPythonReprDoes) {
  const std::pair<double, const char*> cases[] = {
      {1e-5, "1e-05"},     {0.001, "0.001"},  {0.1, "0.1"},
      {1.0, "1.0"},        {0.3, "0.3"},      {100.0, "100.0"},
      {1e16, "1e+16"},     {1.5e-7, "1.5e-07"}, {123456.789, "123456.789"},
      {0.0001, "0.0001"},  {2.5, "2.5"},      {0.0, "0.0"},
      {-0.25, "-0.25"},    {1e15, "1000000000000000.0"},
      {123456789012345678.0, "1.2345678901234568e+17"},
      {0.1 + 0.2, "0.30000000000000004"}, {1.0 / 3.0, "0.3333333333333333"}};
  for (const auto& [value, expected] : cases) EXPECT_EQ(python_float(value), expected);
  EXPECT_EQ(python_bool(true), "True");
  EXPECT_EQ(python_bool(false), "False");
}

}  // namespace
}  // namespace bnlab::nn
