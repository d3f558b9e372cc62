// Helpers the subcommands share (see common.hpp).
#include "common.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <type_traits>

#include "bnlab/error.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/nn/precision.hpp"
#include "bnlab/nn/state_dict.hpp"
#include "bnlab/random.hpp"
#include "bnlab/threading.hpp"

namespace bnlab::cli {

namespace {

// Long user text is cut in messages.
std::string shown(const std::string& text) {
  return text.size() > 40 ? text.substr(0, 40) + "..." : text;
}

CLI::Validator number_at_least(double low, bool inclusive, const std::string& name) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double value = 0.0;
        if (!CLI::detail::lexical_cast(text, value)) return "expected a number, got " + shown(text);
        if (inclusive ? value >= low : value > low) return "";
        return std::string("must be ") + (inclusive ? ">= " : "> ") + CLI::detail::to_string(low) +
               ", got " + shown(text);
      },
      name);
}

// A decimal integer of T's range, rewritten canonically (CLI11 then reads it
// with base 0, where a leading 0 would mean octal).
template <class T>
std::string strict_integer(std::string& text) {
  T value{};
  const char* begin = text.data();
  if (!text.empty() && text[0] == '+') ++begin;
  const auto [end, error] = std::from_chars(begin, text.data() + text.size(), value);
  if (error == std::errc::result_out_of_range ||
      (std::is_unsigned_v<T> && !text.empty() && text[0] == '-'))
    return "out of range: must be an integer in [" + std::to_string(std::numeric_limits<T>::min()) +
           ", " + std::to_string(std::numeric_limits<T>::max()) + "], got " + shown(text);
  if (text.empty() || begin == text.data() + text.size() || error != std::errc() ||
      end != text.data() + text.size())
    return "expected a decimal integer, got " + shown(text);
  text = std::to_string(value);
  return "";
}

std::string finite_number(std::string& text) {
  char* end = nullptr;
  const double value = text.empty() ? 0.0 : std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size())
    return "expected a number, got " + shown(text);
  if (!std::isfinite(value)) return "must be a finite number, got " + shown(text);
  return "";
}

void make_option_strict(CLI::Option& option) {
  // The type's name is what CLI11 keeps of it ("INT", "UINT", "FLOAT"; then
  // ":" and the validators' descriptions).
  const std::string full = option.get_type_name();
  const std::string type = full.substr(0, full.find(':'));
  // transform: runs before the option's own checks and may rewrite the text.
  if (type == "INT")
    option.transform(CLI::Validator(strict_integer<int64_t>, ""));
  else if (type == "UINT")
    option.transform(CLI::Validator(strict_integer<uint64_t>, ""));
  else if (type == "FLOAT")
    option.transform(CLI::Validator(finite_number, ""));
}

}  // namespace

CLI::Validator positive() { return number_at_least(0.0, false, "POSITIVE"); }
CLI::Validator non_negative() { return number_at_least(0.0, true, "NONNEGATIVE"); }

CLI::Validator number_in(double low, double high, bool high_inclusive) {
  const std::string range = "[" + CLI::detail::to_string(low) + ", " +
                            CLI::detail::to_string(high) + (high_inclusive ? "]" : ")");
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double value = 0.0;
        if (!CLI::detail::lexical_cast(text, value)) return "expected a number, got " + shown(text);
        if (value >= low && (high_inclusive ? value <= high : value < high)) return "";
        return "must be in " + range + ", got " + shown(text);
      },
      range);
}

void make_numbers_strict(CLI::App& app) {
  for (CLI::Option* option : app.get_options()) make_option_strict(*option);
  for (CLI::App* command : app.get_subcommands({})) make_numbers_strict(*command);
}

void add_data_options(CLI::App& command, DataOptions& options, const std::string& limit_help) {
  command.add_option("--data", options.dir, "Folder with the IDX files (MNIST's file names)")
      ->capture_default_str();
  command.add_option("--limit", options.limit, limit_help)->check(non_negative());
}

data::Split load_data(const DataOptions& options, int64_t train_limit, int64_t test_limit) {
  data::Split split = data::load_split(options.dir);
  if (train_limit > 0) split.train = data::head(split.train, train_limit);
  if (test_limit > 0) split.test = data::head(split.test, test_limit);
  return split;
}

data::Dataset load_test_data(const DataOptions& options, int64_t limit) {
  data::Dataset test = data::load_test_split(options.dir);
  return limit > 0 ? data::head(test, limit) : test;
}

void add_threads_option(CLI::App& command, int& threads) {
  command.add_option("--threads", threads, "Threads (default: all cores, or OMP_NUM_THREADS)")
      ->check(CLI::Range(0, kMaxThreads));
}

void apply_threads(int threads) {
  if (threads > 0) set_num_threads(threads);
}

void add_precision_option(CLI::App& command, std::string& precision) {
  command
      .add_option("--precision", precision,
                  "fp32, or bf16: Linear and Conv2d products in bf16 through oneDNN, and the "
                  "activations between them (BN, ReLU, MaxPool2d, Flatten) in bf16 with float "
                  "statistics; loss, weights and optimizer float; needs AVX512-BF16 or AMX")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16"}));
}

void apply_precision(const std::string& precision) {
  nn::set_compute_precision(nn::parse_compute_precision(precision));
}

std::string checkpoint_arch(const io::SafetensorsFile& file, const std::string& path,
                            const std::string& arch_option) {
  if (!arch_option.empty()) return arch_option;
  std::string arch = nn::checkpoint_arch(file);
  if (arch.empty())
    throw Error(path + " has no architecture in its metadata (not written by bnlab): pass "
                "--arch with the network in PyTorch's notation, e.g. --arch \"Flatten(), "
                "Linear(784, 10)\"");
  return arch;
}

std::string ArchOptions::text() const { return model.empty() ? arch : nn::preset_arch(model); }

void add_arch_options(CLI::App& command, ArchOptions& options) {
  CLI::Option* arch =
      command.add_option("--arch", options.arch,
                         "Architecture in PyTorch's notation (default: the one the file stores)");
  command
      .add_option("--model", options.model,
                  "A preset: mlp, mlp-bn, cnn, cnn-bn (instead of --arch)")
      ->check(CLI::IsMember(nn::preset_names()))
      ->excludes(arch);
}

Shape example_input_shape(const data::Dataset& d) { return {1, d.channels, d.rows, d.cols}; }

std::unique_ptr<nn::Sequential> build_network(const std::string& arch, Generator& generator,
                                              const data::Dataset& example) {
  std::unique_ptr<nn::Sequential> net = nn::parse_arch(arch, generator, example_input_shape(example));
  net->fuse_batch_norm_relu();
  return net;
}

std::unique_ptr<nn::Sequential> build_network(const std::string& arch, uint64_t seed,
                                              const data::Dataset& example) {
  // For networks that do not train (eval, fold, and demo's MLPs without Dropout).
  Generator generator(seed);
  return build_network(arch, generator, example);
}

int64_t steps_per_epoch(int64_t count, const train::TrainOptions& options) {
  return options.drop_last ? count / options.batch : (count + options.batch - 1) / options.batch;
}

void print_json_line(const nlohmann::json& object) {
  std::cout << object.dump() << std::endl;
}

std::string percent(double fraction) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f%%", 100.0 * fraction);
  return text;
}

}  // namespace bnlab::cli
