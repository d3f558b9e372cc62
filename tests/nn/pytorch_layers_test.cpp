// The layers of issue 13 (GELU, ELU, SiLU, ReLU6, Hardswish, PReLU, AvgPool2d,
// AdaptiveAvgPool2d, Dropout2d, Identity, Softmax, LogSoftmax): float64
// references, central-difference gradient checks, PyTorch's reprs and
// notation, NaN handling, and PyTorch goldens from
// tests/golden/make_layer_goldens.py (see its docstring to remake them).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bnlab/error.hpp"
#include "bnlab/io/safetensors.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/nn/state_dict.hpp"
#include "grad_check.hpp"

namespace bnlab::nn {
namespace {

using test::check_gradients;
using test::GradCheckOptions;
using test::random_tensor;

constexpr double kPi = 3.14159265358979323846;

// ---------------------------------------------------------------- float64 references

double gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
double gelu_tanh(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / kPi) * (x + 0.044715 * x * x * x)));
}
double elu(double x, double alpha) { return x > 0 ? x : alpha * (std::exp(x) - 1.0); }
double silu(double x) { return x / (1.0 + std::exp(-x)); }
double relu6(double x) { return std::min(std::max(x, 0.0), 6.0); }
double hardswish(double x) { return x * relu6(x + 3.0) / 6.0; }

void expect_elementwise(Module& module, const std::function<double(double)>& reference,
                        uint64_t seed, float scale) {
  const Tensor x = random_tensor({3, 17}, seed, scale);
  const Tensor& y = module.forward(x);
  ASSERT_EQ(y.shape(), x.shape());
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_NEAR(y[i], reference(x[i]), 1e-6 + 1e-6 * std::abs(reference(x[i])))
        << module.repr() << " at x = " << x[i];
}

TEST(PyTorchLayers, ElementwiseForwardsMatchFloat64) {
  GELU gelu_none;
  expect_elementwise(gelu_none, gelu, 1, 3.0f);
  GELU gelu_t("tanh");
  expect_elementwise(gelu_t, gelu_tanh, 2, 3.0f);
  ELU elu_07(0.7);
  expect_elementwise(
      elu_07, [](double x) { return elu(x, 0.7); }, 3, 3.0f);
  SiLU silu_module;
  expect_elementwise(silu_module, silu, 4, 4.0f);
  ReLU6 relu6_module;
  expect_elementwise(relu6_module, relu6, 5, 5.0f);
  Hardswish hardswish_module;
  expect_elementwise(hardswish_module, hardswish, 6, 4.0f);
  PReLU prelu(1, 0.3);
  expect_elementwise(
      prelu, [](double x) { return x > 0 ? x : 0.3 * x; }, 7, 2.0f);
}

// Values moved off the kinks (0 for ELU/PReLU; 0 and 6 for ReLU6; -3 and 3
// for Hardswish) by at least 0.1, so central differences with h = 0.01 never straddle one.
Tensor off_kinks(const Shape& shape, uint64_t seed, float scale, std::vector<float> kinks) {
  Tensor x = random_tensor(shape, seed, scale);
  for (int64_t i = 0; i < x.numel(); ++i)
    for (float k : kinks)
      if (std::abs(x[i] - k) < 0.1f) x[i] = k + (x[i] >= k ? 0.1f : -0.1f);
  return x;
}

TEST(PyTorchLayers, ElementwiseGradientsMatchCentralDifferences) {
  GELU gelu_none;
  check_gradients(gelu_none, random_tensor({3, 7}, 11, 2.0f), 12);
  GELU gelu_t("tanh");
  check_gradients(gelu_t, random_tensor({3, 7}, 13, 2.0f), 14);
  ELU elu_module(1.3);
  check_gradients(elu_module, off_kinks({3, 7}, 15, 2.0f, {0.0f}), 16);
  SiLU silu_module;
  check_gradients(silu_module, random_tensor({3, 7}, 17, 3.0f), 18);
  ReLU6 relu6_module;
  check_gradients(relu6_module, off_kinks({3, 7}, 19, 4.0f, {0.0f, 6.0f}), 20);
  Hardswish hardswish_module;
  check_gradients(hardswish_module, off_kinks({3, 7}, 21, 4.0f, {-3.0f, 3.0f}), 22);
  Identity identity;
  check_gradients(identity, random_tensor({2, 5}, 23), 24);
}

TEST(PyTorchLayers, PReLUSlopesPerChannelAndTheirGradients) {
  PReLU prelu(3, 0.25);
  for (int64_t c = 0; c < 3; ++c) prelu.weight.value[c] = 0.1f * static_cast<float>(c + 1);
  const Tensor x = off_kinks({2, 3, 2, 2}, 30, 1.0f, {0.0f});
  const Tensor& y = prelu.forward(x);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t c = (i / 4) % 3;
    EXPECT_FLOAT_EQ(y[i], x[i] > 0 ? x[i] : 0.1f * static_cast<float>(c + 1) * x[i]);
  }
  check_gradients(prelu, x, 31);
  PReLU shared;  // PyTorch's default: one slope, 0.25
  EXPECT_EQ(shared.weight.value.shape(), Shape{1});
  EXPECT_EQ(shared.weight.value[0], 0.25f);
  check_gradients(shared, off_kinks({3, 4}, 32, 1.0f, {0.0f}), 33);
  EXPECT_THROW(prelu.forward(random_tensor({2, 4}, 34)), Error);  // 4 channels, 3 slopes
}

// y[n, c, oh, ow] over PyTorch's windows, written from its documentation in double.
Tensor avg_pool_reference(const Tensor& x, const AvgPool2d& m) {
  const Shape out = m.output_shape(x.shape());
  Tensor y(out);
  const int64_t h = x.size(2), w = x.size(3);
  for (int64_t plane = 0; plane < out[0] * out[1]; ++plane)
    for (int64_t oh = 0; oh < out[2]; ++oh)
      for (int64_t ow = 0; ow < out[3]; ++ow) {
        const int64_t hs = oh * m.stride.h - m.padding.h, ws = ow * m.stride.w - m.padding.w;
        const int64_t he = std::min(hs + m.kernel_size.h, h + m.padding.h);
        const int64_t we = std::min(ws + m.kernel_size.w, w + m.padding.w);
        double sum = 0.0;
        int64_t inside = 0;
        for (int64_t i = std::max<int64_t>(hs, 0); i < std::min(he, h); ++i)
          for (int64_t j = std::max<int64_t>(ws, 0); j < std::min(we, w); ++j, ++inside)
            sum += x[(plane * h + i) * w + j];
        const double divisor = m.divisor_override    ? static_cast<double>(*m.divisor_override)
                               : m.count_include_pad ? static_cast<double>((he - hs) * (we - ws))
                                                     : static_cast<double>(inside);
        y[(plane * out[2] + oh) * out[3] + ow] = inside ? static_cast<float>(sum / divisor) : 0.0f;
      }
  return y;
}

void expect_near_all(const Tensor& got, const Tensor& want, double tolerance,
                     const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  for (int64_t i = 0; i < got.numel(); ++i)
    EXPECT_NEAR(got[i], want[i], tolerance) << what << " [" << i << "]";
}

TEST(PyTorchLayers, AvgPool2dMatchesItsWindowsInEveryMode) {
  const Tensor x = random_tensor({2, 3, 7, 8}, 40);
  std::vector<AvgPool2d> pools = {
      AvgPool2d({2, 2, false}),
      AvgPool2d({3, 3, false}, Size2{2, 2, false}, {1, 1, false}),
      AvgPool2d({3, 2, true}, Size2{2, 3, true}, {1, 1, true}, true, false),
      AvgPool2d({3, 3, false}, Size2{2, 2, false}, {1, 1, false}, true, true, 5),
      AvgPool2d({2, 2, false}, std::nullopt, {}, true),
  };
  for (AvgPool2d& pool : pools) {
    SCOPED_TRACE(pool.repr());
    expect_near_all(pool.forward(x), avg_pool_reference(x, pool), 1e-6, pool.repr());
    check_gradients(pool, random_tensor({1, 2, 7, 8}, 41), 42);
  }
  // ceil_mode: 7 rows in windows of 2 give 4 outputs (the last window half outside).
  EXPECT_EQ(pools[4].output_shape({1, 1, 7, 7}), (Shape{1, 1, 4, 4}));
  EXPECT_EQ(pools[0].output_shape({1, 1, 7, 7}), (Shape{1, 1, 3, 3}));
  EXPECT_THROW(pools[0].output_shape({1, 1, 1, 5}), Error);
  EXPECT_THROW(AvgPool2d({2, 2, false}, std::nullopt, {2, 2, false}), Error);
}

TEST(PyTorchLayers, AdaptiveAvgPool2dUsesPyTorchsStartAndEndIndices) {
  // 7 rows into 3 cells: [0, 3), [2, 5), [4, 7) (floor(i*7/3), ceil((i+1)*7/3)).
  AdaptiveAvgPool2d pool({3, 1, true});
  Tensor x({1, 1, 7, 1});
  for (int64_t i = 0; i < 7; ++i) x[i] = static_cast<float>(i * i);
  const Tensor& y = pool.forward(x);
  ASSERT_EQ(y.shape(), (Shape{1, 1, 3, 1}));
  EXPECT_FLOAT_EQ(y[0], (0 + 1 + 4) / 3.0f);
  EXPECT_FLOAT_EQ(y[1], (4 + 9 + 16) / 3.0f);
  EXPECT_FLOAT_EQ(y[2], (16 + 25 + 36) / 3.0f);
  for (const Size2& size :
       {Size2{1, 1, false}, Size2{3, 4, true}, Size2{0, 3, true}, Size2{5, 5, false}}) {
    AdaptiveAvgPool2d p(size);
    SCOPED_TRACE(p.repr());
    check_gradients(p, random_tensor({1, 2, 4, 7}, 50), 51);
  }
  EXPECT_EQ(AdaptiveAvgPool2d({0, 3, true}).output_shape({2, 4, 5, 9}), (Shape{2, 4, 5, 3}));
}

// Softmax / LogSoftmax of each row along dim 1 of (N, K), in double.
TEST(PyTorchLayers, SoftmaxAndLogSoftmaxMatchFloat64) {
  const Tensor x = random_tensor({4, 9}, 60, 3.0f);
  Softmax softmax(1), log_softmax(-1, true);
  const Tensor& p = softmax.forward(x);
  const Tensor& lp = log_softmax.forward(x);
  for (int64_t n = 0; n < 4; ++n) {
    double sum = 0.0;
    for (int64_t k = 0; k < 9; ++k) sum += std::exp(static_cast<double>(x[n * 9 + k]));
    for (int64_t k = 0; k < 9; ++k) {
      EXPECT_NEAR(p[n * 9 + k], std::exp(static_cast<double>(x[n * 9 + k])) / sum, 1e-7);
      EXPECT_NEAR(lp[n * 9 + k], x[n * 9 + k] - std::log(sum), 1e-6);
    }
  }
  check_gradients(softmax, random_tensor({3, 5}, 61), 62);
  check_gradients(log_softmax, random_tensor({3, 5}, 63), 64);
  Softmax over_channels(std::nullopt);  // dim=None on 4-D: dim 1, as PyTorch
  check_gradients(over_channels, random_tensor({2, 3, 2, 2}, 65), 66);
  EXPECT_THROW(Softmax(2).output_shape({4, 9}), Error);
}

TEST(PyTorchLayers, Dropout2dZeroesWholeChannelsInTrainingOnly) {
  Generator gen(70);
  Dropout2d dropout(0.5, gen);
  const Tensor x = random_tensor({8, 6, 3, 3}, 71, 1.0f, 3.0f);  // no zeros
  const Tensor& y = dropout.forward(x);
  int64_t kept = 0;
  for (int64_t plane = 0; plane < 48; ++plane) {
    const bool zero = y[plane * 9] == 0.0f;
    kept += zero ? 0 : 1;
    for (int64_t i = plane * 9; i < plane * 9 + 9; ++i)
      EXPECT_EQ(y[i], zero ? 0.0f : 2.0f * x[i]) << "plane " << plane;
  }
  EXPECT_GT(kept, 10);
  EXPECT_LT(kept, 38);
  GradCheckOptions o;
  o.before_forward = [&] { gen = Generator(72); };
  check_gradients(dropout, random_tensor({2, 4, 2, 2}, 73), 74, o);
  dropout.eval();
  EXPECT_EQ(&dropout.forward(x), &x);
  EXPECT_THROW(dropout.forward(random_tensor({2, 3}, 75)), Error);
}

TEST(PyTorchLayers, ReprsAndNotationMatchPyTorch) {
  Generator gen(1);
  // PyTorch 1.13's repr of each layer built from the text on the left.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"GELU()", "GELU(approximate='none')"},
      {"GELU(approximate='tanh')", "GELU(approximate='tanh')"},
      {"ELU()", "ELU(alpha=1.0)"},
      {"ELU(0.5, True)", "ELU(alpha=0.5)"},
      {"SiLU(inplace=True)", "SiLU()"},
      {"ReLU6()", "ReLU6()"},
      {"Hardswish()", "Hardswish()"},
      {"PReLU()", "PReLU(num_parameters=1)"},
      {"PReLU(3, 0.1)", "PReLU(num_parameters=3)"},
      {"AvgPool2d(2)", "AvgPool2d(kernel_size=2, stride=2, padding=0)"},
      {"AvgPool2d((2, 3), stride=1, padding=1, ceil_mode=True, count_include_pad=False, "
       "divisor_override=2)",
       "AvgPool2d(kernel_size=(2, 3), stride=1, padding=1)"},
      {"AvgPool2d(3, 2, 1)", "AvgPool2d(kernel_size=3, stride=2, padding=1)"},
      {"AdaptiveAvgPool2d(1)", "AdaptiveAvgPool2d(output_size=1)"},
      {"AdaptiveAvgPool2d((2, 3))", "AdaptiveAvgPool2d(output_size=(2, 3))"},
      {"AdaptiveAvgPool2d(output_size=(None, 3))", "AdaptiveAvgPool2d(output_size=(None, 3))"},
      {"Dropout2d()", "Dropout2d(p=0.5, inplace=False)"},
      {"Dropout2d(0.2)", "Dropout2d(p=0.2, inplace=False)"},
      {"Identity()", "Identity()"},
      {"Identity(54, unused_argument1=0.1)", "Identity()"},
      {"Softmax()", "Softmax(dim=None)"},
      {"Softmax(dim=1)", "Softmax(dim=1)"},
      {"LogSoftmax(-1)", "LogSoftmax(dim=-1)"},
      {"nn.AvgPool2d(kernel_size=2*2 // 2)", "AvgPool2d(kernel_size=2, stride=2, padding=0)"},
  };
  for (const auto& [text, repr] : cases) {
    auto net = parse_arch(text, gen);
    ASSERT_EQ(net->size(), 1u) << text;
    EXPECT_EQ((*net)[0].repr(), repr) << text;
  }
  for (const char* bad :
       {"GELU(approximate='fast')", "GELU(approximate=1)", "PReLU(0)", "PReLU(init='x')",
        "AvgPool2d()", "AvgPool2d(2, padding=2)", "AvgPool2d((2, 3, 4))",
        "AvgPool2d(2, divisor_override=0)", "AvgPool2d(2, ceil_mode=1)", "AdaptiveAvgPool2d()",
        "AdaptiveAvgPool2d(0)", "AdaptiveAvgPool2d(None)", "Dropout2d(1.5)", "Softmax(dim=1.5)",
        "LogSoftmax(1, 2)", "SiLU(alpha=1)"})
    EXPECT_THROW(parse_arch(bad, gen), Error) << bad;
}

TEST(PyTorchLayers, PReLUWeightIsInTheStateDictAsPyTorchNamesIt) {
  Generator gen(2);
  auto net = parse_arch("Conv2d(1, 3, 3), PReLU(3), Flatten(), Linear(12, 2), PReLU()", gen);
  std::vector<std::string> names;
  for (const io::NamedTensor& t : state_dict(*net).tensors) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "3.weight", "3.bias",
                                             "4.weight"}));
  EXPECT_EQ(net->output_shape({5, 1, 4, 4}), (Shape{5, 2}));
}

// Inside a Sequential the convolutions run on nChw16c: the elementwise layers
// keep it, the others take plain tensors. The result must be that of the
// children run one by one on plain tensors, forward and backward.
TEST(PyTorchLayers, TheyWorkInsideABlockedConvolutionChain) {
  const std::string arch =
      "Conv2d(1, 16, 3, padding=1), GELU(), AvgPool2d(2), PReLU(16), Conv2d(16, 16, 3), "
      "Hardswish(), SiLU(), AdaptiveAvgPool2d((2, 2)), Dropout2d(0.0), Identity(), Flatten(), "
      "Linear(64, 3), LogSoftmax(dim=1)";
  Generator gen_a(8), gen_b(8);
  auto net = parse_arch(arch, gen_a);
  auto plain = parse_arch(arch, gen_b);
  const Tensor x = random_tensor({2, 1, 10, 10}, 80);
  const Tensor y = net->forward(x);
  const Tensor* h = &x;
  for (size_t i = 0; i < plain->size(); ++i) h = &(*plain)[i].forward(*h);
  expect_near_all(y, *h, 1e-5, "output");
  const Tensor dy = random_tensor(y.shape(), 81);
  const Tensor dx = net->backward(dy);
  const Tensor* g = &dy;
  for (size_t i = plain->size(); i-- > 0;) g = &(*plain)[i].backward(*g);
  expect_near_all(dx, *g, 1e-5, "grad_input");
}

// ---------------------------------------------------------------- PyTorch goldens

const std::string kGoldenDir = std::string(BNLAB_GOLDEN_DIR) + "/layers";

Tensor named(const io::SafetensorsFile& file, const std::string& name) {
  const io::NamedTensor* found = file.find(name);
  if (!found) throw std::runtime_error("no tensor '" + name + "' in the file");
  EXPECT_EQ(found->dtype, io::DType::F32) << name;
  Tensor t(found->shape);
  std::memcpy(t.data(), found->bytes.data(), found->bytes.size());
  return t;
}

// The cases of LAYERS in make_layer_goldens.py.
const std::vector<std::string> kGoldenLayers = {"gelu",
                                                "gelu_tanh",
                                                "elu",
                                                "silu",
                                                "relu6",
                                                "hardswish",
                                                "prelu_shared",
                                                "prelu_channels",
                                                "avg_pool",
                                                "avg_pool_padded",
                                                "avg_pool_rect",
                                                "avg_pool_divisor",
                                                "avg_pool_ceil",
                                                "adaptive_1",
                                                "adaptive_uneven",
                                                "adaptive_none",
                                                "adaptive_larger",
                                                "softmax",
                                                "softmax_last",
                                                "softmax_implicit",
                                                "log_softmax",
                                                "log_softmax_channels"};

TEST(PyTorchLayerGoldens, ForwardAndBackwardMatchPyTorch) {
  for (const std::string& name : kGoldenLayers) {
    SCOPED_TRACE(name);
    const auto file = io::read_safetensors(kGoldenDir + "/" + name + ".safetensors");
    Generator gen(3);
    auto net = parse_arch(file.metadata.at("layer"), gen);
    Module& layer = (*net)[0];
    if (auto* prelu = dynamic_cast<PReLU*>(&layer)) prelu->weight.value = named(file, "weight");
    const Tensor x = named(file, "input");  // kept: the layers keep a pointer to it
    const Tensor& y = layer.forward(x);
    expect_near_all(y, named(file, "output"), 2e-6, "output");
    const Tensor& dx = layer.backward(named(file, "grad_output"));
    expect_near_all(dx, named(file, "grad_input"), 1e-5, "grad_input");
    if (auto* prelu = dynamic_cast<PReLU*>(&layer))
      expect_near_all(prelu->weight.grad, named(file, "grad_weight"), 1e-4, "grad_weight");
  }
}

// NaN in, as PyTorch 1.13: same NaN positions, same values elsewhere, forward and backward.
TEST(PyTorchLayerGoldens, ActivationsTreatNaNAsPyTorchDoes) {
  const auto file = io::read_safetensors(kGoldenDir + "/nan.safetensors");
  const std::map<std::string, std::string> layers = {
      {"gelu", "GELU()"},   {"gelu_tanh", "GELU(approximate='tanh')"},
      {"elu", "ELU()"},     {"silu", "SiLU()"},
      {"relu6", "ReLU6()"}, {"hardswish", "Hardswish()"},
      {"relu", "ReLU()"},   {"leaky_relu", "LeakyReLU(0.1)"},
      {"prelu", "PReLU()"}};
  const float nan = std::nanf("");
  Tensor x({1, 8});
  const float values[] = {nan, -1.0f, 2.0f, -0.0f, 7.0f, -4.0f, 3.0f, -3.0f};
  for (int64_t i = 0; i < 8; ++i) x[i] = values[i];
  for (const auto& [name, text] : layers) {
    SCOPED_TRACE(name);
    Generator gen(4);
    auto net = parse_arch(text, gen);
    const Tensor y = (*net)[0].forward(x);
    const Tensor dx = (*net)[0].backward(Tensor({1, 8}, 1.0f));
    for (const auto& [got, want] : {std::pair{&y, named(file, name + "_output")},
                                    std::pair{&dx, named(file, name + "_grad")}})
      for (int64_t i = 0; i < 8; ++i) {
        EXPECT_EQ(std::isnan((*got)[i]), std::isnan(want[i])) << i;
        if (!std::isnan(want[i])) {
          EXPECT_NEAR((*got)[i], want[i], 1e-6) << i;
        }
      }
  }
}

TEST(PyTorchLayerGoldens, Dropout2dKeepsPyTorchsRule) {
  // PyTorch's output: each plane all zero or twice the input; bnlab's the same
  // rule (its own draws), so both have whole planes only.
  const auto file = io::read_safetensors(kGoldenDir + "/dropout2d.safetensors");
  const Tensor x = named(file, "input"), torch_y = named(file, "output");
  Generator gen(5);
  auto net = parse_arch(file.metadata.at("layer"), gen);
  const Tensor& y = (*net)[0].forward(x);
  for (const Tensor* out : {&torch_y, &y})
    for (int64_t plane = 0; plane < 24; ++plane) {
      const bool zero = (*out)[plane * 9] == 0.0f;
      for (int64_t i = plane * 9; i < plane * 9 + 9; ++i)
        EXPECT_NEAR((*out)[i], zero ? 0.0f : 2.0f * x[i], 1e-6);
    }
}

TEST(PyTorchLayerGoldens, PyTorchNetworkStateDictLoadsAndGivesItsOutput) {
  const auto file = io::read_safetensors(kGoldenDir + "/pytorch_network.safetensors");
  const auto io_file = io::read_safetensors(kGoldenDir + "/pytorch_network_io.safetensors");
  Generator gen(6);
  auto net = parse_arch(checkpoint_arch(file), gen);
  std::map<std::string, Shape> ours, theirs;
  for (const io::NamedTensor& t : state_dict(*net).tensors) ours[t.name] = t.shape;
  for (const io::NamedTensor& t : file.tensors) theirs[t.name] = t.shape;
  EXPECT_EQ(ours, theirs);
  load_state_dict(*net, file);
  net->eval();
  expect_near_all(net->forward(named(io_file, "input")), named(io_file, "output"), 1e-5, "output");
}

}  // namespace
}  // namespace bnlab::nn
