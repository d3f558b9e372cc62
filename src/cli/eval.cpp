// bnlab eval: loads a safetensors checkpoint (bnlab's own, or PyTorch's
// nn.Sequential state dict with --arch or --model) and reports test loss and
// accuracy in eval mode (running statistics). Reads the test files only, and
// refuses a checkpoint with non-finite values or negative running variances.
#include <cstdio>
#include <memory>
#include <string>

#include "bnlab/dist/mpi_replicas.hpp"
#include "bnlab/error.hpp"
#include "bnlab/io/safetensors.hpp"
#include "bnlab/nn/state_dict.hpp"
#include "bnlab/train/trainer.hpp"
#include "common.hpp"

namespace bnlab::cli {
namespace {

struct EvalCommandOptions {
  std::string weights;
  ArchOptions arch;
  int64_t batch = kEvalBatch;
  bool json = false;
  DataOptions data;
  int threads = 0;
};

void run_eval(const EvalCommandOptions& o) {
  apply_threads(o.threads);
  const io::SafetensorsFile file = io::read_safetensors(o.weights);
  const std::string arch = checkpoint_arch(file, o.weights, o.arch.text());
  const data::Dataset test_set = load_test_data(o.data, o.data.limit);
  std::unique_ptr<nn::Sequential> net = build_network(arch, 0, test_set);
  nn::load_state_dict(*net, file);
  nn::check_state_values(*net);
  // Under mpirun each process scores its part of the test set; the counts are summed.
  const train::EvalResult test = train::evaluate(*net, test_set, o.batch, false, dist::world());
  std::printf("%s\n  test: accuracy %s  loss %s  (%lld images of %s, eval mode)\n",
              arch.c_str(), percent(test.accuracy).c_str(), loss_text(test.loss).c_str(),
              static_cast<long long>(test.count), o.data.dir.c_str());
  std::fflush(stdout);
  if (o.json) print_json_line({{"test_accuracy", test.accuracy}, {"test_loss", test.loss}});
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto o = std::make_shared<EvalCommandOptions>();
  CLI::App* command =
      app.add_subcommand("eval", "Test loss and accuracy of a checkpoint, in eval mode");
  command->add_option("--weights", o->weights, "A safetensors checkpoint")->required();
  add_arch_options(*command, o->arch);
  command->add_option("--batch", o->batch, "Examples per forward pass")
      ->capture_default_str()->check(positive());
  command->add_flag("--json", o->json, "End with one JSON line: test_accuracy, test_loss");
  add_data_options(*command, o->data, "Evaluate on the first N test examples (quick runs)");
  add_threads_option(*command, o->threads);
  command->footer(
      "Examples:\n"
      "  bnlab eval --weights mlp-bn.safetensors\n"
      "  bnlab eval --weights from_pytorch.safetensors --model mlp-bn\n"
      "  bnlab eval --weights from_pytorch.safetensors --arch \"Flatten(), Linear(784, 512), "
      "ReLU(), Linear(512, 256), ReLU(), Linear(256, 10)\" --json");
  command->callback([o] { run_eval(*o); });
}

}  // namespace bnlab::cli
