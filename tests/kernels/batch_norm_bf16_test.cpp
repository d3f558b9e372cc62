// The bf16 kernels (bnlab/batch_norm_bf16.hpp): the conversions' rounding and
// every conversion variant bit for bit; forward, inference and backward in
// every layout against the float64 reference run on the same bf16 inputs
// (widened exactly); a gradient check of the backward; thread-count
// independence; the C API's statuses; PyTorch's own bf16 batch_norm
// (tests/golden/make_batch_norm_bf16_goldens.py).
// Tolerances: a bf16 output o matches its float64 value r when
// |o - r| <= 2^-8 |r| + 1e-5 (one rounding to bf16, half an ulp, plus float
// math); statistics, dweight and dbias as the fp32 kernels' (bn_reference.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "bn_reference.hpp"
#include "bnlab/batch_norm_bf16.hpp"
#include "bnlab/bnlab.h"
#include "bnlab/cpu_info.hpp"
#include "bnlab/error.hpp"
#include "bnlab/threading.hpp"
#include "golden_reader.hpp"

namespace bnlab::test {
namespace {

constexpr double kBf16Rounding = 1.0 / 256.0;  // half an ulp of bf16, relative

uint32_t bits_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}
float from_bits(uint32_t b) {
  float v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = float_to_bf16(v[i]);
  return out;
}
std::vector<float> widen(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_float(v[i]);
  return out;
}

// Each bf16 output within one rounding (plus `slack` ulps) of its float64 value.
::testing::AssertionResult bf16_close(const std::string& what, const std::vector<uint16_t>& got,
                                      const std::vector<double>& want, double ulps = 1.0) {
  std::vector<float> wide = widen(got);
  int64_t bad = 0;
  std::string first;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::fabs(static_cast<double>(wide[i]) - want[i]);
    if (!(err <= ulps * kBf16Rounding * std::fabs(want[i]) + 1e-5)) {
      if (bad++ < 3)
        first += " [" + std::to_string(i) + "] got " + std::to_string(wide[i]) + " want " +
                 std::to_string(want[i]) + ";";
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << want.size()
                                       << " off;" << first;
}

TEST(Bf16Conversion, RoundsToNearestEvenAndKeepsNaN) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(from_bits(0x3f808000)), 0x3f80);  // tie, even kept
  EXPECT_EQ(float_to_bf16(from_bits(0x3f818000)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(float_to_bf16(from_bits(0x3f808001)), 0x3f81);  // above the tie
  EXPECT_EQ(float_to_bf16(from_bits(0x3f807fff)), 0x3f80);  // below the tie
  EXPECT_EQ(float_to_bf16(-2.5f), 0xc020);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds past the top
  EXPECT_EQ(float_to_bf16(from_bits(0x80000001)), 0x8000);             // denormal: signed zero
  const uint16_t nan = float_to_bf16(from_bits(0x7f800001));  // signalling NaN, payload low
  EXPECT_TRUE(std::isnan(bf16_to_float(nan)));
  EXPECT_EQ(bf16_to_float(0x4049), 3.140625f);
}

TEST(Bf16Conversion, EveryVariantGivesThePlainBits) {
  std::mt19937 rng(7);
  std::vector<float> in(1037);  // not a multiple of any vector width: the tails run too
  for (float& v : in) v = from_bits(rng());
  const float specials[] = {0.0f, -0.0f, 1.0f, from_bits(0x3f808000), from_bits(0x3f818000),
                            from_bits(0x00000001), from_bits(0x807fffff),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::quiet_NaN(), from_bits(0x7f800001),
                            std::numeric_limits<float>::max()};
  std::copy(std::begin(specials), std::end(specials), in.begin());
  const std::vector<uint16_t> want = to_bf16(in);
  for (const std::string& name : split_commas(bf16_conversion_variants())) {
    set_bf16_conversion_variant(name);
    std::vector<uint16_t> got(in.size());
    floats_to_bf16(in.data(), got.data(), static_cast<int64_t>(in.size()));
    std::vector<float> back(in.size());
    bf16_to_floats(want.data(), back.data(), static_cast<int64_t>(in.size()));
    for (size_t i = 0; i < in.size(); ++i) {
      ASSERT_EQ(got[i], want[i]) << name << " at " << i << " (float bits " << bits_of(in[i]) << ")";
      ASSERT_EQ(bits_of(back[i]), static_cast<uint32_t>(want[i]) << 16) << name << " at " << i;
    }
  }
  set_bf16_conversion_variant("auto");
  EXPECT_THROW(set_bf16_conversion_variant("nope"), Error);
}

// Shapes that reach each way the kernels cut a tensor: several samples per
// piece, channels of one sample, rows of one channel group.
std::vector<BatchNormShape> bf16_shapes() {
  const int64_t dims[][3] = {{8, 5, 1}, {40, 32, 1}, {4, 3, 70}, {3, 32, 9}, {2, 48, 1500}, {1, 16, 5000}, {2, 2, 40000}};
  std::vector<BatchNormShape> shapes;
  for (const auto& d : dims)
    for (Layout layout : layouts_for(d[1])) shapes.push_back({d[0], d[1], d[2], layout});
  return shapes;
}

class Bf16Kernels : public ::testing::TestWithParam<BatchNormShape> {};

TEST_P(Bf16Kernels, TrainingMatchesFloat64OnTheSameInputs) {
  const BatchNormShape sh = GetParam();
  const std::vector<uint16_t> x = to_bf16(channel_data(sh, 11));
  const std::vector<float> weight = random_vector(sh.c, 12, 1.0f, 0.5f);
  const std::vector<float> bias = random_vector(sh.c, 13);
  std::vector<float> running_mean(sh.c, 0.5f), running_var(sh.c, 2.0f), save_mean(sh.c),
      save_invstd(sh.c);
  std::vector<uint16_t> y(x.size());
  const double eps = 1e-5, momentum = 0.1;
  ASSERT_EQ(batch_norm_forward_training_bf16(x.data(), sh, weight.data(), bias.data(),
                                             {running_mean.data(), running_var.data(), momentum,
                                              true},
                                             eps, y.data(), save_mean.data(), save_invstd.data()),
            BatchNormStatus::ok);
  const ReferenceForward r =
      reference_forward_training(widen(x), sh, weight.data(), bias.data(), eps);
  EXPECT_TRUE(bf16_close("y " + describe(sh), y, r.y));
  EXPECT_TRUE(all_close("save_mean", save_mean.data(), r.mean, kTolerance));
  EXPECT_TRUE(all_close("save_invstd", save_invstd.data(), r.invstd, kTolerance));
  const double m = static_cast<double>(sh.per_channel());
  std::vector<double> want_mean(sh.c), want_var(sh.c);
  for (int64_t j = 0; j < sh.c; ++j) {
    want_mean[j] = 0.9 * 0.5 + 0.1 * r.mean[j];
    want_var[j] = 0.9 * 2.0 + 0.1 * r.var[j] * m / (m - 1);
  }
  EXPECT_TRUE(all_close("running_mean", running_mean.data(), want_mean, kTolerance));
  EXPECT_TRUE(all_close("running_var", running_var.data(), want_var, kTolerance));
}

TEST_P(Bf16Kernels, InferenceMatchesFloat64OnTheSameInputs) {
  const BatchNormShape sh = GetParam();
  const std::vector<uint16_t> x = to_bf16(channel_data(sh, 21));
  const std::vector<float> weight = random_vector(sh.c, 22, 1.0f, 0.5f);
  const std::vector<float> bias = random_vector(sh.c, 23);
  const std::vector<float> mean = random_vector(sh.c, 24);
  std::vector<float> var = random_vector(sh.c, 25);
  for (float& v : var) v = std::fabs(v) + 0.2f;
  std::vector<uint16_t> y(x.size());
  batch_norm_forward_inference_bf16(x.data(), sh, weight.data(), bias.data(), mean.data(),
                                    var.data(), 1e-3, y.data());
  EXPECT_TRUE(bf16_close("y " + describe(sh), y,
                         reference_forward_inference(widen(x), sh, weight.data(), bias.data(),
                                                     mean.data(), var.data(), 1e-3)));
}

TEST_P(Bf16Kernels, BackwardMatchesFloat64OnTheSameInputs) {
  const BatchNormShape sh = GetParam();
  const std::vector<uint16_t> x = to_bf16(channel_data(sh, 31));
  const std::vector<uint16_t> dy = to_bf16(random_vector(sh.numel(), 32));
  const std::vector<float> weight = random_vector(sh.c, 33, 1.0f, 0.5f);
  std::vector<float> save_mean(sh.c), save_invstd(sh.c), dweight(sh.c), dbias(sh.c);
  std::vector<uint16_t> y(x.size()), dx(x.size());
  batch_norm_forward_training_bf16(x.data(), sh, weight.data(), nullptr, {}, 1e-5, y.data(),
                                   save_mean.data(), save_invstd.data());
  batch_norm_backward_bf16(x.data(), dy.data(), sh, weight.data(), save_mean.data(),
                           save_invstd.data(), dx.data(), dweight.data(), dbias.data());
  const ReferenceBackward r = reference_backward(widen(x), widen(dy), sh, weight.data(),
                                                 save_mean.data(), save_invstd.data());
  EXPECT_TRUE(bf16_close("dx " + describe(sh), dx, r.dx));
  EXPECT_TRUE(all_close("dweight", dweight.data(), r.dweight, kTolerance, &r.dweight_scale));
  EXPECT_TRUE(all_close("dbias", dbias.data(), r.dbias, kTolerance, &r.dbias_scale));
}

TEST_P(Bf16Kernels, ResultsDoNotDependOnTheThreadCount) {
  const BatchNormShape sh = GetParam();
  const std::vector<uint16_t> x = to_bf16(channel_data(sh, 41));
  const std::vector<uint16_t> dy = to_bf16(random_vector(sh.numel(), 42));
  auto run = [&](int threads) {
    set_num_threads(threads);
    std::vector<float> stats(4 * sh.c);
    std::vector<uint16_t> y(x.size()), dx(x.size());
    batch_norm_forward_training_bf16(x.data(), sh, nullptr, nullptr, {}, 1e-5, y.data(),
                                     stats.data(), stats.data() + sh.c);
    batch_norm_backward_bf16(x.data(), dy.data(), sh, nullptr, stats.data(), stats.data() + sh.c,
                             dx.data(), stats.data() + 2 * sh.c, stats.data() + 3 * sh.c);
    set_num_threads(0);
    return std::make_tuple(y, dx, stats);
  };
  EXPECT_TRUE(run(1) == run(2)) << describe(sh);
}

std::string shape_name(const ::testing::TestParamInfo<BatchNormShape>& info) {
  const BatchNormShape& sh = info.param;
  std::string name = "n";
  name += std::to_string(sh.n) + "c" + std::to_string(sh.c) + "s" + std::to_string(sh.s);
  name += '_';
  name += layout_name(sh.layout);
  return name;
}

INSTANTIATE_TEST_SUITE_P(Shapes, Bf16Kernels, ::testing::ValuesIn(bf16_shapes()), shape_name);

// Each conversion variant (its rounding, its in-register normalize, gradient
// sums and gradient input) on the shapes whose pieces take the register path: spans,
// channels-last rows (300 of them: two float blocks, the second partial), blocked16
// units, and a channels-last row too narrow; rows of 4, 12 and 16 vectors on
// AVX-512 (moments row by row: in registers, in L1 arrays, in two register walks).
TEST(Bf16Kernels, EveryConversionVariantMatchesFloat64) {
  const BatchNormShape shapes[] = {
      {4, 3, 70, Layout::channels_first},  {3, 32, 9, Layout::channels_last},
      {3, 32, 100, Layout::channels_last}, {3, 32, 9, Layout::blocked16},
      {5, 3, 7, Layout::channels_last},    {3, 64, 100, Layout::channels_last},
      {2, 192, 37, Layout::channels_last}, {2, 256, 300, Layout::channels_last}};
  for (const std::string& name : split_commas(bf16_conversion_variants())) {
    set_bf16_conversion_variant(name);
    for (const BatchNormShape& sh : shapes) {
      const std::vector<uint16_t> x = to_bf16(channel_data(sh, 71));
      const std::vector<float> weight = random_vector(sh.c, 72, 1.0f, 0.5f);
      const std::vector<float> bias = random_vector(sh.c, 73);
      const std::vector<uint16_t> dy = to_bf16(random_vector(sh.numel(), 74));
      std::vector<uint16_t> y(x.size()), dx(x.size());
      std::vector<float> mean(sh.c), invstd(sh.c);
      batch_norm_forward_training_bf16(x.data(), sh, weight.data(), bias.data(), {}, 1e-5,
                                       y.data(), mean.data(), invstd.data());
      EXPECT_TRUE(bf16_close(name + " y " + describe(sh), y,
                             reference_forward_training(widen(x), sh, weight.data(), bias.data(),
                                                        1e-5)
                                 .y));
      std::vector<float> dweight(sh.c), dbias(sh.c);
      batch_norm_backward_bf16(x.data(), dy.data(), sh, weight.data(), mean.data(), invstd.data(),
                               dx.data(), dweight.data(), dbias.data());
      const ReferenceBackward r = reference_backward(widen(x), widen(dy), sh, weight.data(),
                                                     mean.data(), invstd.data());
      EXPECT_TRUE(bf16_close(name + " dx " + describe(sh), dx, r.dx));
      EXPECT_TRUE(all_close(name + " dweight", dweight.data(), r.dweight, kTolerance,
                            &r.dweight_scale));
      EXPECT_TRUE(all_close(name + " dbias", dbias.data(), r.dbias, kTolerance, &r.dbias_scale));
    }
  }
  set_bf16_conversion_variant("auto");
}

// The outputs (training y, inference y, dx) of every vector variant, with the
// outputs streamed (an LLC of 16 KiB, so that every output overflows it) or
// not, at byte offsets 0, 2 and 16 from a 64-byte boundary (numpy gives 16),
// are the bits of the same variant's on aligned buffers, and AVX512-BF16's
// are the best Highway variant's. The plain variant is held to float64 above.
TEST(Bf16Kernels, StreamedAndUnalignedOutputsKeepTheirBits) {
  const BatchNormShape shapes[] = {{3, 32, 100, Layout::channels_first},
                                   {3, 32, 100, Layout::channels_last},
                                   {3, 48, 37, Layout::channels_last},
                                   {3, 32, 100, Layout::blocked16},
                                   {200, 48, 1, Layout::channels_first},  // (N, C): taken as rows
                                   // short spans, many of whose values move between the
                                   // scalar head and the vectors with the offset: scalar
                                   // code rounding a*b + c unlike the vectors would show
                                   {8000, 16, 17, Layout::channels_first}};
  std::vector<std::string> variants;
  for (const std::string& name : split_commas(bf16_conversion_variants()))
    if (name != "auto" && name != "plain") variants.push_back(name);
  if (variants.empty()) GTEST_SKIP() << "no vector variant on this CPU";
  struct Outputs {
    std::vector<uint16_t> train, infer, dx;
  };
  // A buffer of `count` values `offset` values past a 64-byte boundary.
  const auto placed = [](std::vector<uint16_t>& storage, int64_t count, int64_t offset) {
    storage.assign(static_cast<size_t>(count + 64), 0);
    const auto at = reinterpret_cast<uintptr_t>(storage.data());
    return storage.data() + (64 - at % 64) % 64 / sizeof(uint16_t) + offset;
  };
  for (const BatchNormShape& sh : shapes) {
    const int64_t count = sh.numel();
    const std::vector<uint16_t> x = to_bf16(channel_data(sh, 81));
    const std::vector<uint16_t> dy = to_bf16(random_vector(count, 82));
    const std::vector<float> weight = random_vector(sh.c, 83, 1.0f, 0.5f);
    const std::vector<float> bias = random_vector(sh.c, 84);
    const std::vector<float> running_var = random_vector(sh.c, 85, 1.0f, 0.2f);
    const auto run = [&](const std::string& variant, bool stream, int64_t offset) {
      set_bf16_conversion_variant(variant);
      set_cache_sizes({0, 0, stream ? int64_t{16} << 10 : int64_t{1} << 30});
      std::vector<uint16_t> sx, sdy, sy;
      uint16_t* px = placed(sx, count, offset);
      uint16_t* pdy = placed(sdy, count, offset);
      uint16_t* py = placed(sy, count, offset);
      std::copy(x.begin(), x.end(), px);
      std::copy(dy.begin(), dy.end(), pdy);
      std::vector<float> mean(sh.c), invstd(sh.c), dweight(sh.c), dbias(sh.c);
      Outputs out;
      batch_norm_forward_training_bf16(px, sh, weight.data(), bias.data(), {}, 1e-5, py,
                                       mean.data(), invstd.data());
      out.train.assign(py, py + count);
      batch_norm_forward_inference_bf16(px, sh, weight.data(), bias.data(), bias.data(),
                                        running_var.data(), 1e-5, py);
      out.infer.assign(py, py + count);
      batch_norm_backward_bf16(px, pdy, sh, weight.data(), mean.data(), invstd.data(), py,
                               dweight.data(), dbias.data());
      out.dx.assign(py, py + count);
      return out;
    };
    for (const std::string& variant : variants) {
      // Variants without FMA (SSE4) round a*b + c twice: each against its own
      // aligned run; AVX512-BF16's against the best Highway variant's.
      const Outputs want = run(variant == "avx512_bf16" && variants.size() > 1 ? variants[1]
                                                                                : variant,
                               false, 0);
      for (bool stream : {false, true})
        for (int64_t offset : {0, 1, 8}) {
          const Outputs got = run(variant, stream, offset);
          const std::string what = variant + (stream ? " streamed" : "") + " offset " +
                                   std::to_string(2 * offset) + " bytes " + describe(sh);
          EXPECT_EQ(got.train, want.train) << what << ": training y";
          EXPECT_EQ(got.infer, want.infer) << what << ": inference y";
          EXPECT_EQ(got.dx, want.dx) << what << ": dx";
        }
    }
  }
  set_cache_sizes({});
  set_bf16_conversion_variant("auto");
}

// The fused ReLU, in every variant and on every path (register runs, the
// float buffer of short runs, streamed outputs): the forward gives the unfused
// output with its values below zero made zero (compared as floats: a value
// rounding to -0 may come out +0), and the backward gives the bits of the
// unfused backward on dy zeroed where y <= 0.
TEST(Bf16Kernels, FusedReluIsTheUnfusedKernelThenReLU) {
  const BatchNormShape shapes[] = {{3, 32, 100, Layout::channels_first},
                                   {4, 3, 5, Layout::channels_first},
                                   {3, 48, 37, Layout::channels_last},
                                   {5, 3, 7, Layout::channels_last},
                                   {3, 32, 100, Layout::blocked16},
                                   {200, 48, 1, Layout::channels_first}};
  for (const std::string& name : split_commas(bf16_conversion_variants())) {
    set_bf16_conversion_variant(name);
    for (bool stream : {false, true}) {
      set_cache_sizes({0, 0, stream ? int64_t{16} << 10 : int64_t{1} << 30});
      for (const BatchNormShape& sh : shapes) {
        const std::string what = name + (stream ? " streamed " : " ") + describe(sh);
        const std::vector<uint16_t> x = to_bf16(channel_data(sh, 91));
        const std::vector<uint16_t> dy = to_bf16(random_vector(sh.numel(), 92));
        const std::vector<float> weight = random_vector(sh.c, 93, 1.0f, 0.5f);
        const std::vector<float> bias = random_vector(sh.c, 94);
        const std::vector<float> running_var = random_vector(sh.c, 95, 1.0f, 0.2f);
        std::vector<uint16_t> plain(x.size()), fused(x.size());
        std::vector<float> mean(sh.c), invstd(sh.c);
        const auto relu_of = [](const std::vector<uint16_t>& y) {
          std::vector<float> out = widen(y);
          for (float& v : out) v = v < 0.0f ? 0.0f : v;
          return out;
        };
        batch_norm_forward_training_bf16(x.data(), sh, weight.data(), bias.data(), {}, 1e-5,
                                         plain.data(), mean.data(), invstd.data());
        batch_norm_forward_training_bf16(x.data(), sh, weight.data(), bias.data(), {}, 1e-5,
                                         fused.data(), mean.data(), invstd.data(),
                                         Activation::relu);
        EXPECT_EQ(widen(fused), relu_of(plain)) << what << ": training";
        std::vector<uint16_t> plain_eval(x.size()), fused_eval(x.size());
        batch_norm_forward_inference_bf16(x.data(), sh, weight.data(), bias.data(), bias.data(),
                                          running_var.data(), 1e-5, plain_eval.data());
        batch_norm_forward_inference_bf16(x.data(), sh, weight.data(), bias.data(), bias.data(),
                                          running_var.data(), 1e-5, fused_eval.data(),
                                          Activation::relu);
        EXPECT_EQ(widen(fused_eval), relu_of(plain_eval)) << what << ": inference";
        std::vector<uint16_t> masked = dy;
        for (size_t i = 0; i < masked.size(); ++i)
          if (!(bf16_to_float(fused[i]) > 0.0f)) masked[i] = 0;
        std::vector<uint16_t> dx_want(x.size()), dx_got(x.size());
        std::vector<float> dw_want(sh.c), db_want(sh.c), dw_got(sh.c), db_got(sh.c);
        batch_norm_backward_bf16(x.data(), masked.data(), sh, weight.data(), mean.data(),
                                 invstd.data(), dx_want.data(), dw_want.data(), db_want.data());
        batch_norm_backward_bf16(x.data(), dy.data(), sh, weight.data(), mean.data(),
                                 invstd.data(), dx_got.data(), dw_got.data(), db_got.data(),
                                 Activation::relu, fused.data());
        EXPECT_EQ(dx_got, dx_want) << what << ": dx";
        EXPECT_EQ(dw_got, dw_want) << what << ": dweight";
        EXPECT_EQ(db_got, db_want) << what << ": dbias";
      }
    }
  }
  set_cache_sizes({});
  set_bf16_conversion_variant("auto");
  const BatchNormShape sh{2, 16, 4, Layout::channels_first};
  std::vector<uint16_t> x(static_cast<size_t>(sh.numel())), dx(x.size());
  std::vector<float> stat(sh.c, 1.0f);
  EXPECT_THROW(batch_norm_backward_bf16(x.data(), x.data(), sh, nullptr, stat.data(), stat.data(),
                                        dx.data(), nullptr, nullptr, Activation::relu, nullptr),
               Error);
}

// d/dx of L = sum(dy * y(x)) by central differences of the float64 forward,
// against the kernel's dx (bf16) and dweight, dbias (float).
TEST(Bf16Kernels, BackwardMatchesCentralDifferences) {
  for (Layout layout : layouts_for(16)) {
    const BatchNormShape sh{3, 16, 5, layout};
    const std::vector<uint16_t> xb = to_bf16(channel_data(sh, 51));
    const std::vector<uint16_t> dyb = to_bf16(random_vector(sh.numel(), 52));
    const std::vector<float> weight_f = random_vector(sh.c, 53, 1.0f, 0.5f);
    const std::vector<float> bias_f = random_vector(sh.c, 54);
    std::vector<double> x = to_double(widen(xb)), dy = to_double(widen(dyb));
    std::vector<double> weight = to_double(weight_f), bias = to_double(bias_f);
    const auto loss = [&] {
      const ReferenceForward r =
          reference_forward_training(x, sh, weight.data(), bias.data(), 1e-5);
      double sum = 0.0;
      for (size_t e = 0; e < x.size(); ++e) sum += dy[e] * r.y[e];
      return sum;
    };
    const NumericGradients num = numeric_gradients(x, weight, bias, loss);
    std::vector<float> save_mean(sh.c), save_invstd(sh.c), dweight(sh.c), dbias(sh.c);
    std::vector<uint16_t> y(xb.size()), dx(xb.size());
    batch_norm_forward_training_bf16(xb.data(), sh, weight_f.data(), bias_f.data(), {}, 1e-5,
                                     y.data(), save_mean.data(), save_invstd.data());
    batch_norm_backward_bf16(xb.data(), dyb.data(), sh, weight_f.data(), save_mean.data(),
                             save_invstd.data(), dx.data(), dweight.data(), dbias.data());
    EXPECT_TRUE(bf16_close("dx " + describe(sh), dx, num.dx));
    EXPECT_TRUE(all_close("dweight", dweight.data(), num.dweight, 1e-4));
    EXPECT_TRUE(all_close("dbias", dbias.data(), num.dbias, 1e-4));
  }
}

TEST(Bf16CApi, StatusesAndMessagesAreTheFloatKernels) {
  std::vector<uint16_t> x = to_bf16(random_vector(2 * 3 * 4, 61)), y(x.size());
  std::vector<float> rm(3, 0.25f), rv(3, 4.0f), mean(3), invstd(3);
  EXPECT_EQ(bnlab_batch_norm_forward_training_bf16(nullptr, 2, 3, 4, BNLAB_CHANNELS_FIRST, nullptr,
                                                   nullptr, nullptr, nullptr, 0.1, 1, 1e-5,
                                                   y.data(), nullptr, nullptr),
            BNLAB_INVALID_ARGUMENT);
  EXPECT_STREQ(bnlab_last_error(), "x must not be null");
  EXPECT_EQ(bnlab_batch_norm_forward_training_bf16(x.data(), 1, 3, 1, BNLAB_CHANNELS_FIRST,
                                                   nullptr, nullptr, nullptr, nullptr, 0.1, 1,
                                                   1e-5, y.data(), nullptr, nullptr),
            BNLAB_TOO_FEW_VALUES);
  EXPECT_EQ(bnlab_batch_norm_forward_inference_bf16(x.data(), 2, 3, 4, BNLAB_BLOCKED16, nullptr,
                                                    nullptr, rm.data(), rv.data(), 1e-5,
                                                    y.data()),
            BNLAB_INVALID_ARGUMENT);
  EXPECT_NE(std::string(bnlab_last_error()).find("multiple of 16"), std::string::npos);
  EXPECT_EQ(bnlab_batch_norm_backward_bf16(x.data(), x.data(), 2, 3, 4, BNLAB_CHANNELS_LAST,
                                           nullptr, nullptr, invstd.data(), y.data(), nullptr,
                                           nullptr),
            BNLAB_INVALID_ARGUMENT);
  EXPECT_STREQ(bnlab_last_error(), "save_mean must not be null");
  x[5] = float_to_bf16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(bnlab_batch_norm_forward_training_bf16(x.data(), 2, 3, 4, BNLAB_CHANNELS_FIRST,
                                                   nullptr, nullptr, rm.data(), rv.data(), 0.1, 1,
                                                   1e-5, x.data(), mean.data(), invstd.data()),
            BNLAB_NON_FINITE);
  EXPECT_EQ(rm, std::vector<float>(3, 0.25f));  // running statistics untouched
  EXPECT_EQ(rv, std::vector<float>(3, 4.0f));
  EXPECT_TRUE(std::isnan(bf16_to_float(x[5])));  // y aliases x: NaN stays NaN
}

class Bf16Golden : public ::testing::TestWithParam<std::tuple<std::string, Layout>> {};

// PyTorch's bf16 results are rounded from its own float math: one ulp apart
// from bnlab's at most (two roundings of nearly the same value).
TEST_P(Bf16Golden, MatchesPyTorchsBf16BatchNorm) {
  const auto& [name, layout] = GetParam();
  const Golden g = read_golden(name);
  const std::vector<double>& dims = entry(g, "dims");
  BatchNormShape sh{static_cast<int64_t>(dims[0]), static_cast<int64_t>(dims[1]), 1, layout};
  for (size_t d = 2; d < dims.size(); ++d) sh.s *= static_cast<int64_t>(dims[d]);
  const bool training = flag(g, "training"), affine = flag(g, "affine");
  const double eps = entry(g, "eps")[0], momentum = entry(g, "momentum")[0];
  const std::vector<uint16_t> x = to_bf16(to_float(in_layout(entry(g, "x"), sh)));
  const std::vector<float> weight = affine ? to_float(entry(g, "weight")) : std::vector<float>();
  const std::vector<float> bias = affine ? to_float(entry(g, "bias")) : std::vector<float>();
  const float* w = affine ? weight.data() : nullptr;
  const float* b = affine ? bias.data() : nullptr;
  std::vector<float> rm = to_float(entry(g, "running_mean_in"));
  std::vector<float> rv = to_float(entry(g, "running_var_in"));
  std::vector<uint16_t> y(x.size());
  if (!training) {
    batch_norm_forward_inference_bf16(x.data(), sh, w, b, rm.data(), rv.data(), eps, y.data());
    EXPECT_TRUE(bf16_close("y", y, in_layout(entry(g, "y"), sh), 2.0));
    return;
  }
  std::vector<float> save_mean(sh.c), save_invstd(sh.c), dweight(sh.c), dbias(sh.c);
  batch_norm_forward_training_bf16(x.data(), sh, w, b, {rm.data(), rv.data(), momentum, true}, eps,
                                   y.data(), save_mean.data(), save_invstd.data());
  EXPECT_TRUE(bf16_close("y", y, in_layout(entry(g, "y"), sh), 2.0));
  EXPECT_TRUE(all_close("save_mean", save_mean.data(), entry(g, "save_mean"), kTolerance));
  EXPECT_TRUE(all_close("save_invstd", save_invstd.data(), entry(g, "save_invstd"), kTolerance));
  EXPECT_TRUE(all_close("running_mean", rm.data(), entry(g, "running_mean_out"), kTolerance));
  EXPECT_TRUE(all_close("running_var", rv.data(), entry(g, "running_var_out"), kTolerance));
  const std::vector<uint16_t> dy = to_bf16(to_float(in_layout(entry(g, "dy"), sh)));
  std::vector<uint16_t> dx(x.size());
  batch_norm_backward_bf16(x.data(), dy.data(), sh, w, save_mean.data(), save_invstd.data(),
                           dx.data(), dweight.data(), dbias.data());
  EXPECT_TRUE(bf16_close("dx", dx, in_layout(entry(g, "dx"), sh), 2.0));
  if (affine) {
    EXPECT_TRUE(all_close("dweight", dweight.data(), entry(g, "dweight"), 1e-4));
    EXPECT_TRUE(all_close("dbias", dbias.data(), entry(g, "dbias"), 1e-4));
  }
}

std::string golden_name(const ::testing::TestParamInfo<std::tuple<std::string, Layout>>& info) {
  return std::get<0>(info.param) + "_" + layout_name(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(
    PyTorch, Bf16Golden,
    ::testing::Combine(::testing::Values("bf16_train_2d_affine", "bf16_train_4d_affine",
                                         "bf16_train_4d_noaffine_c16", "bf16_eval_4d_affine_c16"),
                       ::testing::Values(Layout::channels_first, Layout::channels_last)),
    golden_name);
// The cases whose c is a multiple of 16, in oneDNN's blocked layout too.
INSTANTIATE_TEST_SUITE_P(
    PyTorchBlocked16, Bf16Golden,
    ::testing::Combine(::testing::Values("bf16_train_4d_noaffine_c16", "bf16_eval_4d_affine_c16"),
                       ::testing::Values(Layout::blocked16)),
    golden_name);

}  // namespace
}  // namespace bnlab::test
