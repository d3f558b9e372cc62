// Shapes large enough to take the multi-threaded paths (and, above 16 MiB, the
// streaming stores and the channel-by-channel backward), for every kernel variant, against the float64 reference;
// and determinism: a fixed thread count gives the same bits every run, and 1
// or 2 threads agree within tolerance.
// Tolerance: |got - ref| <= 1e-5 * (1 + |ref|); channel sums against
// 1e-5 * (1 + sum of |terms|) (see bn_reference.hpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <tuple>

#include "bn_reference.hpp"
#include "bnlab/batch_norm.hpp"
#include "bnlab/threading.hpp"

namespace bnlab::test {
namespace {

struct LargeCase {
  const char* name;
  int64_t n, c, s;
  Layout layout;
  int64_t offset;     // floats added to every data pointer: 1 makes them miss vector alignment
  bool every_kernel;  // false: training forward and plain backward only (the streamed cases)
};

const LargeCase kLargeCases[] = {
    {"ResNetStageChannelsFirst", 8, 64, 3136, Layout::channels_first, 0, true},
    {"ResNetStageChannelsLastMisaligned", 16, 64, 3136, Layout::channels_last, 1,
     true},  // n*s = 50176
    {"ManySamplesFewPositionsChannelsFirst", 8192, 3, 4, Layout::channels_first, 0, true},
    {"ManySamplesChannelsLast", 8192, 5, 1, Layout::channels_last, 0, true},
    {"WideChannelsLast", 8, 520, 64, Layout::channels_last, 0, true},  // 3 column tiles
    // 7x7 maps (s < 64): the rows view of c*s = 25088 columns, 98 tiles.
    {"LastStage7x7ChannelsFirst", 64, 512, 49, Layout::channels_first, 0, true},
    // More than 16 MiB (x and y overflow a 32 MiB LLC): streaming stores. Channels-first rows of odd length
    // start at every alignment, so each peels a different head; the rows view
    // streams only when every row is aligned.
    {"StreamedChannelsFirstOddRowsMisaligned", 4, 32, 32771, Layout::channels_first, 1, false},
    {"StreamedChannelsLast", 4, 32, 36864, Layout::channels_last, 0, false},
    // x alone over 32 MiB (34 MB), 17 channels of 2 x 250001 floats (4 MB of
    // x and dy each, odd rows, misaligned): the channel-by-channel backward.
    {"ByChannelBackwardMisaligned", 2, 17, 250001, Layout::channels_first, 1, false},
    // blocked16 (nChw16c): streamed units; then x over 32 MiB with 4 blocks of
    // 2 x 2 x 65536 x 16 floats (16 MiB of x and dy): the block-by-block backward.
    {"StreamedBlocked16", 4, 16, 65536, Layout::blocked16, 0, false},
    {"ByBlockBackwardBlocked16", 2, 64, 65536, Layout::blocked16, 0, false},
};

BatchNormShape shape_of(const LargeCase& lc) { return {lc.n, lc.c, lc.s, lc.layout}; }

// Inputs and float64 results of one large case, computed once and shared by
// every variant's test.
struct LargeData {
  std::vector<float> x, dy, weight, bias, running_mean, running_var;
  ReferenceForward forward;    // affine, eps 1e-5
  std::vector<double> relu_y;  // max(forward.y, 0)
  std::vector<float> save_mean, save_invstd, relu_y_float;
  ReferenceBackward backward, relu_backward;
  std::vector<double> inference_y;
};

constexpr double kEps = 1e-5;
constexpr double kMomentum = 0.1;

// with_references false: the inputs only (for tests that compare runs).
const LargeData& large_data(const LargeCase& lc, bool with_references = true) {
  static std::map<std::string, std::unique_ptr<LargeData>> cache;
  auto& slot = cache[lc.name];
  if (!slot) {
    slot = std::make_unique<LargeData>();
    LargeData& d = *slot;
    const BatchNormShape sh = shape_of(lc);
    d.x = channel_data(sh, 41);
    d.dy = random_vector(sh.numel(), 42);
    d.weight = random_vector(sh.c, 43, 1.0f, 0.5f);
    d.bias = random_vector(sh.c, 44, 0.0f, 0.5f);
    d.running_mean = random_vector(sh.c, 45);
    d.running_var = random_vector(sh.c, 46, 2.0f, 0.2f);
  }
  LargeData& d = *slot;
  if (!with_references || !d.forward.y.empty()) return d;
  const BatchNormShape sh = shape_of(lc);
  d.forward = reference_forward_training(d.x, sh, d.weight.data(), d.bias.data(), kEps);
  d.relu_y = d.forward.y;
  for (double& v : d.relu_y) v = std::max(v, 0.0);
  d.save_mean = to_float(d.forward.mean);
  d.save_invstd = to_float(d.forward.invstd);
  d.relu_y_float = to_float(d.relu_y);
  d.backward =
      reference_backward(d.x, d.dy, sh, d.weight.data(), d.save_mean.data(), d.save_invstd.data());
  d.relu_backward = reference_backward(d.x, d.dy, sh, d.weight.data(), d.save_mean.data(),
                                         d.save_invstd.data(), d.relu_y_float.data());
  if (lc.every_kernel)
    d.inference_y = reference_forward_inference(d.x, sh, d.weight.data(), d.bias.data(),
                                                d.running_mean.data(), d.running_var.data(), kEps);
  return d;
}

// A copy of v placed `offset` floats past a 64-byte boundary in a fresh buffer,
// so offset 0 is aligned for every vector width (streaming stores need it)
// and offset 1 is aligned for none.
struct OffsetBuffer {
  std::vector<float> storage;
  float* data;
  OffsetBuffer(size_t count, int64_t offset) : storage(count + 48, -7.0f) {
    float* const guarded = storage.data() + 16;  // guard floats on both sides
    const uintptr_t address = reinterpret_cast<uintptr_t>(guarded);
    const size_t to_boundary = ((64 - address % 64) % 64) / sizeof(float);
    data = guarded + to_boundary + offset;
  }
  OffsetBuffer(const std::vector<float>& v, int64_t offset) : OffsetBuffer(v.size(), offset) {
    std::copy(v.begin(), v.end(), data);
  }
  float before() const { return data[-1]; }                // the float before the view (guard)
  float after(size_t count) const { return data[count]; }  // the float after it (guard)
};

class LargeShapes : public ::testing::TestWithParam<LargeCase> {
 protected:
  void SetUp() override { set_num_threads(2); }
  void TearDown() override {
    set_batch_norm_kernel_variant("auto");
    set_num_threads(0);
  }
};

// One test per shape, every variant inside it: the float64 reference of a
// large shape is computed once per process.
TEST_P(LargeShapes, MultiThreadedKernelsOfEveryVariantMatchFloat64) {
  const LargeCase& lc = GetParam();
  const BatchNormShape sh = shape_of(lc);
  const LargeData& d = large_data(lc);
  const size_t count = d.x.size();
  const OffsetBuffer x(d.x, lc.offset), dy(d.dy, lc.offset);
  for (const std::string& variant : kernel_variants()) {
    SCOPED_TRACE("variant " + variant);
    ScopedKernelVariant use(variant);
    // Forward training, affine, PyTorch running statistics.
    {
      OffsetBuffer y(count, lc.offset);
      std::vector<float> rm = d.running_mean, rv = d.running_var, mean(sh.c), invstd(sh.c);
      ASSERT_EQ(batch_norm_forward_training(x.data, sh, d.weight.data(), d.bias.data(),
                                            {rm.data(), rv.data(), kMomentum, true}, kEps, y.data,
                                            mean.data(), invstd.data()),
                BatchNormStatus::ok);
      EXPECT_TRUE(all_close("y", y.data, d.forward.y, kTolerance));
      EXPECT_EQ(y.before(), -7.0f) << "wrote before y";
      EXPECT_EQ(y.after(count), -7.0f) << "wrote past y";
      EXPECT_TRUE(all_close("save_mean", mean.data(), d.forward.mean, kTolerance));
      EXPECT_TRUE(all_close("save_invstd", invstd.data(), d.forward.invstd, kTolerance));
      const double bessel = static_cast<double>(sh.per_channel()) / (sh.per_channel() - 1);
      std::vector<double> want_rm(sh.c), want_rv(sh.c);
      for (int64_t j = 0; j < sh.c; ++j) {
        want_rm[j] = (1 - kMomentum) * d.running_mean[j] + kMomentum * d.forward.mean[j];
        want_rv[j] = (1 - kMomentum) * d.running_var[j] + kMomentum * d.forward.var[j] * bessel;
      }
      EXPECT_TRUE(all_close("running_mean", rm.data(), want_rm, kTolerance));
      EXPECT_TRUE(all_close("running_var", rv.data(), want_rv, kTolerance));
    }
    // Backward, plain and with the ReLU mask; then the parameter gradients
    // alone (no dx), which skip the dx pass.
    const auto check_backward = [&] {
      for (bool relu : {false, true}) {
        SCOPED_TRACE(relu ? "relu" : "no activation");
        const ReferenceBackward& ref = relu ? d.relu_backward : d.backward;
        OffsetBuffer dx(count, lc.offset), relu_y(d.relu_y_float, lc.offset);
        std::vector<float> dw(sh.c), db(sh.c);
        const Activation act = relu ? Activation::relu : Activation::none;
        batch_norm_backward(x.data, dy.data, sh, d.weight.data(), d.save_mean.data(),
                            d.save_invstd.data(), dx.data, dw.data(), db.data(), act,
                            relu ? relu_y.data : nullptr);
        EXPECT_TRUE(all_close("dx", dx.data, ref.dx, kTolerance));
        EXPECT_EQ(dx.after(count), -7.0f) << "wrote past dx";
        EXPECT_TRUE(all_close("dweight", dw.data(), ref.dweight, kTolerance, &ref.dweight_scale));
        EXPECT_TRUE(all_close("dbias", db.data(), ref.dbias, kTolerance, &ref.dbias_scale));
        std::vector<float> dw_only(sh.c);
        batch_norm_backward(x.data, dy.data, sh, d.weight.data(), d.save_mean.data(),
                            d.save_invstd.data(), nullptr, dw_only.data(), nullptr, act,
                            relu ? relu_y.data : nullptr);
        EXPECT_EQ(dw_only, dw) << "dweight without dx differs from dweight with it";
      }
    };
    if (!lc.every_kernel) {
      // The training forward above and the backward cover the streamed paths.
      check_backward();
      continue;
    }
    // Forward training with fused ReLU, y aliasing x.
    {
      OffsetBuffer y(d.x, lc.offset);
      ASSERT_EQ(batch_norm_forward_training(y.data, sh, d.weight.data(), d.bias.data(), {}, kEps,
                                            y.data, nullptr, nullptr, Activation::relu),
                BatchNormStatus::ok);
      EXPECT_TRUE(all_close("relu y (aliasing x)", y.data, d.relu_y, kTolerance));
    }
    // Forward inference.
    {
      OffsetBuffer y(count, lc.offset);
      batch_norm_forward_inference(x.data, sh, d.weight.data(), d.bias.data(),
                                   d.running_mean.data(), d.running_var.data(), kEps, y.data);
      EXPECT_TRUE(all_close("inference y", y.data, d.inference_y, kTolerance));
      EXPECT_EQ(y.after(count), -7.0f) << "wrote past y";
    }
    check_backward();
  }
}

INSTANTIATE_TEST_SUITE_P(Threads, LargeShapes, ::testing::ValuesIn(kLargeCases),
                         [](const ::testing::TestParamInfo<LargeCase>& info) {
                           return std::string(info.param.name);
                         });

// Everything one training step produces, for comparing runs.
struct StepOutputs {
  std::vector<float> y, mean, invstd, running_mean, running_var, dx, dweight, dbias;
};

StepOutputs run_step(const LargeCase& lc, const LargeData& d) {
  const BatchNormShape sh = shape_of(lc);
  StepOutputs out{std::vector<float>(d.x.size()),
                  std::vector<float>(sh.c),
                  std::vector<float>(sh.c),
                  d.running_mean,
                  d.running_var,
                  std::vector<float>(d.x.size()),
                  std::vector<float>(sh.c),
                  std::vector<float>(sh.c)};
  EXPECT_EQ(batch_norm_forward_training(
                d.x.data(), sh, d.weight.data(), d.bias.data(),
                {out.running_mean.data(), out.running_var.data(), kMomentum, true}, kEps,
                out.y.data(), out.mean.data(), out.invstd.data()),
            BatchNormStatus::ok);
  batch_norm_backward(d.x.data(), d.dy.data(), sh, d.weight.data(), out.mean.data(),
                      out.invstd.data(), out.dx.data(), out.dweight.data(), out.dbias.data());
  return out;
}

class Determinism : public ::testing::TestWithParam<LargeCase> {
 protected:
  void TearDown() override { set_num_threads(0); }
};

TEST_P(Determinism, FixedThreadCountGivesIdenticalBitsAndOneOrTwoThreadsAgree) {
  const LargeCase& lc = GetParam();
  const LargeData& d = large_data(lc, false);
  set_num_threads(1);
  ASSERT_EQ(num_threads(), 1);
  const StepOutputs one_a = run_step(lc, d), one_b = run_step(lc, d);
  set_num_threads(2);
  ASSERT_EQ(num_threads(), 2);
  const StepOutputs two_a = run_step(lc, d), two_b = run_step(lc, d);

  // Bit for bit within a thread count (vectors of float compare exactly).
  EXPECT_EQ(one_a.y, one_b.y);
  EXPECT_EQ(one_a.dx, one_b.dx);
  EXPECT_EQ(one_a.dweight, one_b.dweight);
  EXPECT_EQ(one_a.running_var, one_b.running_var);
  EXPECT_EQ(two_a.y, two_b.y);
  EXPECT_EQ(two_a.mean, two_b.mean);
  EXPECT_EQ(two_a.invstd, two_b.invstd);
  EXPECT_EQ(two_a.running_mean, two_b.running_mean);
  EXPECT_EQ(two_a.running_var, two_b.running_var);
  EXPECT_EQ(two_a.dx, two_b.dx);
  EXPECT_EQ(two_a.dweight, two_b.dweight);
  EXPECT_EQ(two_a.dbias, two_b.dbias);

  // 1 against 2 threads: within tolerance (the kernels cut work by shape, so
  // they are in fact identical today; the contract asked for is agreement).
  EXPECT_TRUE(all_close("y 1 vs 2 threads", two_a.y.data(), to_double(one_a.y), kTolerance));
  EXPECT_TRUE(all_close("save_invstd 1 vs 2 threads", two_a.invstd.data(), to_double(one_a.invstd),
                        kTolerance));
  EXPECT_TRUE(all_close("running_var 1 vs 2 threads", two_a.running_var.data(),
                        to_double(one_a.running_var), kTolerance));
  EXPECT_TRUE(all_close("dx 1 vs 2 threads", two_a.dx.data(), to_double(one_a.dx), kTolerance));
  EXPECT_TRUE(
      all_close("dweight 1 vs 2 threads", two_a.dweight.data(), to_double(one_a.dweight), 1e-4));
  EXPECT_TRUE(all_close("dbias 1 vs 2 threads", two_a.dbias.data(), to_double(one_a.dbias), 1e-4));
}

INSTANTIATE_TEST_SUITE_P(LargeShapes, Determinism,
                         ::testing::Values(kLargeCases[0], kLargeCases[1], kLargeCases[2],
                                           kLargeCases[3], kLargeCases[6], kLargeCases[8]),
                         [](const ::testing::TestParamInfo<LargeCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(Threads, SetNumThreadsIsHonouredAndZeroRestoresTheDefault) {
  set_num_threads(1);
  EXPECT_EQ(num_threads(), 1);
  set_num_threads(2);
  EXPECT_EQ(num_threads(), 2);
  set_num_threads(0);
  EXPECT_GE(num_threads(), 1);
}

}  // namespace
}  // namespace bnlab::test
