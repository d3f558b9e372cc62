// Conv2d: 2-D convolution, NCHW, square kernel, as im2col + one oneDNN sgemm
// over the whole batch (columns (C*k*k, N*Ho*Wo)), so the product is large
// enough to use every thread and its result does not depend on their count.
#include <cstring>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "core/parallel.hpp"
#include "nn/gemm.hpp"
#include "nn/init.hpp"

namespace bnlab::nn {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
               int64_t padding, bool has_bias, Generator& gen)
    : in_channels(in_channels),
      out_channels(out_channels),
      kernel_size(kernel_size),
      stride(stride),
      padding(padding) {
  if (in_channels <= 0) throw Error("Conv2d: in_channels must be positive, got " + std::to_string(in_channels));
  if (out_channels <= 0) throw Error("Conv2d: out_channels must be positive, got " + std::to_string(out_channels));
  if (kernel_size <= 0) throw Error("Conv2d: kernel_size must be positive, got " + std::to_string(kernel_size));
  if (stride <= 0) throw Error("Conv2d: stride must be positive, got " + std::to_string(stride));
  if (padding < 0) throw Error("Conv2d: padding must be >= 0, got " + std::to_string(padding));
  const int64_t fan_in = in_channels * kernel_size * kernel_size;
  weight.value.resize({out_channels, in_channels, kernel_size, kernel_size});
  weight.grad = Tensor(weight.value.shape(), 0.0f);
  fill_uniform_fan_in(weight.value, fan_in, gen);
  if (has_bias) {
    bias.emplace();
    bias->value.resize({out_channels});
    bias->grad = Tensor({out_channels}, 0.0f);
    fill_uniform_fan_in(bias->value, fan_in, gen);
  }
}

Shape Conv2d::output_shape(const Shape& input) const {
  if (input.size() != 4 || input[1] != in_channels)
    throw Error(repr() + ": expected input (N, " + std::to_string(in_channels) +
                ", H, W), got " + shape_string(input));
  const int64_t h = (input[2] + 2 * padding - kernel_size);
  const int64_t w = (input[3] + 2 * padding - kernel_size);
  if (h < 0 || w < 0)
    throw Error(repr() + ": input " + shape_string(input) + " is smaller than the kernel");
  return {input[0], out_channels, h / stride + 1, w / stride + 1};
}

namespace {

struct ConvGeometry {
  int64_t n, c, h, w, k, stride, padding, out_h, out_w;
  int64_t out_hw() const { return out_h * out_w; }
  int64_t rows() const { return c * k * k; }          // of the column matrix
  int64_t cols() const { return n * out_h * out_w; }  // of the column matrix
};

/* im2col: columns[(c*k + kh)*k + kw][(i*Ho + oh)*Wo + ow] = x[i, c, oh*s - p + kh, ow*s - p + kw],
 * 0 outside the image. One write per column entry; rows split over threads. */
void im2col(const float* x, const ConvGeometry& g, float* columns) {
  parallel_for(g.rows(), g.rows() * g.cols(), [&](int64_t row) {
    const int64_t c = row / (g.k * g.k), kh = (row / g.k) % g.k, kw = row % g.k;
    float* out = columns + row * g.cols();
    for (int64_t i = 0; i < g.n; ++i) {
      const float* plane = x + (i * g.c + c) * g.h * g.w;
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        const int64_t ih = oh * g.stride - g.padding + kh;
        float* dst = out + (i * g.out_h + oh) * g.out_w;
        if (ih < 0 || ih >= g.h) {
          std::memset(dst, 0, sizeof(float) * static_cast<size_t>(g.out_w));
          continue;
        }
        const float* src = plane + ih * g.w;
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const int64_t iw = ow * g.stride - g.padding + kw;
          dst[ow] = iw >= 0 && iw < g.w ? src[iw] : 0.0f;
        }
      }
    }
  });
}

/* col2im, the adjoint of im2col: dx[i, c, ih, iw] = sum of grad_columns entries
 * that im2col read from (i, c, ih, iw). Each (i, c) plane is one task, so
 * writes never collide and the sum order is fixed. */
void col2im(const float* grad_columns, const ConvGeometry& g, float* dx) {
  parallel_for(g.n * g.c, g.rows() * g.cols(), [&](int64_t plane_index) {
    const int64_t i = plane_index / g.c, c = plane_index % g.c;
    float* plane = dx + plane_index * g.h * g.w;
    std::memset(plane, 0, sizeof(float) * static_cast<size_t>(g.h * g.w));
    for (int64_t kh = 0; kh < g.k; ++kh)
      for (int64_t kw = 0; kw < g.k; ++kw) {
        const float* src = grad_columns + ((c * g.k + kh) * g.k + kw) * g.cols() + i * g.out_hw();
        for (int64_t oh = 0; oh < g.out_h; ++oh) {
          const int64_t ih = oh * g.stride - g.padding + kh;
          if (ih < 0 || ih >= g.h) continue;
          float* dst = plane + ih * g.w;
          const float* row = src + oh * g.out_w;
          for (int64_t ow = 0; ow < g.out_w; ++ow) {
            const int64_t iw = ow * g.stride - g.padding + kw;
            if (iw >= 0 && iw < g.w) dst[iw] += row[ow];
          }
        }
      }
  });
}

ConvGeometry geometry(const Shape& input, const Shape& output, int64_t k, int64_t stride,
                      int64_t padding) {
  return {input[0], input[1], input[2], input[3], k, stride, padding, output[2], output[3]};
}

}  // namespace

/* Forward. x (N, C, H, W), W (O, C, k, k), b (O) -> y (N, O, Ho, Wo):
 *   columns = im2col(x)                         (C*k*k, N*Ho*Wo)
 *   Y = W columns                               (O, N*Ho*Wo), one sgemm
 *   y[i, o, :] = Y[o, i*Ho*Wo : ...] + b[o]     one pass (reorder to NCHW)
 * columns are kept for the weight gradient. */
const Tensor& Conv2d::forward(const Tensor& input) {
  const Shape out_shape = output_shape(input.shape());
  const ConvGeometry g = geometry(input.shape(), out_shape, kernel_size, stride, padding);
  input_ = &input;
  columns_.resize({g.rows(), g.cols()});
  output_matrix_.resize({out_channels, g.cols()});
  output_.resize(out_shape);
  im2col(input.data(), g, columns_.data());
  sgemm(false, false, out_channels, g.cols(), g.rows(), 1.0f, weight.value.data(), g.rows(),
        columns_.data(), g.cols(), 0.0f, output_matrix_.data(), g.cols());
  const float* matrix = output_matrix_.data();
  float* y = output_.data();
  const float* b = bias ? bias->value.data() : nullptr;
  const int64_t hw = g.out_hw();
  parallel_for(g.n * out_channels, output_.numel(), [&](int64_t index) {
    const int64_t i = index / out_channels, o = index % out_channels;
    const float* src = matrix + o * g.cols() + i * hw;
    float* dst = y + index * hw;
    const float add = b ? b[o] : 0.0f;
    for (int64_t p = 0; p < hw; ++p) dst[p] = src[p] + add;
  });
  return output_;
}

/* Backward. dy (N, O, Ho, Wo):
 *   dY[o, i*Ho*Wo + p] = dy[i, o, p]              one pass (reorder)
 *   db[o] += sum over i, p of dy[i, o, p]
 *   dW += dY columns^T                            (O, C*k*k), one sgemm (beta = 1)
 *   grad_columns = W^T dY                         (C*k*k, N*Ho*Wo), one sgemm
 *   dx = col2im(grad_columns)                     (N, C, H, W) */
const Tensor& Conv2d::backward(const Tensor& grad_output) {
  if (input_ == nullptr) throw Error(repr() + ": backward called before forward");
  const Shape out_shape = output_shape(input_->shape());
  if (grad_output.shape() != out_shape)
    throw Error(repr() + ": grad_output shape " + shape_string(grad_output.shape()) +
                " does not match the output " + shape_string(out_shape));
  const ConvGeometry g = geometry(input_->shape(), out_shape, kernel_size, stride, padding);
  const int64_t hw = g.out_hw();
  output_matrix_.resize({out_channels, g.cols()});
  float* grad_matrix = output_matrix_.data();
  const float* dy = grad_output.data();
  parallel_for(out_channels, grad_output.numel(), [&](int64_t o) {
    double sum = 0.0;
    for (int64_t i = 0; i < g.n; ++i) {
      const float* src = dy + (i * out_channels + o) * hw;
      float* dst = grad_matrix + o * g.cols() + i * hw;
      for (int64_t p = 0; p < hw; ++p) {
        dst[p] = src[p];
        sum += src[p];
      }
    }
    if (bias) bias->grad[o] += static_cast<float>(sum);
  });
  sgemm(false, true, out_channels, g.rows(), g.cols(), 1.0f, grad_matrix, g.cols(),
        columns_.data(), g.cols(), 1.0f, weight.grad.data(), g.rows());
  grad_columns_.resize({g.rows(), g.cols()});
  sgemm(true, false, g.rows(), g.cols(), out_channels, 1.0f, weight.value.data(), g.rows(),
        grad_matrix, g.cols(), 0.0f, grad_columns_.data(), g.cols());
  grad_input_.resize(input_->shape());
  col2im(grad_columns_.data(), g, grad_input_.data());
  return grad_input_;
}

// PyTorch's extra_repr: padding only when non-zero, bias only when absent.
std::string Conv2d::repr() const {
  auto pair = [](int64_t v) {
    const std::string n = std::to_string(v);
    std::string out = "(";  // appended piece by piece: GCC 12 warns (-Wrestrict) on "(" + n
    out += n;
    out += ", ";
    out += n;
    out += ")";
    return out;
  };
  std::string s = "Conv2d(" + std::to_string(in_channels) + ", " + std::to_string(out_channels) +
                  ", kernel_size=" + pair(kernel_size) + ", stride=" + pair(stride);
  if (padding != 0) s += ", padding=" + pair(padding);
  if (!bias) s += ", bias=False";
  return s + ")";
}

std::vector<std::pair<std::string, Parameter*>> Conv2d::parameters() {
  std::vector<std::pair<std::string, Parameter*>> params{{"weight", &weight}};
  if (bias) params.emplace_back("bias", &*bias);
  return params;
}

}  // namespace bnlab::nn
