// bnlab fold --weights IN --out OUT: a thin shell over nn::fold_batch_norm.
// It checks the folded network against the original on test images (largest
// output difference, accuracy of each) and times both in eval mode.
#include "fold.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>

#include "bnlab/data/idx.hpp"
#include "bnlab/error.hpp"
#include "bnlab/io/safetensors.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/nn/fold.hpp"
#include "bnlab/nn/state_dict.hpp"
#include "common.hpp"

namespace bnlab::cli {

namespace {

struct FoldOptions {
  std::string weights, out;
  ArchOptions arch;
  DataOptions data{data::default_data_dir(), 2000};  // the check's test images
  bool json = false;
  int threads = 0;
};

// Eval-mode outputs of the whole set, batch by batch, and the best of three timings.
struct Outputs {
  std::vector<float> logits;
  double seconds = 0.0;
  int64_t correct = 0;
};

Outputs run_eval(nn::Sequential& net, const data::Dataset& d, int64_t batch) {
  Outputs out;
  std::vector<int64_t> order(static_cast<size_t>(d.count));
  for (int64_t i = 0; i < d.count; ++i) order[static_cast<size_t>(i)] = i;
  Tensor images;
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  out.seconds = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    out.logits.clear();
    out.correct = 0;
    double seconds = 0.0;
    for (int64_t begin = 0; begin < d.count; begin += batch) {
      const int64_t b = std::min(batch, d.count - begin);
      images.resize({b, d.channels, d.rows, d.cols});
      data::gather_batch(d, order, begin, b, images.data(), labels.data());
      const auto start = std::chrono::steady_clock::now();
      const Tensor& y = net.forward(images);
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const int64_t k = y.numel() / b;
      for (int64_t i = 0; i < b; ++i) {
        const float* row = y.data() + i * k;
        if (std::max_element(row, row + k) - row == labels[static_cast<size_t>(i)]) ++out.correct;
      }
      out.logits.insert(out.logits.end(), y.data(), y.data() + y.numel());
    }
    out.seconds = std::min(out.seconds, seconds);
  }
  return out;
}

void run_fold(const FoldOptions& o) {
  apply_threads(o.threads);
  const io::SafetensorsFile file = io::read_safetensors(o.weights);
  const std::string arch = checkpoint_arch(file, o.weights, o.arch.text());
  Generator gen(0);
  auto net = nn::parse_arch(arch, gen);
  nn::load_state_dict(*net, file);
  nn::check_state_values(*net);
  net->eval();
  nn::FoldResult folded = nn::fold_batch_norm(*net);
  nn::save_checkpoint(o.out, *folded.net, folded.arch);
  // The original is timed as the toolkit runs it: BN + ReLU fused.
  net->fuse_batch_norm_relu();

  data::Dataset test;
  try {
    test = load_test_data(o.data, o.data.limit);
  } catch (const Error& e) {
    // The folded file is written; only the check needs the data.
    if (o.json) {
      print_json_line({{"folded", folded.folded},
                       {"kept", folded.kept},
                       {"arch", folded.arch},
                       {"checked", false},
                       {"reason", e.what()}});
      return;
    }
    std::cout << "folded " << folded.folded << " BatchNorm layer(s); wrote " << o.out
              << "\nnot checked against the original: " << e.what() << "\n";
    return;
  }
  const Outputs before = run_eval(*net, test, kEvalBatch);
  const Outputs after = run_eval(*folded.net, test, kEvalBatch);
  double max_diff = 0.0, max_abs = 0.0;
  for (size_t i = 0; i < before.logits.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(before.logits[i] - after.logits[i])));
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(before.logits[i])));
  }
  const double n = static_cast<double>(test.count);
  if (o.json) {
    print_json_line({{"folded", folded.folded},
                     {"kept", folded.kept},
                     {"arch", folded.arch},
                     {"examples", test.count},
                     {"max_abs_diff", max_diff},
                     {"max_abs_output", max_abs},
                     {"accuracy_before", before.correct / n},
                     {"accuracy_after", after.correct / n},
                     {"seconds_before", before.seconds},
                     {"seconds_after", after.seconds},
                     {"speedup", before.seconds / after.seconds},
                     {"checked", true}});
    return;
  }
  std::cout << "folded " << folded.folded << " BatchNorm layer(s) into the layer before them";
  if (folded.kept > 0) std::cout << "; " << folded.kept << " kept (no Linear/Conv2d before them)";
  std::cout << "\n  " << folded.arch << "\n";
  std::cout << "check on " << test.count << " test images, eval mode, batch " << kEvalBatch << ":\n";
  std::cout << "  largest output difference  " << max_diff << " (outputs up to " << max_abs
            << ")\n";
  std::cout << "  accuracy  " << before.correct / n << " before, " << after.correct / n
            << " after\n";
  std::cout << "  time      " << before.seconds * 1e3 << " ms before, " << after.seconds * 1e3
            << " ms after (" << before.seconds / after.seconds << "x)\n";
  std::cout << "wrote " << o.out << "\n";
}

}  // namespace

void add_fold_command(CLI::App& app) {
  auto o = std::make_shared<FoldOptions>();
  CLI::App* cmd = app.add_subcommand(
      "fold", "Fold each eval-mode BatchNorm into the Linear or Conv2d before it");
  cmd->add_option("--weights", o->weights, "checkpoint to fold (safetensors)")->required();
  cmd->add_option("--out", o->out, "where to write the folded checkpoint")->required();
  add_arch_options(*cmd, o->arch);
  add_data_options(*cmd, o->data,
                   "Check on the first N test examples (default 2000; 0: all of them)");
  add_threads_option(*cmd, o->threads);
  cmd->add_flag("--json", o->json, "print one JSON object with the check's figures");
  cmd->footer(
      "Examples:\n  bnlab train --model mlp-bn --epochs 2 --save mlp-bn.safetensors\n"
      "  bnlab fold --weights mlp-bn.safetensors --out mlp-bn-folded.safetensors\n"
      "  bnlab eval --weights mlp-bn-folded.safetensors\n"
      "  bnlab fold --weights from_pytorch.safetensors --model mlp-bn --out folded.safetensors");
  cmd->callback([o] { run_fold(*o); });
}

}  // namespace bnlab::cli
