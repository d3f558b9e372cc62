// The tool's manners (issue 13): "did you mean" for a mistyped command; eval
// and fold read only the test files and take --model; data errors name the
// folder and the file; a torch.save pickle is recognised; checkpoints with
// non-finite values or negative running variances are refused by name; a
// final Softmax is warned about. Every run uses a tiny IDX folder written
// here, so none needs Fashion-MNIST.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bnlab/io/safetensors.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/nn/state_dict.hpp"
#include "bnlab/random.hpp"
#include "cli_run.hpp"

namespace {

using namespace bnlab_cli_test;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

void put_be32(std::vector<uint8_t>& bytes, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<uint8_t>(v >> shift));
}

// `count` 28 x 28 images of seeded noise and their labels, MNIST's file names (plain).
void write_split(const std::string& dir, const std::string& prefix, uint32_t count) {
  bnlab::Generator gen(count);
  std::vector<uint8_t> images, labels;
  put_be32(images, 0x803);
  for (uint32_t v : {count, 28u, 28u}) put_be32(images, v);
  for (uint32_t i = 0; i < count * 28 * 28; ++i)
    images.push_back(static_cast<uint8_t>(gen.uniform() * 255.0));
  put_be32(labels, 0x801);
  put_be32(labels, count);
  for (uint32_t i = 0; i < count; ++i) labels.push_back(static_cast<uint8_t>(i % 10));
  write_bytes(dir + "/" + prefix + "-images-idx3-ubyte", images);
  write_bytes(dir + "/" + prefix + "-labels-idx1-ubyte", labels);
}

// eval's or fold's command line for a checkpoint (fold writes dir/folded.safetensors).
std::string command_line(const std::string& command, const std::string& weights,
                         const std::string& dir) {
  return command + " --weights '" + weights + "' --data '" + dir + "' --threads 1" +
         (command == "fold" ? " --out '" + dir + "/folded.safetensors'" : "");
}

// A folder with the test split only (eval and fold need no more).
std::string test_only_folder(const std::string& name) {
  const std::string dir = scratch_dir(name);
  write_split(dir, "t10k", 40);
  return dir;
}

// A checkpoint of `arch` with seeded weights; `change` may alter the state first.
std::string checkpoint(const std::string& dir, const std::string& arch,
                       void (*change)(bnlab::io::SafetensorsFile&) = nullptr,
                       bool keep_arch = true) {
  bnlab::Generator gen(1);
  auto net = bnlab::nn::parse_arch(arch, gen);
  bnlab::io::SafetensorsFile file = bnlab::nn::state_dict(*net);
  if (keep_arch) file.metadata["arch"] = arch;
  if (change) change(file);
  const std::string path = dir + "/net.safetensors";
  bnlab::io::write_safetensors(path, file);
  return path;
}

const char* kMlp = "Flatten(), Linear(784, 512), ReLU(), Linear(512, 256), ReLU(), Linear(256, 10)";
const char* kSmallBn =
    "Flatten(), Linear(784, 8, bias=False), BatchNorm1d(8), ReLU(), Linear(8, 10)";

// Sets value [3] of the named float entry.
template <int kind>  // 0: nan, 1: inf, 2: -0.5
void poison(bnlab::io::SafetensorsFile& file, const std::string& name) {
  for (bnlab::io::NamedTensor& t : file.tensors)
    if (t.name == name) {
      const float value = kind == 0   ? std::numeric_limits<float>::quiet_NaN()
                          : kind == 1 ? std::numeric_limits<float>::infinity()
                                      : -0.5f;
      std::memcpy(t.bytes.data() + 3 * sizeof(float), &value, sizeof value);
    }
}

TEST(CliManners, AMistypedCommandGetsDidYouMeanAndExitsWithTwo) {
  const Finished trian = run_bnlab("trian --model mlp");
  EXPECT_EQ(trian.status, 2);
  EXPECT_TRUE(contains(trian.err, "unknown command 'trian' (did you mean train?)")) << trian.err;
  const Finished evl = run_bnlab("evl --weights x");
  EXPECT_EQ(evl.status, 2);
  EXPECT_TRUE(contains(evl.err, "did you mean eval?")) << evl.err;
  const Finished other = run_bnlab("frobnicate");
  EXPECT_EQ(other.status, 2);
  EXPECT_FALSE(contains(other.err, "did you mean")) << other.err;
  EXPECT_TRUE(contains(other.err, "demo, train, eval, benefits, fold")) << other.err;
}

TEST(CliManners, EvalAndFoldReadOnlyTheTestFiles) {
  const std::string dir = test_only_folder("test_only");
  const std::string weights = checkpoint(dir, kSmallBn);
  const Finished eval = run_bnlab(command_line("eval", weights, dir));
  ASSERT_EQ(eval.status, 0) << eval.err;
  EXPECT_TRUE(contains(eval.out, "(40 images of " + dir)) << eval.out;
  const Finished fold = run_bnlab(command_line("fold", weights, dir) + " --json");
  ASSERT_EQ(fold.status, 0) << fold.err;
  const nlohmann::json result = nlohmann::json::parse(fold.last_line());
  EXPECT_TRUE(result["checked"].get<bool>()) << fold.out;
  EXPECT_EQ(result["examples"].get<int>(), 40);
}

TEST(CliManners, EvalAndFoldTakeAPresetForAFileWithoutArchitecture) {
  const std::string dir = test_only_folder("model");
  const std::string weights = checkpoint(dir, kMlp, nullptr, false);  // as PyTorch saves it
  const Finished eval = run_bnlab(command_line("eval", weights, dir) + " --model mlp --json");
  ASSERT_EQ(eval.status, 0) << eval.err;
  EXPECT_TRUE(nlohmann::json::parse(eval.last_line()).contains("test_accuracy"));
  const Finished fold = run_bnlab(command_line("fold", weights, dir) + " --model mlp");
  EXPECT_EQ(fold.status, 0) << fold.err;
  const Finished both =
      run_bnlab("eval --weights '" + weights + "' --model mlp --arch 'Flatten()'");
  EXPECT_EQ(both.status, 2) << both.err;
  const Finished unknown = run_bnlab("eval --weights '" + weights + "' --model resnet");
  EXPECT_EQ(unknown.status, 2) << unknown.err;
  const Finished wrong = run_bnlab(command_line("eval", weights, dir) + " --model cnn");
  EXPECT_EQ(wrong.status, 1);  // the keys are the MLP's
  EXPECT_TRUE(contains(wrong.err, "missing keys")) << wrong.err;
}

TEST(CliManners, DataErrorsNameTheFolderAndTheFile) {
  const std::string dir = scratch_dir("partial");
  write_split(dir, "t10k", 10);
  std::remove((dir + "/t10k-labels-idx1-ubyte").c_str());
  const std::string weights = checkpoint(dir, kMlp);
  const Finished missing = run_bnlab("eval --weights '" + weights + "' --data '" + dir + "'");
  EXPECT_EQ(missing.status, 1);
  EXPECT_TRUE(contains(missing.err, "data folder " + dir + " has no t10k-labels-idx1-ubyte"))
      << missing.err;
  EXPECT_FALSE(contains(missing.err, "dataset-fashion-mnist")) << missing.err;  // not the default
  write_bytes(dir + "/t10k-labels-idx1-ubyte", {0, 0, 8, 3, 0, 0, 0, 10});      // an images magic
  const Finished wrong = run_bnlab("eval --weights '" + weights + "' --data '" + dir + "'");
  EXPECT_EQ(wrong.status, 1);
  EXPECT_TRUE(contains(wrong.err, dir + "/t10k-labels-idx1-ubyte:")) << wrong.err;
  const Finished no_folder =
      run_bnlab("eval --weights '" + weights + "' --data '" + dir + "/nope'");
  EXPECT_EQ(no_folder.status, 1);
  EXPECT_TRUE(contains(no_folder.err, "data folder " + dir + "/nope not found")) << no_folder.err;
  EXPECT_FALSE(contains(no_folder.err, "dataset-fashion-mnist")) << no_folder.err;
}

TEST(CliManners, ATorchSavePickleIsRecognisedAndSafetensorsSuggested) {
  const std::string dir = scratch_dir("pickle");
  // The first bytes of torch.save's two formats: a zip archive and a legacy pickle.
  std::vector<uint8_t> zip = {'P', 'K', 3, 4, 0, 0, 8, 8, 0, 0};
  std::vector<uint8_t> legacy = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20};
  zip.resize(600, 0);
  legacy.resize(600, 0);
  for (const auto& [name, bytes] : {std::pair{"zip.pt", zip}, std::pair{"legacy.pt", legacy}}) {
    const std::string path = dir + "/" + name;
    write_bytes(path, bytes);
    for (const char* command : {"eval", "fold"}) {
      const Finished run = run_bnlab(command_line(command, path, dir));
      EXPECT_EQ(run.status, 1) << command;
      EXPECT_TRUE(contains(run.err, path + ": is a PyTorch pickle (torch.save")) << run.err;
      EXPECT_TRUE(contains(run.err, "save_file(model.state_dict(), \"net.safetensors\")"))
          << run.err;
      EXPECT_TRUE(contains(run.err, "docs/pytorch.md")) << run.err;
    }
  }
}

TEST(CliManners, EvalAndFoldRefuseNonFiniteValuesAndNegativeVariancesByName) {
  const std::string dir = test_only_folder("poison");
  const std::vector<std::pair<void (*)(bnlab::io::SafetensorsFile&), std::string>> cases = {
      {[](bnlab::io::SafetensorsFile& f) { poison<0>(f, "1.weight"); },
       "state dict key '1.weight': value [3] is nan"},
      {[](bnlab::io::SafetensorsFile& f) { poison<1>(f, "2.running_mean"); },
       "state dict key '2.running_mean': value [3] is inf"},
      {[](bnlab::io::SafetensorsFile& f) { poison<2>(f, "2.running_var"); },
       "state dict key '2.running_var': value [3] is -0.5"},
      {[](bnlab::io::SafetensorsFile& f) { poison<0>(f, "2.running_var"); },
       "state dict key '2.running_var': value [3] is nan"},
  };
  for (const auto& [change, message] : cases) {
    const std::string weights = checkpoint(dir, kSmallBn, change);
    for (const char* command : {"eval", "fold"}) {
      const Finished run = run_bnlab(command_line(command, weights, dir));
      EXPECT_EQ(run.status, 1) << command << " " << message;
      EXPECT_TRUE(contains(run.err, message)) << command << ": " << run.err;
    }
  }
}

TEST(CliManners, TrainWarnsOfAFinalSoftmaxOnly) {
  const std::string dir = scratch_dir("softmax");
  write_split(dir, "train", 32);
  write_split(dir, "t10k", 16);
  const std::string common = " --epochs 1 --batch 16 --threads 1 --data '" + dir + "'";
  const Finished softmax =
      run_bnlab("train --arch 'Flatten(), Linear(784, 10), Softmax(dim=1)'" + common);
  EXPECT_EQ(softmax.status, 0) << softmax.err;
  EXPECT_TRUE(contains(softmax.err, "warning: the network ends with Softmax(dim=1)"))
      << softmax.err;
  const Finished log_softmax =
      run_bnlab("train --arch 'Flatten(), Linear(784, 10), LogSoftmax(dim=1)'" + common);
  EXPECT_EQ(log_softmax.status, 0) << log_softmax.err;
  EXPECT_FALSE(contains(log_softmax.err, "warning")) << log_softmax.err;
}

}  // namespace
