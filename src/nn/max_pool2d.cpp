// MaxPool2d: k x k windows, stride s, padding p (padded positions count as
// -inf, so they never win), NCHW. The first maximum of a window in row-major
// order wins ties, and NaN wins over numbers, as in PyTorch's CPU kernel.
// Also on oneDNN's nChw16c (see MemoryFormat), the same values in that order.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "bnlab/aligned.hpp"
#include "bnlab/batch_norm_bf16.hpp"
#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "core/parallel.hpp"
#include "kernels/max_pool2d.hpp"

namespace bnlab::nn {

MaxPool2d::MaxPool2d(int64_t kernel_size, std::optional<int64_t> stride, int64_t padding)
    : kernel_size(kernel_size), stride(stride ? *stride : kernel_size), padding(padding) {
  if (kernel_size <= 0)
    throw Error("MaxPool2d: kernel_size must be positive, got " + std::to_string(kernel_size));
  if (this->stride <= 0)
    throw Error("MaxPool2d: stride must be positive, got " + std::to_string(this->stride));
  if (padding < 0 || 2 * padding > kernel_size)
    throw Error("MaxPool2d: padding should be at most half of kernel_size (" +
                std::to_string(kernel_size) + "), got " + std::to_string(padding));
}

Shape MaxPool2d::output_shape(const Shape& input) const {
  if (input.size() != 4)
    throw Error(repr() + ": expected 4-D input (N, C, H, W), got " + shape_string(input));
  const int64_t h = input[2] + 2 * padding - kernel_size;
  const int64_t w = input[3] + 2 * padding - kernel_size;
  if (h < 0 || w < 0)
    throw Error(repr() + ": input " + shape_string(input) + " is smaller than the window");
  return {input[0], input[1], h / stride + 1, w / stride + 1};
}

Blocked16Use MaxPool2d::blocked16_use(const Shape& input) const {
  return fits_blocked16(input) ? Blocked16Use::keeps : Blocked16Use::no;
}

// bf16 where windows do not overlap: each input then takes at most one
// gradient, so the bf16 backward writes dy's values without a sum to round.
ChainUse MaxPool2d::bf16_use(const Shape&) const {
  return stride >= kernel_size ? ChainUse::keeps : ChainUse::no;
}

namespace {

constexpr int64_t kBlock = 16;  // channels per nChw16c block

// A float or bf16 value as the float it is (bf16 widens exactly), for the comparisons.
inline float widen(float v) { return v; }
inline float widen(uint16_t v) { return bf16_to_float(v); }
// dx += dy for float; for bf16 (windows that do not overlap, see bf16_use) dx = dy.
inline void add_grad(float& dx, float dy) { dx += dy; }
inline void add_grad(uint16_t& dx, uint16_t dy) { dx = dy == 0x8000 ? uint16_t{0} : dy; }  // 0 + -0 is +0

// The 2x2 stride-2 window on nChw16c, one output row: the vector row of the
// kernels (max_pool2d.hpp). bf16 rows are widened into the calling thread's
// buffer first and the maxima narrowed back: the same values (a maximum is
// one of its inputs; only bf16 denormals, which widen to float denormals,
// come back as zeros, as every bf16 rounding here gives them).
void pool_2x2_blocked16_row(const float* row0, const float* row1, int64_t out_w,
                            int32_t first_index, int32_t w, float* y, int32_t* argmax) {
  kernels::max_pool_2x2_blocked16_row(row0, row1, out_w, first_index, w, y, argmax);
}
void pool_2x2_blocked16_row(const uint16_t* row0, const uint16_t*, int64_t out_w,
                            int32_t first_index, int32_t w, uint16_t* y, int32_t* argmax) {
  thread_local AlignedVector<float> rows, maxima;
  const auto both_rows = static_cast<size_t>(2 * w * kBlock);  // row1 follows row0
  if (rows.size() < both_rows) rows.resize(both_rows);
  if (maxima.size() < static_cast<size_t>(out_w * kBlock)) maxima.resize(static_cast<size_t>(out_w * kBlock));
  bf16_to_floats(row0, rows.data(), static_cast<int64_t>(both_rows));
  kernels::max_pool_2x2_blocked16_row(rows.data(), rows.data() + w * kBlock, out_w, first_index, w,
                                      maxima.data(), argmax);
  floats_to_bf16(maxima.data(), y, out_w * kBlock);
}

// The pooling problem on nChw16c: units = N * C/16 (sample, channel block)
// pairs, each an (h, w, 16) input and an (out_h, out_w, 16) output.
struct BlockedPool {
  int64_t units, h, w, out_h, out_w;
  int64_t kernel_size, stride, padding;
};

BlockedPool blocked_pool(const MaxPool2d& module, const Shape& input, const Shape& output) {
  return {.units = input[0] * (input[1] / kBlock),
          .h = input[2],
          .w = input[3],
          .out_h = output[2],
          .out_w = output[3],
          .kernel_size = module.kernel_size,
          .stride = module.stride,
          .padding = module.padding};
}

/* Forward on nChw16c: y[u, oh, ow, l] = max over the window of
 * x[u, oh*s - p + kh, ow*s - p + kw, l] for each lane (channel) l, the same
 * rule as the plain path; argmax[u, oh, ow, l] = ih*w + iw of lane l's winner.
 * One task per unit; the 2x2 stride-2 window is pool_2x2_blocked16_row, the
 * others a loop over the window with branch-free selects across the 16 lanes
 * (float or bf16 values, compared as floats, the winner's bits copied). */
template <class T>
void forward_blocked16(const BlockedPool& pool, const T* x, T* y, int32_t* argmax) {
  const int64_t h = pool.h, w = pool.w, out_h = pool.out_h, out_w = pool.out_w;
  const int64_t k = pool.kernel_size, s = pool.stride, p = pool.padding;
  const int64_t unit_in = h * w * kBlock, unit_out = out_h * out_w * kBlock;
  if (k == 2 && s == 2 && p == 0) {
    parallel_for(pool.units, pool.units * unit_in, [&](int64_t unit) {
      const T* src = x + unit * unit_in;
      for (int64_t oh = 0; oh < out_h; ++oh) {
        const int64_t out = unit * unit_out + oh * out_w * kBlock;
        pool_2x2_blocked16_row(
            src + 2 * oh * w * kBlock, src + (2 * oh + 1) * w * kBlock, out_w,
            static_cast<int32_t>(2 * oh * w), static_cast<int32_t>(w), y + out, argmax + out);
      }
    });
    return;
  }
  parallel_for(pool.units, pool.units * unit_in, [&](int64_t unit) {
    const T* src = x + unit * unit_in;
    for (int64_t oh = 0; oh < out_h; ++oh)
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const int64_t h0 = oh * s - p, w0 = ow * s - p;
        float best[kBlock];
        T best_bits[kBlock];
        int32_t at[kBlock];
        for (int64_t l = 0; l < kBlock; ++l) {
          best[l] = -std::numeric_limits<float>::infinity();
          best_bits[l] = T{};
          at[l] = -1;
        }
        for (int64_t ih = std::max<int64_t>(h0, 0); ih < std::min(h0 + k, h); ++ih)
          for (int64_t iw = std::max<int64_t>(w0, 0); iw < std::min(w0 + k, w); ++iw) {
            const T* v = src + (ih * w + iw) * kBlock;
            const int32_t index = static_cast<int32_t>(ih * w + iw);
            // Larger wins, or a NaN over a number (a NaN best stays: the
            // first NaN is final), or anything over nothing yet. Without the
            // pragma GCC unrolls the lanes into branches, 7x slower (3x3 s2 p1).
#pragma omp simd
            for (int64_t l = 0; l < kBlock; ++l) {
              const float value = widen(v[l]);
              const bool take =
                  value > best[l] || (std::isnan(value) && !std::isnan(best[l])) || at[l] < 0;
              best[l] = take ? value : best[l];
              best_bits[l] = take ? v[l] : best_bits[l];
              at[l] = take ? index : at[l];
            }
          }
        const int64_t out = unit * unit_out + (oh * out_w + ow) * kBlock;
        for (int64_t l = 0; l < kBlock; ++l) {
          y[out + l] = best_bits[l];
          argmax[out + l] = at[l];
        }
      }
  });
}

/* Backward on nChw16c: dx = 0, then dx[u, argmax, l] += dy[u, oh, ow, l] for
 * each output position and lane. One task per unit. The 2x2 stride-2 window
 * covers each input position at most once, so there the kernels' row writes
 * every covered position with a select instead (see max_pool2d.hpp), and only
 * a last odd row and column are zeroed: one pass over dx, no branches. */
template <class T>
void backward_blocked16(const BlockedPool& pool, const T* dy, T* dx, const int32_t* argmax) {
  const int64_t h = pool.h, w = pool.w, out_h = pool.out_h, out_w = pool.out_w;
  const int64_t unit_in = h * w * kBlock, unit_out = out_h * out_w * kBlock;
  if constexpr (std::is_same_v<T, float>) if (pool.kernel_size == 2 && pool.stride == 2 && pool.padding == 0) {
    parallel_for(pool.units, pool.units * unit_in, [&](int64_t unit) {
      float* dst = dx + unit * unit_in;
      for (int64_t oh = 0; oh < out_h; ++oh) {
        const int64_t out = unit * unit_out + oh * out_w * kBlock;
        float* row0 = dst + 2 * oh * w * kBlock;
        float* row1 = row0 + w * kBlock;
        kernels::max_pool_2x2_blocked16_row_backward(dy + out, argmax + out, out_w,
                                                   static_cast<int32_t>(2 * oh * w),
                                                   static_cast<int32_t>(w), row0, row1);
        if (w > 2 * out_w) {  // the last column, no window's
          std::memset(row0 + (w - 1) * kBlock, 0, sizeof(float) * kBlock);
          std::memset(row1 + (w - 1) * kBlock, 0, sizeof(float) * kBlock);
        }
      }
      if (h > 2 * out_h)  // the last row, no window's
        std::memset(dst + 2 * out_h * w * kBlock, 0,
                    sizeof(float) * static_cast<size_t>(w * kBlock));
    });
    return;
  }
  parallel_for(pool.units, pool.units * unit_in, [&](int64_t unit) {
    T* dst = dx + unit * unit_in;
    std::memset(dst, 0, sizeof(T) * static_cast<size_t>(unit_in));
    const T* grad = dy + unit * unit_out;
    const int32_t* winner = argmax + unit * unit_out;
    for (int64_t o = 0; o < unit_out; o += kBlock)
      for (int64_t l = 0; l < kBlock; ++l)
        if (winner[o + l] >= 0) add_grad(dst[winner[o + l] * kBlock + l], grad[o + l]);
  });
}

/* The plain (NCHW) window loop, one task per (i, c) plane, float or bf16
 * values compared as floats, the winner's bits copied. */
template <class T>
void forward_plain(const MaxPool2d& m, int64_t planes, int64_t h, int64_t w, int64_t out_h,
                   int64_t out_w, const T* x, T* y, int32_t* argmax) {
  const int64_t kernel_size = m.kernel_size, stride = m.stride, padding = m.padding;
  parallel_for(planes, planes * h * w, [&](int64_t plane) {
    const T* src = x + plane * h * w;
    for (int64_t oh = 0; oh < out_h; ++oh)
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const int64_t h0 = oh * stride - padding, w0 = ow * stride - padding;
        float best = -std::numeric_limits<float>::infinity();
        T best_bits{};
        int64_t best_index = -1;
        bool found_nan = false;  // the first NaN is final
        for (int64_t ih = std::max<int64_t>(h0, 0); ih < std::min(h0 + kernel_size, h) && !found_nan; ++ih)
          for (int64_t iw = std::max<int64_t>(w0, 0); iw < std::min(w0 + kernel_size, w) && !found_nan; ++iw) {
            const float v = widen(src[ih * w + iw]);
            if (v > best || std::isnan(v) || best_index < 0) {
              best = v;
              best_bits = src[ih * w + iw];
              best_index = ih * w + iw;
              found_nan = std::isnan(v);
            }
          }
        const int64_t out_index = plane * out_h * out_w + oh * out_w + ow;
        y[out_index] = best_bits;
        argmax[out_index] = static_cast<int32_t>(best_index);
      }
  });
}

template <class T>
void backward_plain(int64_t planes, int64_t plane_in, int64_t plane_out, const T* dy, T* dx,
                    const int32_t* argmax) {
  parallel_for(planes, planes * plane_in, [&](int64_t plane) {
    T* dst = dx + plane * plane_in;
    std::memset(dst, 0, sizeof(T) * static_cast<size_t>(plane_in));
    for (int64_t p = 0; p < plane_out; ++p) {
      const int32_t at = argmax[plane * plane_out + p];
      if (at >= 0) add_grad(dst[at], dy[plane * plane_out + p]);
    }
  });
}

}  // namespace

const Tensor& MaxPool2d::forward(const Tensor& input) {
  return forward_formatted(input, MemoryFormat::plain, MemoryFormat::plain);
}

/* Forward. y[i, c, oh, ow] = max over the window of x[i, c, oh*s - p + kh, ow*s - p + kw];
 * argmax (the index in the input plane of the winner) is kept for backward.
 * One task per (i, c) plane; nChw16c (in == out): forward_blocked16 above. */
const Tensor& MaxPool2d::forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) {
  check_kept_format(input.shape(), in, out);
  if (input.shape() != input_shape_) {
    const Shape out_shape = output_shape(input.shape());
    if (input.size(2) * input.size(3) > std::numeric_limits<int32_t>::max())
      throw Error(repr() + ": input plane " + shape_string(input.shape()) + " is too large");
    output_.resize(out_shape);
    input_shape_ = input.shape();
  }
  const int64_t planes = output_.size(0) * output_.size(1);
  const int64_t h = input_shape_[2], w = input_shape_[3];
  const int64_t out_h = output_.size(2), out_w = output_.size(3);
  argmax_.resize(static_cast<size_t>(output_.numel()));
  format_ = in;
  int32_t* argmax = argmax_.data();
  if (is_bf16(format_)) {
    if (is_blocked16(format_))
      forward_blocked16(blocked_pool(*this, input_shape_, output_.shape()), bf16_data(input),
                        bf16_data(output_), argmax);
    else
      forward_plain(*this, planes, h, w, out_h, out_w, bf16_data(input), bf16_data(output_), argmax);
    return output_;
  }
  const float* x = input.data();
  float* y = output_.data();
  if (format_ == MemoryFormat::blocked16) {
    forward_blocked16(blocked_pool(*this, input_shape_, output_.shape()), x, y, argmax);
    return output_;
  }
  if (kernel_size == 2 && stride == 2 && padding == 0) {
    // The common 2x2 window without padding: the vector row loop of
    // src/kernels/max_pool2d.cpp, the same first-maximum and first-NaN rule.
    parallel_for(planes, input.numel(), [&](int64_t plane) {
      const float* src = x + plane * h * w;
      for (int64_t oh = 0; oh < out_h; ++oh) {
        const int64_t out = plane * out_h * out_w + oh * out_w;
        kernels::max_pool_2x2_row(src + 2 * oh * w, src + (2 * oh + 1) * w, out_w,
                                  static_cast<int32_t>(2 * oh * w), static_cast<int32_t>(w),
                                  y + out, argmax + out);
      }
    });
    return output_;
  }
  forward_plain(*this, planes, h, w, out_h, out_w, x, y, argmax);
  return output_;
}

/* Backward. dx = 0, then dx[i, c, argmax] += dy[i, c, oh, ow] for each output;
 * dy and dx in the last forward's format. */
const Tensor& MaxPool2d::backward(const Tensor& grad_output) {
  if (grad_output.shape() != output_.shape())
    throw Error(repr() + ": grad_output shape " + shape_string(grad_output.shape()) +
                " does not match the output " + shape_string(output_.shape()));
  grad_input_.resize(input_shape_);
  const int64_t plane_in = input_shape_[2] * input_shape_[3];
  const int64_t plane_out = output_.size(2) * output_.size(3);
  const int64_t planes = output_.size(0) * output_.size(1);
  const int32_t* argmax = argmax_.data();
  if (is_bf16(format_)) {
    if (is_blocked16(format_))
      backward_blocked16(blocked_pool(*this, input_shape_, output_.shape()),
                         bf16_data(grad_output), bf16_data(grad_input_), argmax);
    else
      backward_plain(planes, plane_in, plane_out, bf16_data(grad_output), bf16_data(grad_input_),
                     argmax);
    return grad_input_;
  }
  const float* dy = grad_output.data();
  float* dx = grad_input_.data();
  if (format_ == MemoryFormat::blocked16) {
    backward_blocked16(blocked_pool(*this, input_shape_, output_.shape()), dy, dx, argmax);
    return grad_input_;
  }
  backward_plain(planes, plane_in, plane_out, dy, dx, argmax);
  return grad_input_;
}

std::string MaxPool2d::repr() const {
  return "MaxPool2d(kernel_size=" + std::to_string(kernel_size) +
         ", stride=" + std::to_string(stride) + ", padding=" + std::to_string(padding) +
         ", dilation=1, ceil_mode=False)";
}

}  // namespace bnlab::nn
