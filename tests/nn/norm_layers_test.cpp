// GroupNorm, LayerNorm and InstanceNorm1d/2d as layers: float64 references,
// central-difference gradient checks, PyTorch's reprs and registry entries,
// and state dicts both ways with PyTorch through the goldens of
// tests/golden/make_norm_layer_goldens.py (see its docstring to remake them).
#include "bnlab/nn/norm_layers.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "bnlab/error.hpp"
#include "bnlab/io/safetensors.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/nn/state_dict.hpp"
#include "grad_check.hpp"

namespace bnlab::nn {
namespace {

using test::check_gradients;
using test::GradCheckOptions;
using test::random_tensor;

// y = (x - mean) / sqrt(var + eps) over each run of `group` consecutive values
// of x (biased var), in double; then y * w[affine_index(at)] + b[...] when given.
std::vector<double> normalize_runs(const Tensor& x, int64_t group, double eps) {
  std::vector<double> y(static_cast<size_t>(x.numel()));
  for (int64_t start = 0; start < x.numel(); start += group) {
    double sum = 0.0, squares = 0.0;
    for (int64_t k = 0; k < group; ++k) sum += x[start + k];
    const double mean = sum / static_cast<double>(group);
    for (int64_t k = 0; k < group; ++k) squares += std::pow(x[start + k] - mean, 2);
    const double invstd = 1.0 / std::sqrt(squares / static_cast<double>(group) + eps);
    for (int64_t k = 0; k < group; ++k) y[start + k] = (x[start + k] - mean) * invstd;
  }
  return y;
}

void expect_near_all(const Tensor& actual, const std::vector<double>& expected, double tol) {
  ASSERT_EQ(static_cast<size_t>(actual.numel()), expected.size());
  for (int64_t i = 0; i < actual.numel(); ++i)
    ASSERT_NEAR(actual[i], expected[static_cast<size_t>(i)], tol) << "at " << i;
}

void randomise(Parameter& p, uint64_t seed, float mean) {
  const Tensor r = random_tensor(p.value.shape(), seed, 0.5f, mean);
  for (int64_t i = 0; i < r.numel(); ++i) p.value[i] = r[i];
}

// ---------------------------------------------------------------- GroupNorm

TEST(GroupNormLayer, ForwardMatchesFloat64ReferencePerSampleAndGroup) {
  GroupNorm gn(3, 6, 1e-3);
  randomise(gn.weight, 1, 1.0f);
  randomise(gn.bias, 2, 0.0f);
  const Tensor x = random_tensor({4, 6, 5, 3}, 3, 2.0f, 0.5f);
  const int64_t s = 15, channels_per_group = 2;
  std::vector<double> y = normalize_runs(x, channels_per_group * s, 1e-3);
  for (int64_t at = 0; at < x.numel(); ++at) {
    const int64_t j = (at / s) % 6;
    y[at] = y[at] * gn.weight.value[j] + gn.bias.value[j];
  }
  expect_near_all(gn.forward(x), y, 2e-5);
  gn.eval();  // no running statistics: eval is the same
  expect_near_all(gn.forward(x), y, 2e-5);
}

TEST(GroupNormLayer, GradientsMatchCentralDifferences) {
  GroupNorm gn(2, 4);
  randomise(gn.weight, 4, 1.0f);
  randomise(gn.bias, 5, 0.0f);
  check_gradients(gn, random_tensor({3, 4, 3, 2}, 6), 7);
  GroupNorm plain(1, 3, 1e-5, false);
  check_gradients(plain, random_tensor({2, 3, 4}, 8), 9);
}

TEST(GroupNormLayer, ReprAndShapeErrorsArePyTorchs) {
  EXPECT_EQ(GroupNorm(2, 4).repr(), "GroupNorm(2, 4, eps=1e-05, affine=True)");
  EXPECT_EQ(GroupNorm(1, 3, 1e-3, false).repr(), "GroupNorm(1, 3, eps=0.001, affine=False)");
  EXPECT_THROW(GroupNorm(3, 4), Error);
  EXPECT_THROW(GroupNorm(0, 4), Error);
  GroupNorm gn(2, 4);
  EXPECT_THROW(gn.output_shape({2, 6, 3}), Error);
  EXPECT_THROW(gn.output_shape({4}), Error);
}

// ---------------------------------------------------------------- LayerNorm

TEST(LayerNormLayer, ForwardNormalizesTheTrailingDimsInFloat64) {
  LayerNorm ln({3, 4}, 1e-4);
  randomise(ln.weight, 10, 1.0f);
  randomise(ln.bias, 11, 0.0f);
  EXPECT_EQ(ln.weight.value.shape(), (Shape{3, 4}));
  const Tensor x = random_tensor({2, 5, 3, 4}, 12, 3.0f, -1.0f);
  std::vector<double> y = normalize_runs(x, 12, 1e-4);
  for (int64_t at = 0; at < x.numel(); ++at)
    y[at] = y[at] * ln.weight.value[at % 12] + ln.bias.value[at % 12];
  expect_near_all(ln.forward(x), y, 2e-5);
  EXPECT_THROW(ln.forward(random_tensor({2, 4, 3}, 1)), Error);
}

TEST(LayerNormLayer, GradientsMatchCentralDifferences) {
  LayerNorm ln({3, 2});
  randomise(ln.weight, 13, 1.0f);
  randomise(ln.bias, 14, 0.0f);
  check_gradients(ln, random_tensor({4, 3, 2}, 15), 16);
  LayerNorm no_bias({5}, 1e-5, true, false);
  randomise(no_bias.weight, 17, 1.0f);
  EXPECT_EQ(no_bias.parameters().size(), 1u);
  check_gradients(no_bias, random_tensor({3, 5}, 18), 19);
  LayerNorm plain({5}, 1e-5, false);
  EXPECT_TRUE(plain.parameters().empty());
  check_gradients(plain, random_tensor({3, 5}, 20), 21);
}

TEST(LayerNormLayer, ReprIsPyTorchs) {
  EXPECT_EQ(LayerNorm({8}).repr(), "LayerNorm((8,), eps=1e-05, elementwise_affine=True)");
  EXPECT_EQ(LayerNorm({6, 6}, 1e-3, false).repr(),
            "LayerNorm((6, 6), eps=0.001, elementwise_affine=False)");
}

// ---------------------------------------------------------------- InstanceNorm

TEST(InstanceNormLayer, TrainingNormalizesEachSampleAndChannel) {
  InstanceNorm in(2, 3, 1e-5, 0.1, true);
  randomise(in.weight, 22, 1.0f);
  randomise(in.bias, 23, 0.0f);
  const Tensor x = random_tensor({2, 3, 4, 5}, 24, 1.5f, 2.0f);
  std::vector<double> y = normalize_runs(x, 20, 1e-5);
  for (int64_t at = 0; at < x.numel(); ++at) {
    const int64_t j = (at / 20) % 3;
    y[at] = y[at] * in.weight.value[j] + in.bias.value[j];
  }
  expect_near_all(in.forward(x), y, 2e-5);
  EXPECT_TRUE(in.buffers().empty());
}

TEST(InstanceNormLayer, RunningStatisticsFollowPyTorchsRuleAndServeEval) {
  InstanceNorm in(1, 2, 1e-5, 0.3, false, true);
  const Tensor x = random_tensor({3, 2, 6}, 25, 2.0f, 1.0f);
  in.forward(x);
  // PyTorch: the batch mean of per-instance means and unbiased variances.
  for (int64_t j = 0; j < 2; ++j) {
    double mean_sum = 0.0, var_sum = 0.0;
    for (int64_t i = 0; i < 3; ++i) {
      double sum = 0.0, squares = 0.0;
      for (int64_t k = 0; k < 6; ++k) sum += x[(i * 2 + j) * 6 + k];
      const double mean = sum / 6.0;
      for (int64_t k = 0; k < 6; ++k) squares += std::pow(x[(i * 2 + j) * 6 + k] - mean, 2);
      mean_sum += mean;
      var_sum += squares / 5.0;
    }
    EXPECT_NEAR(in.running_mean[j], 0.3 * mean_sum / 3.0, 1e-6);
    EXPECT_NEAR(in.running_var[j], 0.7 + 0.3 * var_sum / 3.0, 1e-6);
  }
  EXPECT_EQ(in.num_batches_tracked, 0);  // PyTorch's InstanceNorm never counts
  in.eval();
  const Tensor& y = in.forward(x);
  for (int64_t at = 0; at < x.numel(); ++at) {
    const int64_t j = (at / 6) % 2;
    EXPECT_NEAR(y[at], (x[at] - in.running_mean[j]) / std::sqrt(in.running_var[j] + 1e-5), 1e-5);
  }
}

TEST(InstanceNormLayer, GradientsMatchCentralDifferencesInTrainingAndEval) {
  InstanceNorm in(2, 3, 1e-5, 0.1, true, true);
  randomise(in.weight, 26, 1.0f);
  randomise(in.bias, 27, 0.0f);
  check_gradients(in, random_tensor({2, 3, 2, 3}, 28), 29);
  in.eval();  // with running statistics: constants
  in.running_var.fill(0.5f);
  check_gradients(in, random_tensor({2, 3, 2, 3}, 30), 31);
  InstanceNorm unbatched(1, 2);
  check_gradients(unbatched, random_tensor({2, 5}, 32), 33);
}

TEST(InstanceNormLayer, ReprAndShapeErrorsArePyTorchs) {
  EXPECT_EQ(InstanceNorm(2, 4).repr(),
            "InstanceNorm2d(4, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False)");
  EXPECT_EQ(InstanceNorm(1, 3, 1e-3, 0.3, true, true).repr(),
            "InstanceNorm1d(3, eps=0.001, momentum=0.3, affine=True, track_running_stats=True)");
  InstanceNorm in(2, 4);
  EXPECT_THROW(in.output_shape({2, 4}), Error);
  EXPECT_THROW(in.output_shape({2, 5, 3, 3}), Error);
}

// ---------------------------------------------------------------- FrozenBatchNorm2d

void randomise_frozen(FrozenBatchNorm2d& frozen, uint64_t seed) {
  Generator gen(seed);
  for (int64_t j = 0; j < frozen.num_features; ++j) {
    frozen.weight[j] = gen.uniform(0.5f, 1.5f);
    frozen.bias[j] = gen.uniform(-0.5f, 0.5f);
    frozen.running_mean[j] = gen.uniform(-0.5f, 0.5f);
    frozen.running_var[j] = gen.uniform(0.5f, 2.0f);
  }
}

TEST(FrozenBatchNorm2dLayer, IsTorchvisionsFixedMapInTrainingAndEval) {
  FrozenBatchNorm2d frozen(3, 1e-3);
  randomise_frozen(frozen, 40);
  const FrozenBatchNorm2d before = frozen;
  const Tensor x = random_tensor({2, 3, 4, 2}, 41, 2.0f, 1.0f);
  std::vector<double> y(static_cast<size_t>(x.numel()));
  for (int64_t at = 0; at < x.numel(); ++at) {
    const int64_t j = (at / 8) % 3;
    const double scale = frozen.weight[j] / std::sqrt(frozen.running_var[j] + 1e-3);
    y[at] = x[at] * scale + (frozen.bias[j] - frozen.running_mean[j] * scale);
  }
  frozen.train();
  expect_near_all(frozen.forward(x), y, 1e-5);
  frozen.backward(random_tensor(x.shape(), 42));
  frozen.eval();
  expect_near_all(frozen.forward(x), y, 1e-5);
  // Nothing moved, bit for bit.
  for (int64_t j = 0; j < 3; ++j) {
    EXPECT_EQ(frozen.weight[j], before.weight[j]);
    EXPECT_EQ(frozen.bias[j], before.bias[j]);
    EXPECT_EQ(frozen.running_mean[j], before.running_mean[j]);
    EXPECT_EQ(frozen.running_var[j], before.running_var[j]);
  }
  EXPECT_TRUE(frozen.parameters().empty());  // the optimizer sees none
  const ChannelAffine map = frozen.eval_channel_affine();
  EXPECT_NEAR(map.scale[1], frozen.weight[1] / std::sqrt(frozen.running_var[1] + 1e-3), 1e-12);
}

TEST(FrozenBatchNorm2dLayer, InputGradientMatchesCentralDifferences) {
  FrozenBatchNorm2d frozen(3);
  randomise_frozen(frozen, 43);
  check_gradients(frozen, random_tensor({2, 3, 2, 3}, 44), 45);
}

TEST(FrozenBatchNorm2dLayer, ReprBuffersAndTextAreTorchvisions) {
  EXPECT_EQ(FrozenBatchNorm2d(64).repr(), "FrozenBatchNorm2d(64, eps=1e-05)");
  FrozenBatchNorm2d frozen(4);
  std::vector<std::string> names;
  for (const Buffer& b : frozen.buffers()) names.push_back(b.name);
  EXPECT_EQ(names, (std::vector<std::string>{"weight", "bias", "running_mean", "running_var"}));
  Generator gen(0);
  EXPECT_EQ(parse_arch("FrozenBatchNorm2d(8, eps=0.001)", gen)->repr(),
            "Sequential(\n  (0): FrozenBatchNorm2d(8, eps=0.001)\n)");
  EXPECT_THROW(parse_arch("FrozenBatchNorm2d(8, momentum=0.1)", gen), Error);
  EXPECT_THROW(frozen.output_shape({2, 4, 3}), Error);
}

// ---------------------------------------------------------------- the text

TEST(NormLayerText, ArchitectureTextBuildsThemWithPyTorchsArguments) {
  Generator gen(0);
  auto net = parse_arch(
      "GroupNorm(2, 4, eps=1e-3), LayerNorm((6, 6), elementwise_affine=False), "
      "InstanceNorm2d(4, affine=True), nn.InstanceNorm1d(4, 1e-5, 0.2, True, True), "
      "LayerNorm(6, bias=False)",
      gen);
  ASSERT_EQ(net->size(), 5u);
  EXPECT_EQ((*net)[0].repr(), "GroupNorm(2, 4, eps=0.001, affine=True)");
  EXPECT_EQ((*net)[1].repr(), "LayerNorm((6, 6), eps=1e-05, elementwise_affine=False)");
  EXPECT_EQ((*net)[2].repr(),
            "InstanceNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=False)");
  EXPECT_EQ((*net)[3].repr(),
            "InstanceNorm1d(4, eps=1e-05, momentum=0.2, affine=True, track_running_stats=True)");
  EXPECT_EQ((*net)[4].parameters().size(), 1u);
  // A Python list reads as the tuple.
  EXPECT_EQ(parse_arch("LayerNorm([6, 6])", gen)->repr(),
            parse_arch("LayerNorm((6, 6))", gen)->repr());
  EXPECT_EQ(parse_arch("LayerNorm([8])", gen)->repr(),
            "Sequential(\n  (0): LayerNorm((8,), eps=1e-05, elementwise_affine=True)\n)");
  for (const char* bad :
       {"GroupNorm(3, 4)", "GroupNorm(2)", "LayerNorm((0, 3))", "LayerNorm([])", "LayerNorm([6, 6)",
        "LayerNorm(2.5)", "InstanceNorm2d(4, momentum=2)", "GroupNorm(1, 2, eps=0)"})
    EXPECT_THROW(parse_arch(bad, gen), Error) << bad;
}

// ---------------------------------------------------------------- PyTorch goldens

const std::string kGoldenDir = std::string(BNLAB_GOLDEN_DIR) + "/norm_layers";

// CASES of make_norm_layer_goldens.py.
struct Case {
  std::string name, arch;
  Shape input;
};
const std::vector<Case> kCases = {
    {"norms_2d",
     "Conv2d(2, 4, 3, padding=1), GroupNorm(2, 4), ReLU(), "
     "InstanceNorm2d(4, affine=True, track_running_stats=True), LayerNorm((6, 6)), "
     "Conv2d(4, 4, 3, padding=1, bias=False), InstanceNorm2d(4), Flatten(), "
     "Linear(144, 8), LayerNorm(8, eps=0.001), Linear(8, 3)",
     {4, 2, 6, 6}},
    {"norms_1d",
     "InstanceNorm1d(3, affine=True, track_running_stats=True, momentum=0.3), "
     "LayerNorm(8, elementwise_affine=False), GroupNorm(3, 3), Flatten(), "
     "Linear(24, 6), GroupNorm(2, 6, affine=False), Tanh(), Linear(6, 5)",
     {4, 3, 8}},
    {"frozen_bn",
     "Conv2d(2, 4, 3, padding=1, bias=False), FrozenBatchNorm2d(4), ReLU(), "
     "Conv2d(4, 4, 3), FrozenBatchNorm2d(4, eps=0.001), Flatten(), Linear(64, 3)",
     {4, 2, 6, 6}},
};

Tensor to_tensor(const io::NamedTensor& named) {
  EXPECT_EQ(named.dtype, io::DType::F32) << named.name;
  Tensor t(named.shape);
  std::memcpy(t.data(), named.bytes.data(), named.bytes.size());
  return t;
}

io::NamedTensor to_named(const std::string& name, const Tensor& t) {
  io::NamedTensor named{name, io::DType::F32, t.shape(), {}};
  named.bytes.resize(static_cast<size_t>(t.numel()) * sizeof(float));
  std::memcpy(named.bytes.data(), t.data(), named.bytes.size());
  return named;
}

Tensor named(const io::SafetensorsFile& file, const std::string& name) {
  const io::NamedTensor* found = file.find(name);
  if (!found) throw std::runtime_error("no tensor '" + name + "' in the file");
  return to_tensor(*found);
}

double max_abs_difference(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double worst = 0.0;
  for (int64_t i = 0; i < std::min(a.numel(), b.numel()); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
  return worst;
}

// name -> shape, for comparing key sets and shapes.
std::map<std::string, Shape> entry_shapes(const io::SafetensorsFile& file) {
  std::map<std::string, Shape> shapes;
  for (const io::NamedTensor& t : file.tensors) shapes[t.name] = t.shape;
  return shapes;
}

TEST(NormLayerGoldens, PyTorchStateDictsLoadAndGiveItsOutputs) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    const auto file = io::read_safetensors(kGoldenDir + "/pytorch_" + c.name + ".safetensors");
    const auto io_file =
        io::read_safetensors(kGoldenDir + "/pytorch_" + c.name + "_io.safetensors");
    EXPECT_EQ(checkpoint_arch(file), c.arch);
    Generator gen(123);
    auto net = parse_arch(c.arch, gen);
    // Same keys with the same shapes before loading: bnlab's names are PyTorch's.
    EXPECT_EQ(entry_shapes(state_dict(*net)), entry_shapes(file));
    load_state_dict(*net, file);
    net->eval();
    const Tensor input = named(io_file, "input");
    EXPECT_EQ(input.shape(), c.input);
    EXPECT_LE(max_abs_difference(net->forward(input), named(io_file, "output")), 1e-4);
  }
}

// With BNLAB_WRITE_NORM_LAYER_GOLDENS=DIR set, first writes the bnlab_* files
// (after training-mode forwards, so running statistics moved) into DIR.
TEST(NormLayerGoldens, BnlabCheckpointsLoadIntoPyTorch) {
  const char* write_dir = std::getenv("BNLAB_WRITE_NORM_LAYER_GOLDENS");
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    if (write_dir) {
      Generator gen(2024);
      auto net = parse_arch(c.arch, gen);
      Shape batch = c.input;
      batch[0] = 16;
      for (int step = 0; step < 3; ++step) net->forward(random_tensor(batch, 2025 + step));
      for (size_t i = 0; i < net->size(); ++i)  // a pretrained network's values, not 1 and 0
        if (auto* frozen = dynamic_cast<FrozenBatchNorm2d*>(&(*net)[i]))
          randomise_frozen(*frozen, i);
      const Tensor input = random_tensor(c.input, 2030);
      net->eval();
      save_checkpoint(std::string(write_dir) + "/bnlab_" + c.name + ".safetensors", *net, c.arch);
      io::SafetensorsFile io_file;
      io_file.tensors = {to_named("input", input), to_named("output", net->forward(input))};
      io::write_safetensors(std::string(write_dir) + "/bnlab_" + c.name + "_io.safetensors",
                            io_file);
    }
    const std::string torch_path = kGoldenDir + "/pytorch_from_bnlab_" + c.name + ".safetensors";
    ASSERT_TRUE(std::filesystem::exists(torch_path))
        << torch_path << " is missing: run make_norm_layer_goldens.py --from-bnlab";
    const auto checkpoint = io::read_safetensors(kGoldenDir + "/bnlab_" + c.name + ".safetensors");
    const auto io_file = io::read_safetensors(kGoldenDir + "/bnlab_" + c.name + "_io.safetensors");
    Generator gen(1);
    auto net = parse_arch(checkpoint_arch(checkpoint), gen);
    load_state_dict(*net, checkpoint);
    net->eval();
    const Tensor output = net->forward(named(io_file, "input"));
    EXPECT_LE(max_abs_difference(output, named(io::read_safetensors(torch_path), "output")), 1e-4);
    EXPECT_EQ(entry_shapes(state_dict(*net)), entry_shapes(checkpoint));
  }
}

}  // namespace
}  // namespace bnlab::nn
