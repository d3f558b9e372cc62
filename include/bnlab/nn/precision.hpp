// The precision of the toolkit's matrix products and of the activations
// between them, process-wide, as torch.autocast("cpu", dtype=torch.bfloat16)
// sets it for a region: with bf16, Linear (forward and both backward
// products) and Conv2d (forward, backward data, backward weights) run
// oneDNN's bf16 primitives, accumulating in float; their float inputs
// (activations, weights, gradients) are rounded to bf16 at the product's
// boundary. Inside a Sequential the activation a product hands to the next
// product stays bf16 through the modules that keep it (BatchNorm with float
// statistics, ReLU, MaxPool2d, Flatten; see MemoryFormat in
// bnlab/nn/module.hpp), and so do the gradients flowing back along it. The
// rest stays float: a stretch with another module in it, the network's input
// and output, the loss, the master weights and the optimizer state, the
// checkpoints.
#pragma once

#include <string>

namespace bnlab::nn {

enum class ComputePrecision { fp32, bf16 };

// Whether this CPU runs oneDNN's bf16 primitives natively (AVX512-BF16 or
// AMX-BF16, as oneDNN's ISA detection sees it), and its ISA's name.
bool cpu_has_bf16();
std::string onednn_isa_name();

// Throws bnlab::Error naming the CPU's ISA when bf16 is asked for on a CPU
// without bf16 instructions (oneDNN would emulate it, slower than float).
void set_compute_precision(ComputePrecision precision);
ComputePrecision compute_precision();
// "fp32" or "bf16"; parse_compute_precision throws on other names.
std::string precision_name(ComputePrecision precision);
ComputePrecision parse_compute_precision(const std::string& name);

}  // namespace bnlab::nn
