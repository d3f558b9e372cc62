// State dicts and checkpoints: PyTorch's nn.Sequential keys and dtypes, a
// round trip through a file, the key/shape/dtype errors, atomic saves, and
// interop both ways with PyTorch through the goldens of
// tests/golden/make_state_dict_goldens.py (see its docstring to remake them).
#include "bnlab/nn/state_dict.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "bnlab/error.hpp"
#include "bnlab/io/safetensors.hpp"
#include "bnlab/nn/arch.hpp"

namespace bnlab::nn {
namespace {

namespace fs = std::filesystem;
using io::DType;
using io::NamedTensor;
using io::SafetensorsFile;

const std::string kGoldenDir = std::string(BNLAB_GOLDEN_DIR) + "/state_dict";

// The cases of make_state_dict_goldens.py (CASES there), with their input shapes.
struct Case {
  std::string name, arch;
  Shape input;
};
const std::vector<Case> kCases = {
    {"mlp_bn",
     "Flatten(), Linear(784, 16, bias=False), BatchNorm1d(16), ReLU(), Linear(16, 10)",
     {4, 1, 28, 28}},
    {"cnn_bn",
     "Conv2d(1, 4, 3, padding=1, bias=False), BatchNorm2d(4), ReLU(), MaxPool2d(2), "
     "Conv2d(4, 8, 3, stride=2, padding=1), BatchNorm2d(8), ReLU(), Flatten(), Linear(392, 10)",
     {4, 1, 28, 28}},
    {"bn_variants",
     "Flatten(), Linear(12, 6), BatchNorm1d(6, affine=False), LeakyReLU(0.2), "
     "Linear(6, 5, bias=False), BatchNorm1d(5, eps=1e-3, momentum=None), Tanh(), Dropout(0.3), "
     "Linear(5, 4), BatchNorm1d(4, track_running_stats=False), Sigmoid()",
     {6, 3, 4}},
};

std::unique_ptr<Sequential> parse(const std::string& arch, uint64_t seed) {
  Generator gen(seed);
  return parse_arch(arch, gen);
}

Tensor uniform_tensor(const Shape& shape, Generator& gen) {
  Tensor t(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = gen.uniform(0.0f, 1.0f);
  return t;
}

// A few training-mode forwards: running statistics and num_batches_tracked move.
void run_training_forwards(Sequential& net, const Shape& input, uint64_t seed) {
  Generator gen(seed);
  Shape batch = input;
  batch[0] = 16;
  net.train();
  for (int step = 0; step < 3; ++step) net.forward(uniform_tensor(batch, gen));
}

Tensor eval_output(Sequential& net, const Tensor& input) {
  net.eval();
  return net.forward(input);  // a copy of the module's own output
}

Tensor to_tensor(const NamedTensor& named) {
  EXPECT_EQ(named.dtype, DType::F32) << named.name;
  Tensor t(named.shape);
  std::memcpy(t.data(), named.bytes.data(), named.bytes.size());
  return t;
}

NamedTensor to_named(const std::string& name, const Tensor& t) {
  NamedTensor named{name, DType::F32, t.shape(), {}};
  named.bytes.resize(static_cast<size_t>(t.numel()) * sizeof(float));
  std::memcpy(named.bytes.data(), t.data(), named.bytes.size());
  return named;
}

const NamedTensor& entry(const SafetensorsFile& file, const std::string& name) {
  const NamedTensor* found = file.find(name);
  if (!found) throw std::runtime_error("no tensor '" + name + "' in the file");
  return *found;
}

NamedTensor& mutable_entry(SafetensorsFile& file, const std::string& name) {
  for (NamedTensor& t : file.tensors)
    if (t.name == name) return t;
  throw std::runtime_error("no tensor '" + name + "' in the file");
}

double max_abs_difference(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double worst = 0.0;
  for (int64_t i = 0; i < std::min(a.numel(), b.numel()); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return worst;
}

std::vector<std::string> keys_of(const SafetensorsFile& file) {
  std::vector<std::string> keys;
  for (const NamedTensor& t : file.tensors) keys.push_back(t.name);
  return keys;
}

// The message load_state_dict throws, or "" when it loads.
std::string load_error(Sequential& net, const SafetensorsFile& file) {
  try {
    load_state_dict(net, file);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

class CheckpointFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("bnlab_state_dict_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

// ---------------------------------------------------------------- keys

TEST(StateDict, KeysDtypesAndShapesArePyTorchs) {
  auto net = parse(kCases[0].arch, 1);
  const SafetensorsFile file = state_dict(*net);
  EXPECT_EQ(keys_of(file), (std::vector<std::string>{
                               "1.weight", "2.weight", "2.bias", "2.running_mean", "2.running_var",
                               "2.num_batches_tracked", "4.weight", "4.bias"}));
  EXPECT_EQ(entry(file, "1.weight").shape, (Shape{16, 784}));
  EXPECT_EQ(entry(file, "1.weight").dtype, DType::F32);
  EXPECT_EQ(entry(file, "2.running_var").shape, (Shape{16}));
  const NamedTensor& counter = entry(file, "2.num_batches_tracked");
  EXPECT_EQ(counter.dtype, DType::I64);
  EXPECT_TRUE(counter.shape.empty());  // a 0-dim tensor, as torch.long scalars are
  EXPECT_EQ(counter.bytes.size(), 8u);
  EXPECT_EQ(file.metadata.at("format"), "pt");
}

std::vector<std::string> sorted(std::vector<std::string> keys) {
  std::sort(keys.begin(), keys.end());
  return keys;
}

// eval and fold refuse what would evaluate to plausible numbers: a NaN or
// infinite value anywhere, a negative running variance (issue 13).
TEST(StateDict, CheckStateValuesNamesTheFirstBadValue) {
  Generator gen(3);
  auto net = parse_arch("Flatten(), Linear(4, 3), BatchNorm1d(3), ReLU(), Linear(3, 2)", gen);
  EXPECT_NO_THROW(check_state_values(*net));
  auto expect_refused = [&](Tensor& t, float value, const std::string& message) {
    const float saved = t[1];
    t[1] = value;
    try {
      check_state_values(*net);
      ADD_FAILURE() << "no error for " << message;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
    t[1] = saved;
  };
  auto& linear = dynamic_cast<Linear&>((*net)[1]);
  auto& bn = dynamic_cast<BatchNorm&>((*net)[2]);
  expect_refused(linear.weight.value, std::nanf(""), "'1.weight': value [1] is nan");
  expect_refused(bn.bias.value, -INFINITY, "'2.bias': value [1] is -inf");
  expect_refused(bn.running_var, -0.25f, "'2.running_var': value [1] is -0.25");
  bn.running_mean[1] = -5.0f;  // a negative mean is fine
  bn.running_var[1] = 0.0f;    // and so is a zero variance
  EXPECT_NO_THROW(check_state_values(*net));
}

TEST(StateDict, KeysEqualPyTorchsForEveryGoldenArchitecture) {
  // The key sets (a file lists its tensors by dtype, then name, not in
  // state_dict() order; the test above checks that order).
  for (const Case& c : kCases) {
    const SafetensorsFile torch_file =
        io::read_safetensors(kGoldenDir + "/pytorch_" + c.name + ".safetensors");
    auto net = parse(c.arch, 1);
    EXPECT_EQ(sorted(keys_of(state_dict(*net))), sorted(keys_of(torch_file))) << c.name;
  }
}

// ---------------------------------------------------------------- PyTorch -> bnlab

TEST(StateDict, PyTorchFilesLoadAndGiveItsOutputs) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    const SafetensorsFile file =
        io::read_safetensors(kGoldenDir + "/pytorch_" + c.name + ".safetensors");
    const SafetensorsFile io_file =
        io::read_safetensors(kGoldenDir + "/pytorch_" + c.name + "_io.safetensors");
    EXPECT_EQ(checkpoint_arch(file), c.arch);
    auto net = parse(checkpoint_arch(file), 123);  // weights come from the file, not the seed
    load_state_dict(*net, file);
    const Tensor input = to_tensor(entry(io_file, "input"));
    EXPECT_EQ(input.shape(), c.input);
    EXPECT_LE(max_abs_difference(eval_output(*net, input), to_tensor(entry(io_file, "output"))),
              1e-4);
    // The same through the fused BatchNorm + ReLU passes the tool evaluates with.
    net->fuse_batch_norm_relu();
    EXPECT_LE(max_abs_difference(eval_output(*net, input), to_tensor(entry(io_file, "output"))),
              1e-4);
  }
}

TEST(StateDict, PyTorchRunningStatisticsArriveExactly) {
  const SafetensorsFile file = io::read_safetensors(kGoldenDir + "/pytorch_mlp_bn.safetensors");
  auto net = parse(kCases[0].arch, 5);
  load_state_dict(*net, file);
  auto& bn = dynamic_cast<BatchNorm&>((*net)[2]);
  EXPECT_EQ(bn.num_batches_tracked, 3);  // three SGD steps in the script
  const Tensor running_var = to_tensor(entry(file, "2.running_var"));
  for (int64_t i = 0; i < running_var.numel(); ++i) EXPECT_EQ(bn.running_var[i], running_var[i]);
  EXPECT_NE(running_var[0], 1.0f);  // moved away from the initial value
}

TEST(StateDict, HalfPrecisionPyTorchFilesAreConverted) {
  const Case& c = kCases[1];
  const SafetensorsFile io_file =
      io::read_safetensors(kGoldenDir + "/pytorch_" + c.name + "_io.safetensors");
  const Tensor input = to_tensor(entry(io_file, "input"));
  for (const std::string suffix : {"f16", "bf16"}) {
    SCOPED_TRACE(suffix);
    const SafetensorsFile file =
        io::read_safetensors(kGoldenDir + "/pytorch_" + c.name + "_" + suffix + ".safetensors");
    EXPECT_EQ(entry(file, "0.weight").dtype, suffix == "f16" ? DType::F16 : DType::BF16);
    auto net = parse(c.arch, 7);
    load_state_dict(*net, file);
    EXPECT_LE(
        max_abs_difference(eval_output(*net, input), to_tensor(entry(io_file, "output_" + suffix))),
        1e-4);
  }
}

// Plain float -> IEEE half (round to nearest even), for values in half's normal
// range or zero; the reference for the conversion test.
uint16_t float_to_half_reference(double value) {
  if (value == 0.0) return std::signbit(value) ? 0x8000 : 0;
  const uint16_t sign = value < 0 ? 0x8000 : 0;
  int exponent;
  const double fraction = std::frexp(std::abs(value), &exponent);  // value = fraction 2^exponent
  const double mantissa = std::nearbyint((fraction * 2.0 - 1.0) * 1024.0);
  return static_cast<uint16_t>(sign | ((exponent - 1 + 15) << 10) |
                               static_cast<uint16_t>(mantissa));
}

TEST(StateDict, ConvertsF64F16Bf16AndI32Entries) {
  auto net = parse("BatchNorm1d(3)", 0);
  SafetensorsFile file = state_dict(*net);
  const std::vector<double> weight = {0.5, -1.25, 3.0};       // exact in every dtype
  const std::vector<double> bias = {1.0 / 3.0, -2.0, 1e-3};   // F64: rounded once to float
  const std::vector<double> mean = {-0.75, 6.5, 2048.0};      // F16
  const std::vector<double> var = {1.5, 0.0078125, 65536.0};  // BF16
  auto set = [&](const std::string& key, DType dtype, const std::vector<double>& values) {
    NamedTensor& t = mutable_entry(file, key);
    t.dtype = dtype;
    t.bytes.clear();
    for (double v : values) {
      uint8_t raw[8];
      size_t size = 0;
      if (dtype == DType::F64) {
        std::memcpy(raw, &v, size = 8);
      } else if (dtype == DType::F16) {
        const uint16_t h = float_to_half_reference(v);
        std::memcpy(raw, &h, size = 2);
      } else if (dtype == DType::BF16) {
        const float f = static_cast<float>(v);
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        const uint16_t b = static_cast<uint16_t>(bits >> 16);  // exact for these values
        std::memcpy(raw, &b, size = 2);
      } else {
        const float f = static_cast<float>(v);
        std::memcpy(raw, &f, size = 4);
      }
      t.bytes.insert(t.bytes.end(), raw, raw + size);
    }
  };
  set("0.weight", DType::F32, weight);
  set("0.bias", DType::F64, bias);
  set("0.running_mean", DType::F16, mean);
  set("0.running_var", DType::BF16, var);
  NamedTensor& counter = mutable_entry(file, "0.num_batches_tracked");
  counter.dtype = DType::I32;
  const int32_t count = 41;
  counter.bytes.assign(reinterpret_cast<const uint8_t*>(&count),
                       reinterpret_cast<const uint8_t*>(&count) + 4);
  counter.shape = {1};  // PyTorch accepts a 1-element counter for a 0-dim one too

  load_state_dict(*net, file);
  auto& bn = dynamic_cast<BatchNorm&>((*net)[0]);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(bn.weight.value[i], static_cast<float>(weight[i]));
    EXPECT_EQ(bn.bias.value[i], static_cast<float>(bias[i]));
    EXPECT_EQ(bn.running_mean[i], static_cast<float>(mean[i]));
    EXPECT_EQ(bn.running_var[i], static_cast<float>(var[i]));
  }
  EXPECT_EQ(bn.num_batches_tracked, 41);
}

TEST(StateDict, HalfSubnormalsInfinitiesAndNansConvert) {
  auto net = parse("BatchNorm1d(6)", 0);
  SafetensorsFile file = state_dict(*net);
  NamedTensor& t = mutable_entry(file, "0.weight");
  t.dtype = DType::F16;
  // smallest subnormal 2^-24, largest subnormal (1023/1024) 2^-14, -0, +inf, -inf, nan
  const std::vector<uint16_t> halves = {0x0001, 0x03ff, 0x8000, 0x7c00, 0xfc00, 0x7e00};
  t.bytes.assign(reinterpret_cast<const uint8_t*>(halves.data()),
                 reinterpret_cast<const uint8_t*>(halves.data()) + 12);
  load_state_dict(*net, file);
  const Tensor& w = dynamic_cast<BatchNorm&>((*net)[0]).weight.value;
  EXPECT_EQ(w[0], std::ldexp(1.0f, -24));
  EXPECT_EQ(w[1], static_cast<float>(std::ldexp(1023.0 / 1024.0, -14)));
  EXPECT_EQ(w[2], 0.0f);
  EXPECT_TRUE(std::signbit(w[2]));
  EXPECT_EQ(w[3], INFINITY);
  EXPECT_EQ(w[4], -INFINITY);
  EXPECT_TRUE(std::isnan(w[5]));
}

// ---------------------------------------------------------------- round trip

TEST_F(CheckpointFiles, CheckpointRoundTripGivesTheSameOutputs) {
  const Case& c = kCases[1];
  auto net = parse(c.arch, 11);
  run_training_forwards(*net, c.input, 12);
  save_checkpoint(path("model.safetensors"), *net, c.arch);

  const SafetensorsFile file = io::read_safetensors(path("model.safetensors"));
  EXPECT_EQ(checkpoint_arch(file), c.arch);
  EXPECT_EQ(file.metadata.at("format"), "pt");
  auto fresh = parse(checkpoint_arch(file), 99);
  load_state_dict(*fresh, file);

  // Every entry identical, bit for bit.
  const SafetensorsFile before = state_dict(*net), after = state_dict(*fresh);
  ASSERT_EQ(keys_of(before), keys_of(after));
  for (size_t i = 0; i < before.tensors.size(); ++i) {
    EXPECT_EQ(before.tensors[i].bytes, after.tensors[i].bytes) << before.tensors[i].name;
    EXPECT_EQ(before.tensors[i].shape, after.tensors[i].shape) << before.tensors[i].name;
  }
  EXPECT_EQ(dynamic_cast<BatchNorm&>((*fresh)[1]).num_batches_tracked, 3);

  Generator gen(13);
  const Tensor input = uniform_tensor(c.input, gen);
  EXPECT_EQ(max_abs_difference(eval_output(*net, input), eval_output(*fresh, input)), 0.0);
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST_F(CheckpointFiles, ResavingAPyTorchFileReproducesItByteForByte) {
  // The script writes safetensors in the reference layout bnlab's writer
  // follows, with the same metadata bnlab writes: load + save is the identity.
  for (const Case& c : kCases) {
    const std::string golden = kGoldenDir + "/pytorch_" + c.name + ".safetensors";
    auto net = parse(c.arch, 3);
    load_state_dict(*net, io::read_safetensors(golden));
    save_checkpoint(path(c.name + ".safetensors"), *net, c.arch);
    EXPECT_TRUE(file_bytes(path(c.name + ".safetensors")) == file_bytes(golden)) << c.name;
  }
}

TEST(StateDict, CheckpointArchIsEmptyForFilesWithoutOne) {
  SafetensorsFile file;
  EXPECT_EQ(checkpoint_arch(file), "");
  file.metadata["arch"] = "ReLU()";
  EXPECT_EQ(checkpoint_arch(file), "ReLU()");
}

// ---------------------------------------------------------------- errors

TEST(StateDict, MissingAndUnexpectedKeysAreNamed) {
  auto net = parse(kCases[0].arch, 1);
  SafetensorsFile file = state_dict(*net);
  file.metadata["arch"] = kCases[0].arch;

  SafetensorsFile missing = file;
  missing.tensors.erase(missing.tensors.begin() + 3);  // 2.running_mean
  std::string message = load_error(*net, missing);
  EXPECT_NE(message.find("missing key '2.running_mean'"), std::string::npos) << message;
  EXPECT_NE(message.find("saved for --arch \"Flatten(), Linear(784, 16"), std::string::npos)
      << message;

  SafetensorsFile extra = file;
  extra.tensors.push_back(to_named("5.weight", Tensor({2})));
  message = load_error(*net, extra);
  EXPECT_NE(message.find("unexpected key '5.weight'"), std::string::npos) << message;

  // A file for the network without BN: both kinds at once, each key named.
  auto plain = parse("Flatten(), Linear(784, 16), ReLU(), Linear(16, 10)", 1);
  message = load_error(*plain, file);
  EXPECT_NE(message.find("missing keys '1.bias', '3.weight', '3.bias'"), std::string::npos)
      << message;
  EXPECT_NE(message.find("unexpected keys '2.weight', '2.bias', '2.running_mean', "
                         "'2.running_var', '2.num_batches_tracked', '4.weight', '4.bias'"),
            std::string::npos)
      << message;

  // Listed in state_dict() order whatever the file's order (files list I64 first).
  SafetensorsFile reordered = file;
  std::reverse(reordered.tensors.begin(), reordered.tensors.end());
  message = load_error(*plain, reordered);
  EXPECT_NE(message.find("unexpected keys '2.weight', '2.bias', '2.running_mean', "
                         "'2.running_var', '2.num_batches_tracked', '4.weight', '4.bias'"),
            std::string::npos)
      << message;

  SafetensorsFile twice = file;
  twice.tensors.push_back(twice.tensors[0]);
  message = load_error(*net, twice);
  EXPECT_NE(message.find("'1.weight': appears twice"), std::string::npos) << message;
}

TEST(StateDict, WrongShapesAndDtypesAreNamed) {
  const SafetensorsFile torch_file =
      io::read_safetensors(kGoldenDir + "/pytorch_mlp_bn.safetensors");
  auto narrower = parse(
      "Flatten(), Linear(784, 8, bias=False), BatchNorm1d(8), ReLU(), "
      "Linear(8, 10)",
      1);
  std::string message = load_error(*narrower, torch_file);
  EXPECT_NE(message.find("state dict key '1.weight': shape (16, 784) in the file, the network "
                         "expects (8, 784)"),
            std::string::npos)
      << message;

  auto net = parse(kCases[0].arch, 1);
  SafetensorsFile file = state_dict(*net);
  SafetensorsFile wrong_dtype = file;
  NamedTensor& weight = wrong_dtype.tensors[0];
  weight.dtype = DType::I32;  // same byte count as F32
  message = load_error(*net, wrong_dtype);
  EXPECT_NE(message.find("'1.weight': dtype I32, expected F32"), std::string::npos) << message;

  SafetensorsFile float_counter = file;
  NamedTensor& counter = float_counter.tensors[5];
  ASSERT_EQ(counter.name, "2.num_batches_tracked");
  counter.dtype = DType::F64;
  message = load_error(*net, float_counter);
  EXPECT_NE(message.find("'2.num_batches_tracked': dtype F64, expected I64"), std::string::npos)
      << message;

  SafetensorsFile vector_counter = file;
  vector_counter.tensors[5].shape = {2};
  vector_counter.tensors[5].bytes.resize(16);
  message = load_error(*net, vector_counter);
  EXPECT_NE(message.find("'2.num_batches_tracked': shape (2,), expected () (a scalar)"),
            std::string::npos)
      << message;

  SafetensorsFile short_bytes = file;
  short_bytes.tensors[1].bytes.resize(12);
  message = load_error(*net, short_bytes);
  EXPECT_NE(message.find("'2.weight': 12 bytes for shape (16,) of F32"), std::string::npos)
      << message;
}

TEST(StateDict, AFailedLoadLeavesTheNetworkUntouched) {
  auto net = parse(kCases[0].arch, 1);
  const SafetensorsFile before = state_dict(*net);
  SafetensorsFile file = io::read_safetensors(kGoldenDir + "/pytorch_mlp_bn.safetensors");
  // Every entry fits except the last one checked: nothing may be copied.
  for (NamedTensor& t : file.tensors)
    if (t.name == "4.bias") t.dtype = DType::I32;
  EXPECT_THROW(load_state_dict(*net, file), Error);
  const SafetensorsFile after = state_dict(*net);
  for (size_t i = 0; i < before.tensors.size(); ++i)
    EXPECT_EQ(before.tensors[i].bytes, after.tensors[i].bytes) << before.tensors[i].name;
}

TEST(StateDict, FilesThatLieAreErrorsNotCrashes) {
  // A header length past the end of the file: io's error, passed through.
  const std::string path =
      (fs::temp_directory_path() / ("bnlab_state_dict_lie_" + std::to_string(::getpid()))).string();
  {
    std::ofstream out(path, std::ios::binary);
    const uint64_t length = 1 << 20;
    out.write(reinterpret_cast<const char*>(&length), 8);
    out << "{}";
  }
  EXPECT_THROW(io::read_safetensors(path), Error);
  fs::remove(path);
}

// ---------------------------------------------------------------- atomic saves

TEST_F(CheckpointFiles, AFailedSaveKeepsThePreviousCheckpoint) {
  const Case& c = kCases[0];
  auto net = parse(c.arch, 1);
  const std::string file = path("model.safetensors");
  save_checkpoint(file, *net, c.arch);
  std::ifstream in(file, std::ios::binary);
  const std::string old_bytes((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
  in.close();

  // The next save runs out of room mid-write: a file-size limit (which binds
  // root too, unlike a read-only folder) makes write() fail with EFBIG.
  auto changed = parse(c.arch, 2);
  struct rlimit saved_limit {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved_limit), 0);
  struct rlimit small_limit = saved_limit;
  small_limit.rlim_cur = 4096;
  auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small_limit), 0);
  std::string message;
  try {
    save_checkpoint(file, *changed, c.arch);
  } catch (const Error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved_limit);
  ::signal(SIGXFSZ, old_handler);

  EXPECT_NE(message.find(file), std::string::npos) << "message: " << message;
  std::ifstream again(file, std::ios::binary);
  const std::string now_bytes((std::istreambuf_iterator<char>(again)),
                              std::istreambuf_iterator<char>());
  EXPECT_TRUE(now_bytes == old_bytes) << "the previous checkpoint was changed";
  // And no temporary file is left beside it.
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1u);

  // A folder that does not exist is an error naming the path.
  EXPECT_THROW(save_checkpoint(path("missing/model.safetensors"), *net, c.arch), Error);
}

// ---------------------------------------------------------------- bnlab -> PyTorch

// bnlab's checkpoint for each case, as committed after PyTorch loaded it with
// load_state_dict(strict=True) and wrote its outputs (pytorch_from_bnlab_*).
// With BNLAB_WRITE_STATE_DICT_GOLDENS=DIR set, the test first writes the
// bnlab_* files into DIR (step 2 of the script's docstring).
TEST(StateDict, BnlabCheckpointsLoadIntoPyTorch) {
  const char* write_dir = std::getenv("BNLAB_WRITE_STATE_DICT_GOLDENS");
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    if (write_dir) {
      auto net = parse(c.arch, 2024);
      run_training_forwards(*net, c.input, 2025);
      Generator gen(2026);
      const Tensor input = uniform_tensor(c.input, gen);
      save_checkpoint(std::string(write_dir) + "/bnlab_" + c.name + ".safetensors", *net, c.arch);
      SafetensorsFile io_file;
      io_file.tensors = {to_named("input", input), to_named("output", eval_output(*net, input))};
      io::write_safetensors(std::string(write_dir) + "/bnlab_" + c.name + "_io.safetensors",
                            io_file);
    }
    const std::string torch_path = kGoldenDir + "/pytorch_from_bnlab_" + c.name + ".safetensors";
    if (!fs::exists(torch_path)) {
      ADD_FAILURE() << torch_path << " is missing: run make_state_dict_goldens.py --from-bnlab";
      continue;
    }
    const SafetensorsFile checkpoint =
        io::read_safetensors(kGoldenDir + "/bnlab_" + c.name + ".safetensors");
    const SafetensorsFile io_file =
        io::read_safetensors(kGoldenDir + "/bnlab_" + c.name + "_io.safetensors");
    const SafetensorsFile torch_file = io::read_safetensors(torch_path);
    EXPECT_EQ(checkpoint_arch(checkpoint), c.arch);
    auto net = parse(checkpoint_arch(checkpoint), 1);
    load_state_dict(*net, checkpoint);
    const Tensor output = eval_output(*net, to_tensor(entry(io_file, "input")));
    EXPECT_LE(max_abs_difference(output, to_tensor(entry(torch_file, "output"))), 1e-4);

    // Today's writer still produces what PyTorch accepted: same keys, dtypes,
    // shapes and bytes for the same weights.
    const SafetensorsFile rewritten = state_dict(*net);
    ASSERT_EQ(sorted(keys_of(rewritten)), sorted(keys_of(checkpoint)));
    for (const NamedTensor& t : rewritten.tensors) {
      const NamedTensor& committed = entry(checkpoint, t.name);
      EXPECT_EQ(t.dtype, committed.dtype) << t.name;
      EXPECT_EQ(t.shape, committed.shape) << t.name;
      EXPECT_TRUE(t.bytes == committed.bytes) << t.name;
    }
  }
}

TEST_F(CheckpointFiles, DeeplyNestedStoredArchitectureIsAnErrorNotACrash) {
  // A checkpoint's stored text goes through the same parser (issue 13).
  auto net = parse("Linear(1, 2)", 0);
  const std::string deep =
      "Linear(" + std::string(30000, '(') + "1" + std::string(30000, ')') + ", 2)";
  save_checkpoint(path("deep.safetensors"), *net, deep);
  const std::string stored = checkpoint_arch(io::read_safetensors(path("deep.safetensors")));
  ASSERT_EQ(stored, deep);
  Generator gen(0);
  try {
    parse_arch(stored, gen);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nested deeper than"), std::string::npos);
  }
}

}  // namespace
}  // namespace bnlab::nn
