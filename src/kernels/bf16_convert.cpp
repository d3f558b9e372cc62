// The plain bf16 conversions, the choice among the variants, and the public
// conversion functions (bnlab/batch_norm_bf16.hpp).
#include "kernels/bf16_convert.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "bnlab/batch_norm_bf16.hpp"
#include "bnlab/error.hpp"

namespace bnlab {
namespace kernels {
namespace {

void plain_to_float(const uint16_t* in, float* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = bf16_to_float(in[i]);
}

void plain_from_float(const float* in, uint16_t* out, int64_t count) {
  for (int64_t i = 0; i < count; ++i) out[i] = float_to_bf16(in[i]);
}

// The fused ReLU's rules (the fp32 kernels'): y below zero becomes zero (NaN
// kept); the gradient passes where the ReLU's output is above zero.
float relu_if(float v, bool relu) { return relu && v < 0.0f ? 0.0f : v; }
float grad_if(const uint16_t* relu_y, int64_t i, float dy) {
  return relu_y == nullptr || bf16_to_float(relu_y[i]) > 0.0f ? dy : 0.0f;
}

void plain_span_normalize(const uint16_t* x, uint16_t* y, int64_t len, float mean, float scale,
                          float shift, bool relu, bool /*stream*/) {
  for (int64_t i = 0; i < len; ++i)
    y[i] = float_to_bf16(relu_if((bf16_to_float(x[i]) - mean) * scale + shift, relu));
}

void plain_rows_normalize(const uint16_t* x, uint16_t* y, int64_t rows, int64_t width,
                          const float* mean, const float* scale, const float* shift, bool relu,
                          bool /*stream*/) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t w = 0; w < width; ++w)
      y[r * width + w] = float_to_bf16(
          relu_if((bf16_to_float(x[r * width + w]) - mean[w]) * scale[w] + shift[w], relu));
}

void plain_rows_grad_input(const uint16_t* x, const uint16_t* dy, const uint16_t* relu_y,
                           uint16_t* dx, int64_t rows, int64_t width, const float* mean,
                           const float* a, const float* b, const float* c, bool /*stream*/) {
  for (int64_t e = 0; e < rows * width; ++e) {
    const int64_t w = e % width;
    const float g = grad_if(relu_y, e, bf16_to_float(dy[e]));
    dx[e] = float_to_bf16(a[w] * g + b[w] * (bf16_to_float(x[e]) - mean[w]) + c[w]);
  }
}

void plain_span_grad_input(const uint16_t* x, const uint16_t* dy, const uint16_t* relu_y,
                           uint16_t* dx, int64_t len, float mean, float a, float b, float c,
                           bool stream) {
  plain_rows_grad_input(x, dy, relu_y, dx, len, 1, &mean, &a, &b, &c, stream);  // one column
}

// Per column, in float blocks of 256 rows added in double (the vector loops' blocks).
void plain_rows_grad_sums(const uint16_t* x, const uint16_t* dy, const uint16_t* relu_y,
                          int64_t rows, int64_t width, const float* mean, double* sum_dy,
                          double* sum_dy_xmu) {
  for (int64_t w = 0; w < width; ++w)
    for (int64_t r0 = 0; r0 < rows; r0 += 256) {
      float s = 0.0f, sx = 0.0f;
      for (int64_t r = r0; r < std::min(rows, r0 + 256); ++r) {
        const int64_t i = r * width + w;
        const float g = grad_if(relu_y, i, bf16_to_float(dy[i]));
        s += g;
        sx += g * (bf16_to_float(x[i]) - mean[w]);
      }
      sum_dy[w] += s;
      sum_dy_xmu[w] += sx;
    }
}

void plain_span_grad_sums(const uint16_t* x, const uint16_t* dy, const uint16_t* relu_y,
                          int64_t len, float mean, double* sum_dy, double* sum_dy_xmu) {
  plain_rows_grad_sums(x, dy, relu_y, len, 1, &mean, sum_dy, sum_dy_xmu);  // a span: one column
}

// Per column, blocks of 256 rows: the mean, then the deviations, in double.
void plain_rows_moments(const uint16_t* x, int64_t rows, int64_t width, Moments* out) {
  for (int64_t w = 0; w < width; ++w)
    for (int64_t r0 = 0; r0 < rows; r0 += 256) {
      const int64_t n = std::min<int64_t>(256, rows - r0);
      double sum = 0.0, m2 = 0.0;
      for (int64_t r = r0; r < r0 + n; ++r) sum += bf16_to_float(x[r * width + w]);
      const double mean = sum / n;
      for (int64_t r = r0; r < r0 + n; ++r) {
        const double d = bf16_to_float(x[r * width + w]) - mean;
        m2 += d * d;
      }
      out[w].merge({static_cast<double>(n), mean, m2});
    }
}

Moments plain_span_moments(const uint16_t* x, int64_t len) {
  Moments m;
  plain_rows_moments(x, len, 1, &m);  // a span: one column
  return m;
}

const Bf16Conversions kPlain{"plain",
                             plain_to_float,
                             plain_from_float,
                             plain_span_normalize,
                             plain_rows_normalize,
                             plain_span_grad_input,
                             plain_rows_grad_input,
                             plain_span_grad_sums,
                             plain_rows_grad_sums,
                             plain_span_moments,
                             plain_rows_moments};

std::atomic<const Bf16Conversions*> g_conversions{nullptr};

const Bf16Conversions* best_conversions() {
  if (const Bf16Conversions* native = native_bf16_conversions()) return native;
  return simd_bf16_variant_count() > 0 ? simd_bf16_conversions(0) : &kPlain;
}

}  // namespace

const Bf16Conversions* plain_bf16_conversions() { return &kPlain; }

const Bf16Conversions& bf16_conversions() {
  const Bf16Conversions* v = g_conversions.load(std::memory_order_acquire);
  if (v == nullptr) {
    v = best_conversions();
    g_conversions.store(v, std::memory_order_release);
  }
  return *v;
}

}  // namespace kernels

// Round to nearest even on the float's bits: adding 0x7fff plus the kept
// part's lowest bit carries into the kept half exactly when the dropped half
// is above one half, or equal to it with an odd kept half.
uint16_t float_to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7f800000u) == 0) return static_cast<uint16_t>((bits >> 16) & 0x8000u);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

void floats_to_bf16(const float* in, uint16_t* out, int64_t count) {
  kernels::bf16_conversions().from_float(in, out, count);
}

void bf16_to_floats(const uint16_t* in, float* out, int64_t count) {
  kernels::bf16_conversions().to_float(in, out, count);
}

std::string bf16_conversion_variant() { return kernels::bf16_conversions().name; }

std::string bf16_conversion_variants() {
  using namespace kernels;
  std::string out = "auto";
  if (const Bf16Conversions* native = native_bf16_conversions()) out += std::string(",") + native->name;
  for (int i = 0; i < simd_bf16_variant_count(); ++i)
    out += std::string(",") + simd_bf16_conversions(i)->name;
  return out + ",plain";
}

void set_bf16_conversion_variant(const std::string& name) {
  using namespace kernels;
  if (name == "auto") return g_conversions.store(best_conversions());
  if (name == "plain") return g_conversions.store(&kPlain);
  const Bf16Conversions* native = native_bf16_conversions();
  if (native != nullptr && name == native->name) return g_conversions.store(native);
  for (int i = 0; i < simd_bf16_variant_count(); ++i)
    if (name == simd_bf16_conversions(i)->name) return g_conversions.store(simd_bf16_conversions(i));
  throw Error("unknown bf16 conversion variant '" + name +
              "'; this CPU runs: " + bf16_conversion_variants());
}

}  // namespace bnlab
