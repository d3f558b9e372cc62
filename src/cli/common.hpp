// What the subcommands share: the data options, building a checked network,
// thread count, printing. Each subcommand lives in its own file and registers
// itself with add_<name>_command(app); main.cpp only lists them.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "bnlab/data/idx.hpp"
#include "bnlab/io/safetensors.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/random.hpp"
#include "bnlab/train/progress.hpp"
#include "bnlab/train/trainer.hpp"

namespace bnlab::cli {

void add_demo_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);

// Test-set batch for evaluation in eval mode: big enough for efficient matrix
// products, small enough that the activations of a CNN stay a few tens of MB.
constexpr int64_t kEvalBatch = 256;

// --data DIR and --limit N.
struct DataOptions {
  std::string dir = data::default_data_dir();
  int64_t limit = 0;  // 0: everything
};
void add_data_options(CLI::App& command, DataOptions& options, const std::string& limit_help);
// Reads the split; with a limit, the first `train_limit` training examples and
// the first `test_limit` test examples (0: all of that split).
data::Split load_data(const DataOptions& options, int64_t train_limit, int64_t test_limit);
// The test split alone (eval, fold), its first `limit` examples (0: all).
data::Dataset load_test_data(const DataOptions& options, int64_t limit);

// Option checks with short messages ("must be > 0, got 0"); CLI11's own
// PositiveNumber prints its whole double range.
CLI::Validator positive();
CLI::Validator non_negative();
// [low, high] (high_inclusive) or [low, high).
CLI::Validator number_in(double low, double high, bool high_inclusive);

// Makes every numeric option of app and of its subcommands strict, once for
// all commands (main.cpp calls it after they are registered): an integer is
// decimal and within its type (CLI11 alone saturates 99999999999999999999,
// wraps -1 into an unsigned and reads 010 as octal 8); a float is finite
// (CLI11 alone takes inf, nan and 1e400). A usage error names the option and value.
void make_numbers_strict(CLI::App& app);

// --threads T (0: OpenMP's default, which OMP_NUM_THREADS sets).
void add_threads_option(CLI::App& command, int& threads);
void apply_threads(int threads);

// --precision fp32|bf16 (bnlab/nn/precision.hpp), and setting it: bf16 on a
// CPU without bf16 throws, which the CLI turns into exit 1 with the reason.
void add_precision_option(CLI::App& command, std::string& precision);
void apply_precision(const std::string& precision);

// Parses the architecture, checks the shapes for one example of `example`'s
// shape (the error names the layer) and fuses each BatchNorm + ReLU pair.
std::unique_ptr<nn::Sequential> build_network(const std::string& arch, uint64_t seed,
                                              const data::Dataset& example);
// The same with a generator the caller keeps alive as long as the network:
// Dropout draws its masks from it while training.
std::unique_ptr<nn::Sequential> build_network(const std::string& arch, Generator& generator,
                                              const data::Dataset& example);
// The architecture of a checkpoint: arch_option when given, else the one the
// file stores; an error telling the user to pass --arch when it has none.
std::string checkpoint_arch(const io::SafetensorsFile& file, const std::string& path,
                            const std::string& arch_option);

// eval's and fold's way to name the network: --arch TEXT or --model PRESET
// (as train takes them), else the checkpoint's stored one.
struct ArchOptions {
  std::string arch, model;
  // The text to use in place of the stored architecture ("" for the stored one).
  std::string text() const;
};
void add_arch_options(CLI::App& command, ArchOptions& options);

// (1, C, H, W) for one example of the data set.
Shape example_input_shape(const data::Dataset& d);

// Steps train_epoch takes over `count` examples.
int64_t steps_per_epoch(int64_t count, const train::TrainOptions& options);

// Thrown to end bnlab with this exit status after the work was wound up
// (an interrupted train: 128 + the signal's number); main returns it.
struct ExitStatus {
  int status;
};

// The JSON object as one line, the last of stdout.
void print_json_line(const nlohmann::json& object);

// "85.12%"
std::string percent(double fraction);
// loss_text: bnlab/train/progress.hpp.
using bnlab::loss_text;

}  // namespace bnlab::cli
