// The buffers one shape's cases run on, shared by bnlab and oneDNN so that both
// read the same x and dy (run_bnlab.cpp allocates them, run_onednn.cpp uses them).
#pragma once

#include <cstdint>

#include "bench.hpp"
#include "bnlab/aligned.hpp"

namespace bnlab::bench {

struct KernelBuffers {
  // numel floats each, 64-byte aligned and written before any timing.
  AlignedVector<float> x, dy;
  AlignedVector<float> out_bnlab;  // y or dx of bnlab
  AlignedVector<float> out_peer;   // y or dx of oneDNN, compared with out_bnlab
  // The bf16 ops' x, dy (x and dy rounded) and outputs, made when a bf16 case first runs.
  AlignedVector<uint16_t> x_bf16, dy_bf16, out_bnlab_bf16, out_peer_bf16;
  // c floats each.
  AlignedVector<float> weight, bias, running_mean, running_var;
  AlignedVector<float> save_mean, save_invstd, dweight, dbias;
  AlignedVector<float> peer_mean, peer_var, peer_dweight, peer_dbias;
  // c doubles each: what the split kernels exchange between processes.
  AlignedVector<double> split_mean, split_m2, merged_mean, merged_m2, sum_dy, sum_dy_xhat;
};

// Times one case of oneDNN on `buffers` (output in out_peer). Throws when
// oneDNN cannot build the primitive. Defined in run_onednn.cpp.
Timing time_onednn_case(const Case& the_case, KernelBuffers& buffers, const TimingPolicy& policy);
// "oneDNN 2.6.3 (cpu runtime: OpenMP)", from dnnl_version().
std::string onednn_version();

}  // namespace bnlab::bench
