// Architectures as text in PyTorch's own notation, e.g.
//   "Flatten(), Linear(784, 512, bias=False), BatchNorm1d(512), ReLU(), Linear(512, 10)"
// Layers: Linear, Conv2d, BatchNorm1d/2d/3d, ReLU, LeakyReLU, Sigmoid, Tanh,
// MaxPool2d, Dropout, Flatten, and norm_layers.hpp's GroupNorm, LayerNorm,
// InstanceNorm1d/2d, FrozenBatchNorm2d, GhostBatchNorm1d/2d, BatchRenorm1d/2d;
// positional and keyword arguments as in PyTorch
// (bias=False, momentum=0.3, momentum=None, affine=False,
// track_running_stats=False, eps=1e-3, stride=2, padding=1, p=0.5,
// negative_slope=0.01, kernel_size=3). An optional "nn." prefix is accepted.
// The reader is src/nn/call_syntax.*, the layers src/nn/layer_registry.*.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "bnlab/nn/layers.hpp"
#include "bnlab/random.hpp"

namespace bnlab::nn {

// Builds the network; throws Error naming the layer (its index and text) and
// the argument on a syntax error, an unknown layer or keyword, a bad value,
// and, before allocating, when the parameters would not fit in the machine's
// memory (the figures in the message).
std::unique_ptr<Sequential> parse_arch(const std::string& text, Generator& gen);
// The same, and before allocating any parameter checks the shapes through the
// network for this input shape (e.g. {1, 1, 28, 28}): Sequential::output_shape
// names the first layer whose input does not fit ("layer 2, BatchNorm1d(11):
// expected 11 channels, got 10").
std::unique_ptr<Sequential> parse_arch(const std::string& text, Generator& gen, const Shape& input);

// The named presets: "mlp", "mlp-bn" (784-512-256-10, the tutorial's network),
// "cnn", "cnn-bn". Throws Error listing the names for an unknown one.
std::string preset_arch(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace bnlab::nn
