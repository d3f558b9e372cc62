// Flatten: (N, d1, d2, ...) -> (N, d1*d2*...), values in the same order.
#include <cstring>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"

namespace bnlab::nn {

Shape Flatten::output_shape(const Shape& input) const {
  if (input.size() < 2)
    throw Error(repr() + ": expected an input with at least 2 dimensions, got " +
                shape_string(input));
  int64_t features = 1;
  for (size_t d = 1; d < input.size(); ++d) features *= input[d];
  return {input[0], features};
}

// A copy (one pass) rather than a view: a module's output is a tensor it owns.
const Tensor& Flatten::forward(const Tensor& input) {
  if (input.shape() != input_shape_) {
    output_.resize(output_shape(input.shape()));
    input_shape_ = input.shape();
  }
  std::memcpy(output_.data(), input.data(), sizeof(float) * static_cast<size_t>(input.numel()));
  return output_;
}

const Tensor& Flatten::backward(const Tensor& grad_output) {
  if (grad_output.numel() != output_.numel())
    throw Error(repr() + ": grad_output shape " + shape_string(grad_output.shape()) +
                " does not match the input " + shape_string(input_shape_));
  grad_input_.resize(input_shape_);
  std::memcpy(grad_input_.data(), grad_output.data(),
              sizeof(float) * static_cast<size_t>(grad_output.numel()));
  return grad_input_;
}

}  // namespace bnlab::nn
