// State dicts with PyTorch's nn.Sequential names ("1.weight",
// "2.running_mean", "2.num_batches_tracked" as I64), saved as safetensors
// with the architecture text in the header's __metadata__ ("arch").
#pragma once

#include <string>

#include "bnlab/io/safetensors.hpp"
#include "bnlab/nn/layers.hpp"

namespace bnlab::nn {

// Keys under this prefix hold a training state (bnlab/train/checkpoint.hpp),
// not the model: load_state_dict skips them.
inline constexpr char kOptimizerStatePrefix[] = "optimizer.";

io::SafetensorsFile state_dict(Sequential& net);
// Copies every entry into the network; throws Error naming the key on a
// missing or unexpected key, a wrong dtype or a wrong shape (keys under
// kOptimizerStatePrefix are skipped). F64 and F16 values
// are accepted for float entries (converted), I64/I32 for num_batches_tracked.
void load_state_dict(Sequential& net, const io::SafetensorsFile& file);

// Throws Error naming the key and the index of the first non-finite value
// of any float entry, or of a negative running_var (eval and fold refuse such
// checkpoints: their outputs would look plausible and mean nothing).
void check_state_values(Sequential& net);

void save_checkpoint(const std::string& path, Sequential& net, const std::string& arch);
// The architecture text stored in a bnlab checkpoint, or "" when it has none.
std::string checkpoint_arch(const io::SafetensorsFile& file);

}  // namespace bnlab::nn
