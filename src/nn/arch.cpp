// parse_arch: the call syntax (nn/call_syntax.hpp) read into layer calls, each
// built by its registry entry (nn/layer_registry.hpp), the shapes walked by
// Sequential, then the parameters allocated. Errors name the layer and point
// a caret at the place in the text.
#include "bnlab/nn/arch.hpp"

#include <unistd.h>

#include <cstdio>
#include <new>

#include "bnlab/error.hpp"
#include "nn/call_syntax.hpp"
#include "nn/layer_registry.hpp"

namespace bnlab::nn {
namespace {

using namespace call_syntax;

[[noreturn]] void throw_arch_error(const std::string& text, size_t pos, const std::string& where,
                                   const std::string& message) {
  throw Error(ErrorCode::invalid_argument, "arch: " + where + message + caret_excerpt(text, pos));
}

std::string layer_context(const std::string& text, const LayerProblem& layer) {
  return "layer " + std::to_string(layer.index) + ", " + layer_excerpt(text, layer.layer_pos) +
         ": ";
}

std::vector<LayerCall> read_calls(const std::string& text) {
  try {
    return parse_calls(text);
  } catch (const ArchProblem& problem) {
    // A bad character (found before parsing) still names its layer: the text
    // cut just before it ends inside that layer, which the parser reports.
    std::string context;
    try {
      parse_calls(std::string_view(text).substr(0, problem.pos));
    } catch (const LayerProblem& layer) {
      context = layer_context(text, layer);
    } catch (const ArchProblem&) {
      // Outside any layer: no context to add.
    }
    throw_arch_error(text, problem.pos, context, problem.message);
  } catch (const LayerProblem& layer) {
    throw_arch_error(text, layer.problem.pos, layer_context(text, layer), layer.problem.message);
  }
}

ModulePtr build_layer(const LayerCall& call, Generator& gen) {
  const LayerEntry* entry = find_layer(call.name);
  if (entry == nullptr) {
    std::vector<std::string> names;
    for (const LayerEntry& known : layer_registry()) names.emplace_back(known.name);
    std::string list;
    for (const std::string& known : names) list += (list.empty() ? "" : ", ") + known;
    // A name too long to quote whole is no typo: the list is left out, so the
    // message stays short.
    const bool quoted_whole = excerpt(call.name) == call.name;
    throw ArchProblem{call.name_pos, "unknown layer '" + excerpt(call.name) + "'" +
                                         did_you_mean(call.name, names) +
                                         (quoted_whole ? "; known layers: " + list : "")};
  }
  return entry->build(BoundArgs(call, entry->signature), gen);
}

// Builds the network with its parameters deferred; the shape walk and the
// allocation follow in parse_arch.
std::unique_ptr<Sequential> build_network(const std::string& text, Generator& gen) {
  const std::vector<LayerCall> calls = read_calls(text);
  if (calls.empty())
    throw_arch_error(text, 0, "",
                     "no layers (an architecture is e.g. "
                     "\"Flatten(), Linear(784, 10)\")");
  auto net = std::make_unique<Sequential>();
  for (size_t i = 0; i < calls.size(); ++i) {
    const std::string where = "layer " + std::to_string(i) + ", " +
                              layer_excerpt(text, calls[i].name_pos, calls[i].end) + ": ";
    try {
      net->add(build_layer(calls[i], gen));
    } catch (const ArchProblem& problem) {
      throw_arch_error(text, problem.pos, where, problem.message);
    } catch (const Error& e) {
      // A constructor's own check (bnlab::Error) still names the layer.
      throw_arch_error(text, calls[i].name_pos, where, e.what());
    }
  }
  return net;
}

std::string gigabytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GB", bytes / 1e9);
  return text;
}

// The machine's physical memory in bytes (0 when unknown).
double physical_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  return pages > 0 && page_size > 0 ? static_cast<double>(pages) * static_cast<double>(page_size)
                                    : 0.0;
}

// Refuses a network whose parameters, gradients and buffers would not fit in
// the machine's memory, with the figures, before anything is allocated; then
// allocates and initialises them in layer order (the generator's draws are
// those of building each layer in turn).
void allocate(Sequential& net, Generator& gen) {
  const double needed = net.state_bytes();
  const double memory = physical_memory();
  if (memory > 0.0 && needed > memory) {
    size_t largest = 0;
    for (size_t i = 1; i < net.size(); ++i)
      if (net[i].state_bytes() > net[largest].state_bytes()) largest = i;
    throw Error(ErrorCode::invalid_argument,
                "arch: the network's parameters need " + gigabytes(needed) +
                    " (values, gradients and buffers in float32) but this machine has " +
                    gigabytes(memory) + " of memory; the largest is layer " +
                    std::to_string(largest) + ", " + excerpt(net[largest].repr(), 80) + " (" +
                    gigabytes(net[largest].state_bytes()) + ")");
  }
  try {
    net.reset_parameters(gen);
  } catch (const std::bad_alloc&) {
    throw Error(ErrorCode::invalid_argument,
                "arch: could not allocate the network's " + gigabytes(needed) + " of parameters");
  }
}

}  // namespace

std::unique_ptr<Sequential> parse_arch(const std::string& text, Generator& gen) {
  auto net = build_network(text, gen);
  allocate(*net, gen);
  return net;
}

std::unique_ptr<Sequential> parse_arch(const std::string& text, Generator& gen,
                                       const Shape& input) {
  auto net = build_network(text, gen);
  net->output_shape(input);
  allocate(*net, gen);
  return net;
}

std::string preset_arch(const std::string& name) {
  for (const auto& [preset, arch] : presets())
    if (preset == name) return arch;
  std::string names;
  for (const std::string& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
  throw Error(ErrorCode::invalid_argument,
              "unknown preset '" + excerpt(name) + "'; presets: " + names);
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& entry : presets()) names.push_back(entry.first);
  return names;
}

}  // namespace bnlab::nn
