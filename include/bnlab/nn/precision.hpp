// The precision of the toolkit's matrix products, process-wide, as
// torch.autocast("cpu", dtype=torch.bfloat16) sets it for a region: with
// bf16, Linear (forward and both backward products) and Conv2d (forward,
// backward data, backward weights) round their float inputs (activations,
// weights, gradients) to bf16 at the product's boundary and run oneDNN's bf16
// primitives, accumulating and writing in float. Everything else stays float:
// the activations between layers, BatchNorm and the other layers, the loss,
// the master weights and the optimizer state, the checkpoints.
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
