// Resumable checkpoints: the model's state dict as nn::save_checkpoint writes
// it (nn.Sequential's keys, the architecture in __metadata__), plus
//   - the optimizer's state as extra tensors named "optimizer.<parameter>.<state>"
//     (F32; counters as I64 scalars "optimizer.<counter>"), and
//   - where the run stands, as one JSON text in __metadata__["bnlab_resume"]:
//     epoch and step, the epoch's sums so far, the Dropout generator's state,
//     the best validation accuracy and the settings the run depends on.
// The file stays a PyTorch state dict: nn.Sequential's
// load_state_dict(sd, strict=False) loads the model and lists the
// "optimizer." keys as unexpected (docs/toolkit.md, Resuming); bnlab's own
// nn::load_state_dict skips them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "bnlab/io/safetensors.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/optim/optimizer.hpp"
#include "bnlab/random.hpp"
#include "bnlab/train/trainer.hpp"

namespace bnlab::train {

// Where a run stands between two steps, and what it must be continued with.
struct ResumeState {
  int64_t epoch = 0;  // the epoch in progress, from 0 (== epochs when all are done)
  EpochState within;  // steps of that epoch done, and their sums
  std::optional<GeneratorState> dropout_generator;
  double best_val_accuracy = -1.0;  // -1: no validation yet
  // The options the run depends on ("lr" -> "0.01", ...): a resumed run must
  // have the same ones to continue exactly.
  std::map<std::string, std::string> settings;
};

// Writes net's state dict, the optimizer's state and `state` to path (atomically).
void save_training_checkpoint(const std::string& path, nn::Sequential& net, const std::string& arch,
                              const optim::Optimizer& optimizer, const ResumeState& state);

// Whether the file holds a training state (written by save_training_checkpoint).
bool is_resumable(const io::SafetensorsFile& file);

// Where the run that wrote the file stands. Throws Error naming the file when
// it has no training state (a plain state dict: use it with --init) or a
// malformed one.
ResumeState read_resume_state(const io::SafetensorsFile& file, const std::string& path);

// Loads the weights (nn::load_state_dict's checks) and the optimizer's state;
// throws Error naming the file and the entry that does not fit.
void load_model_and_optimizer(const io::SafetensorsFile& file, const std::string& path,
                              nn::Sequential& net, optim::Optimizer& optimizer);

// "lr: 0.01 in the checkpoint, 0.1 now; batch: ..." for the settings that
// differ (missing ones count as differing), or "" when they are the same.
std::string settings_difference(const std::map<std::string, std::string>& saved,
                                const std::map<std::string, std::string>& now);

}  // namespace bnlab::train
