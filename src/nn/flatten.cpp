// Flatten: (N, d1, d2, ...) -> (N, d1*d2*...), values in the same order (NCHW's).
#include <cstring>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "nn/blocked16.hpp"

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
// A 2-D input is already flat: it passes through (PyTorch returns it as it is),
// and so does its gradient.
const Tensor& Flatten::forward(const Tensor& input) {
  return forward_formatted(input, MemoryFormat::plain, MemoryFormat::plain);
}

Blocked16Use Flatten::blocked16_use(const Shape& input) const {
  return fits_blocked16(input) ? Blocked16Use::ends : Blocked16Use::no;
}

// bf16 passes through Flatten in either layout (bf16 in, bf16 out).
ChainUse Flatten::bf16_use(const Shape& input) const {
  return input.size() >= 2 ? ChainUse::keeps : ChainUse::no;
}

// From nChw16c the copy puts the values back in NCHW order, which is the
// order Flatten's output means; backward puts the gradient into nChw16c.
// bf16 values are copied as they are (2 bytes each).
const Tensor& Flatten::forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) {
  if (is_blocked16(out) || is_bf16(out) != is_bf16(in))
    throw Error(repr() + ": its output is plain (N, features), of the input's element type");
  check_blocked16_input(input.shape(), in);
  if (input.shape() != input_shape_) {
    output_.resize(output_shape(input.shape()));
    input_shape_ = input.shape();
  }
  format_ = in;
  passed_through_ = input.dim() == 2;
  if (passed_through_) return input;
  const int64_t n = input.size(0), c = input.size(1);
  if (in == MemoryFormat::blocked16_bf16) {
    from_blocked16(bf16_data(input), bf16_data(output_), n, c, input.size(2) * input.size(3));
    return output_;
  }
  if (in == MemoryFormat::blocked16) {
    from_blocked16(input.data(), output_.data(), n, c, input.size(2) * input.size(3));
    return output_;
  }
  std::memcpy(output_.data(), input.data(), element_bytes(in) * static_cast<size_t>(input.numel()));
  return output_;
}

const Tensor& Flatten::backward(const Tensor& grad_output) {
  if (grad_output.numel() != output_.numel())
    throw Error(repr() + ": grad_output shape " + shape_string(grad_output.shape()) +
                " does not match the input " + shape_string(input_shape_));
  if (passed_through_) return grad_output;
  grad_input_.resize(input_shape_);
  const int64_t n = input_shape_[0], c = input_shape_[1];
  if (format_ == MemoryFormat::blocked16_bf16) {
    to_blocked16(bf16_data(grad_output), bf16_data(grad_input_), n, c,
                 input_shape_[2] * input_shape_[3]);
    return grad_input_;
  }
  if (format_ == MemoryFormat::blocked16) {
    to_blocked16(grad_output.data(), grad_input_.data(), n, c, input_shape_[2] * input_shape_[3]);
    return grad_input_;
  }
  std::memcpy(grad_input_.data(), grad_output.data(),
              element_bytes(format_) * static_cast<size_t>(grad_output.numel()));
  return grad_input_;
}

}  // namespace bnlab::nn
