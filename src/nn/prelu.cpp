// PReLU: ReLU with a learnable negative slope, one for all channels or one
// per channel (dim 1), as PyTorch's nn.PReLU; state-dict name "weight".
#include <vector>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "nn/python_repr.hpp"

namespace bnlab::nn {

PReLU::PReLU(int64_t num_parameters, double init, Deferred)
    : num_parameters(num_parameters), init(init) {
  if (num_parameters <= 0)
    throw Error("PReLU: num_parameters must be positive, got " + std::to_string(num_parameters));
}

PReLU::PReLU(int64_t num_parameters, double init) : PReLU(num_parameters, init, deferred) {
  Generator unused(0);
  reset_parameters(unused);
}

void PReLU::reset_parameters(Generator&) {
  weight.value = Tensor({num_parameters}, static_cast<float>(init));
  weight.grad = Tensor({num_parameters});
}

double PReLU::state_bytes() const {
  return 2.0 * static_cast<double>(num_parameters) * sizeof(float);
}

std::vector<std::pair<std::string, Parameter*>> PReLU::parameters() {
  return {{"weight", &weight}};
}

std::string PReLU::repr() const {
  return "PReLU(num_parameters=" + std::to_string(num_parameters) + ")";
}

Shape PReLU::output_shape(const Shape& input) const {
  if (num_parameters > 1 && (input.size() < 2 || input[1] != num_parameters))
    throw Error(repr() + ": expected an input with " + std::to_string(num_parameters) +
                " channels in dim 1, got " + shape_string(input));
  return input;
}

namespace {
// Values per (sample, channel) block, and channels, of an input for `slopes` slopes.
struct ChannelBlocks {
  int64_t outer, channels, inner;
};
ChannelBlocks channel_blocks(const Tensor& x, int64_t slopes) {
  if (slopes == 1) return {1, 1, x.numel()};
  int64_t inner = 1;
  for (int64_t d = 2; d < x.dim(); ++d) inner *= x.size(d);
  return {x.size(0), x.size(1), inner};
}
}  // namespace

/* y = x if x > 0, else a[c] * x, c the channel of the value (0 when one slope). */
const Tensor& PReLU::forward(const Tensor& input) {
  output_shape(input.shape());
  input_ = &input;
  output_.resize(input.shape());
  const ChannelBlocks b = channel_blocks(input, num_parameters);
  const float* x = input.data();
  const float* a = weight.value.data();
  float* y = output_.data();
  for (int64_t n = 0; n < b.outer; ++n)
    for (int64_t c = 0; c < b.channels; ++c) {
      const int64_t base = (n * b.channels + c) * b.inner;
      for (int64_t i = base; i < base + b.inner; ++i) y[i] = x[i] > 0.0f ? x[i] : a[c] * x[i];
    }
  return output_;
}

/* dx = dy if x > 0, else a[c] * dy; da[c] += sum over x <= 0 of x * dy (in
 * double), so a NaN input gives a NaN slope gradient, as in PyTorch. */
const Tensor& PReLU::backward(const Tensor& grad_output) {
  check_grad_output(grad_output, output_);
  grad_input_.resize(grad_output.shape());
  const ChannelBlocks b = channel_blocks(*input_, num_parameters);
  const float* x = input_->data();
  const float* dy = grad_output.data();
  const float* a = weight.value.data();
  float* dx = grad_input_.data();
  std::vector<double> da(static_cast<size_t>(b.channels), 0.0);
  for (int64_t n = 0; n < b.outer; ++n)
    for (int64_t c = 0; c < b.channels; ++c) {
      const int64_t base = (n * b.channels + c) * b.inner;
      double sum = 0.0;
      for (int64_t i = base; i < base + b.inner; ++i) {
        const bool positive = x[i] > 0.0f;
        dx[i] = positive ? dy[i] : a[c] * dy[i];
        if (!positive) sum += static_cast<double>(x[i]) * dy[i];
      }
      da[static_cast<size_t>(c)] += sum;
    }
  for (int64_t c = 0; c < b.channels; ++c)
    weight.grad[c] += static_cast<float>(da[static_cast<size_t>(c)]);
  return grad_input_;
}

}  // namespace bnlab::nn
