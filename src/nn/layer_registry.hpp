// The layers the architecture text can name: one entry per layer, with
// PyTorch's signature and the builder that turns a bound call into a module.
// Adding a layer to the text is one entry here. Also the named presets.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bnlab/nn/module.hpp"
#include "bnlab/random.hpp"
#include "nn/call_syntax.hpp"

namespace bnlab::nn {

struct LayerEntry {
  const char* name;                  // PyTorch's class name, e.g. "BatchNorm1d"
  call_syntax::Signature signature;  // PyTorch's, in PyTorch's order
  // Builds the module with its parameters deferred (reset_parameters
  // allocates them); throws call_syntax::ArchProblem on a bad value.
  ModulePtr (*build)(const call_syntax::BoundArgs& args, Generator& gen);
};

const std::vector<LayerEntry>& layer_registry();
// The entry named `name`, or null.
const LayerEntry* find_layer(std::string_view name);

// (name, architecture text) of each preset, in the order preset_names lists them.
const std::vector<std::pair<std::string, std::string>>& presets();

}  // namespace bnlab::nn
