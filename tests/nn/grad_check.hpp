// Finite-difference gradient checks for nn modules.
//
// The scalar checked is L = sum_i w_i * y_i, computed in double from the
// module's float output, with w fixed random; so dL/dy = w and the analytic
// gradients are backward(w). The numeric ones are central differences
//   dL/dv ~ (L(v + h) - L(v - h)) / (2h)
// for every element v of the input and of each parameter. A check passes when
// |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "bnlab/nn/module.hpp"
#include "bnlab/random.hpp"
#include "bnlab/tensor.hpp"
#include "nn/blocked16.hpp"

namespace bnlab::test {

inline Tensor random_tensor(const Shape& shape, uint64_t seed, float stddev = 1.0f,
                            float mean = 0.0f) {
  Generator gen(seed);
  Tensor t(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = gen.normal(mean, stddev);
  return t;
}

// A plain NCHW tensor's values in nChw16c order (see MemoryFormat), and back.
inline Tensor to_blocked(const Tensor& plain) {
  Tensor out(plain.shape());
  nn::to_blocked16(plain.data(), out.data(), plain.size(0), plain.size(1),
                 plain.size(2) * plain.size(3));
  return out;
}

inline Tensor from_blocked(const Tensor& nchw16c) {
  Tensor out(nchw16c.shape());
  nn::from_blocked16(nchw16c.data(), out.data(), nchw16c.size(0), nchw16c.size(1),
                   nchw16c.size(2) * nchw16c.size(3));
  return out;
}

struct GradCheckOptions {
  double h = 1e-2;
  double atol = 2e-3;
  double rtol = 1e-2;
  bool check_input = true;
  bool check_parameters = true;
  // Called before every forward (e.g. to reseed Dropout's generator).
  std::function<void()> before_forward;
};

inline double weighted_sum(const Tensor& y, const Tensor& w) {
  double sum = 0.0;
  for (int64_t i = 0; i < y.numel(); ++i) sum += static_cast<double>(w[i]) * y[i];
  return sum;
}

inline void expect_close_grad(const std::string& what, int64_t index, double analytic,
                              double numeric, const GradCheckOptions& o) {
  const double tol = o.atol + o.rtol * std::max(std::abs(analytic), std::abs(numeric));
  EXPECT_LE(std::abs(analytic - numeric), tol)
      << what << "[" << index << "]: analytic " << analytic << ", numeric " << numeric;
}

// Checks the input gradient and every parameter gradient of `module` at `input`.
inline void check_gradients(nn::Module& module, Tensor input, uint64_t seed,
                            const GradCheckOptions& o = {}) {
  auto run_forward = [&]() -> const Tensor& {
    if (o.before_forward) o.before_forward();
    return module.forward(input);
  };
  const Tensor& y0 = run_forward();
  const Tensor w = random_tensor(y0.shape(), seed ^ 0x5eedULL);
  for (auto& [name, param] : module.parameters()) param->grad.fill(0.0f);
  const Tensor dx = module.backward(w);
  auto loss = [&]() { return weighted_sum(run_forward(), w); };

  // Central differences over every element of `values`, against `analytic`.
  auto check_tensor = [&](const std::string& what, Tensor& values, const Tensor& analytic) {
    for (int64_t i = 0; i < values.numel(); ++i) {
      const float saved = values[i];
      values[i] = saved + static_cast<float>(o.h);
      const double plus = loss();
      values[i] = saved - static_cast<float>(o.h);
      const double minus = loss();
      values[i] = saved;
      expect_close_grad(what, i, analytic[i], (plus - minus) / (2 * o.h), o);
    }
  };
  if (o.check_input) {
    ASSERT_EQ(dx.shape(), input.shape());
    check_tensor("input", input, dx);
  }
  if (o.check_parameters)
    for (auto& [name, param] : module.parameters()) check_tensor(name, param->value, param->grad);
}

}  // namespace bnlab::test
