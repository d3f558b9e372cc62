// bnlab_bench: the batch-norm kernels side by side with oneDNN and PyTorch
// (issue 4, item 1). One run measures the machine's memory bandwidth, then
// times each op for each layout on the shape table (shapes.cpp) in bnlab, in
// oneDNN 2.6 in-process and in PyTorch through a subprocess, and prints the
// ratios. Shared types of the program's parts live here.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "bnlab/aligned.hpp"
#include "bnlab/batch_norm.hpp"

namespace bnlab::bench {

// The ops timed, each with the number of passes over the tensor its algorithm
// needs at least (a pass moves numel * 4 bytes):
//   train_forward       3: read x for the statistics, read x + write y
//   train_forward_relu  3: the same, ReLU applied in the writing pass
//   inference_forward   2: read x + write y
//   backward            5: read x, dy for the sums, read x, dy + write dx
//   forward_backward    8: a training step's batch norm, train_forward then
//                          backward (PyTorch: through autograd, as a user's
//                          loss.backward() runs it: issue 4's forward + backward row)
// GroupNorm (kBenchGroups groups) and LayerNorm (over the last dim), whose
// statistics cover a slice that fits in cache (a group of one sample, a row):
//   group_norm_forward, layer_norm_forward    2: read x + write y
//   group_norm_backward, layer_norm_backward  3: read x, dy + write dx
//   split_forward       3: train_forward from the split kernels of a synchronized
//                          BN on one part: stats, merge, forward_with_stats
//   split_backward      5: backward as backward_reduce then backward_with_sums
//   bf16_train_forward, bf16_inference_forward, bf16_backward  3, 2, 5: the
//                          same ops on bf16 tensors (float weight and statistics),
//                          whose passes move numel * 2 bytes (element_bytes)
// The split ops' peers are the fused ones (oneDNN's train_forward and backward;
// PyTorch has no CPU split kernels), so their rows show the split's overhead.
enum class Op {
  train_forward,
  train_forward_relu,
  inference_forward,
  backward,
  forward_backward,
  group_norm_forward,
  group_norm_backward,
  layer_norm_forward,
  layer_norm_backward,
  split_forward,
  split_backward,
  bf16_train_forward,
  bf16_inference_forward,
  bf16_backward
};
constexpr int64_t kBenchGroups = 32;  // GroupNorm's groups in the bench (Wu & He's default)

const char* op_name(Op op);
int op_passes(Op op);
bool is_split(Op op);  // split_forward or split_backward
bool is_bf16(Op op);
int element_bytes(Op op);  // 2 for the bf16 ops, else 4
// The float op a bf16 op times in bf16 (op itself for the others).
Op float_op(Op op);
// The fused op a split op computes in pieces (op itself for the others).
Op fused_op(Op op);

// Layouts as named in the results: channels_first (NCHW, NCDHW), channels_last
// (NHWC, NDHWC), nc for 2-D tensors, where both are the same bytes, and
// blocked16 (oneDNN's nChw16c / nCdhw16c, bnlab's Layout::blocked16; PyTorch
// has no such layout, so its column is empty there).
enum class BenchLayout { channels_first, channels_last, nc, blocked16 };

const char* layout_name(BenchLayout layout);

// One row of the shape table: the dims as PyTorch writes them (N, C, spatial...)
// and which ops and layouts run on it.
struct ShapeEntry {
  std::vector<int64_t> dims;
  std::vector<BenchLayout> layouts;
  std::vector<Op> ops;
  int64_t align_bytes = 64;  // where x, dy and the output start: 64, or 16 as numpy's buffers
};

// One timed case: a shape, a layout and an op.
struct Case {
  std::vector<int64_t> dims;
  BenchLayout layout = BenchLayout::channels_first;
  Op op = Op::train_forward;
  int64_t align_bytes = 64;  // below 64: bnlab only, buffers that start align_bytes past a line

  std::string dims_string() const;  // "32x64x56x56"
  std::string id() const;           // "32x64x56x56/channels_first/train_forward", + "/align16"
  int64_t numel() const;
  int64_t tensor_bytes() const { return numel() * element_bytes(op); }
  BatchNormShape batch_norm_shape() const;  // n, c, s = product of the spatial dims
};

// The shape table: full (the shapes) or quick (small shapes for CI).
std::vector<ShapeEntry> shape_table(bool quick);
// Every (shape, layout, op) of the table whose id contains `only` (all when empty).
std::vector<Case> expand_cases(const std::vector<ShapeEntry>& table, const std::string& only);

// How many times to call a function and how to summarize.
struct TimingPolicy {
  int warmup = 1;          // untimed calls first
  int fixed_reps = 0;      // > 0: exactly this many timed calls
  int min_reps = 5;        // otherwise as many as fit in budget_s, within [min_reps, max_reps]
  int max_reps = 200;
  double budget_s = 0.3;
};

struct Timing {
  double median_ms = 0;
  double min_ms = 0;
  int reps = 0;
};

// The median of `values` (mean of the middle two for an even count); 0 when empty.
double median(std::vector<double> values);
// Timed calls for a policy, given the duration of one call: budget_s / one_call_s
// clamped to [min_reps, max_reps], or fixed_reps.
int reps_for(const TimingPolicy& policy, double one_call_s);
// Calls fn for warm-up, then reps_for(...) timed calls; median and min in ms.
Timing time_calls(const std::function<void()>& fn, const TimingPolicy& policy);
// Effective bandwidth in GB/s (1e9 bytes) of `passes` passes over `bytes` in `ms`.
double effective_gbs(int passes, int64_t bytes, double ms);

// Memory bandwidth with `threads` OpenMP threads over buffers of `bytes`.
struct Bandwidth {
  double copy_gbs = 0;  // a streaming-store copy, counting read + write: 2 * bytes / time
  double memcpy_gbs = 0;  // the same through glibc's memcpy
  double read_gbs = 0;  // a sum over the buffer: bytes / time
  double copy_gbs_best = 0, read_gbs_best = 0;  // the same from the fastest run
  int64_t buffer_bytes = 0;
  int reps = 0;
};
Bandwidth measure_bandwidth(int64_t bytes, int threads, int reps);

// The machine, as the report prints it (bnlab::cpu_info(), so runs on different
// CPUs can be told apart).
struct MachineInfo {
  std::string cpu_model;     // /proc/cpuinfo "model name"
  int64_t llc_bytes = 0;     // the LLC share the kernels use (bnlab::llc_share), 0 when unknown
  int cores_online = 0;
  int64_t l1d_bytes = 0, l2_bytes = 0;
  std::string cache_source;  // where the sizes came from: sysfs, sysconf, cpuid, default
  std::vector<std::string> features;  // ISA extensions (avx512f, avx512_bf16, amx_bf16, ...)
  std::string highway_target;  // the vector target the kernels choose on this CPU (AVX3, AVX2, ...)
  int64_t llc_instance_bytes = 0;  // one LLC as the machine reports it
  int llc_sharing_cpus = 0;        // logical CPUs sharing it, 0 when unknown
  int process_cpus = 0;            // CPUs in the process's affinity mask
};
MachineInfo machine_info();
// The 1-minute load average (/proc/loadavg), -1 when unknown: a figure above the
// core count means other processes shared the cores while the benchmark ran.
double load_average();

// A measurement of one case by one implementation (absent: not run).
struct PeerTime {
  std::optional<Timing> timing;
  std::optional<double> max_abs_diff_vs_bnlab;  // output compared with bnlab's, where checked
  std::string note;                             // why absent, or a caveat
};

struct CaseResult {
  Case the_case;
  Timing bnlab;
  PeerTime onednn;
  PeerTime pytorch;
};

// A peer's availability, for the report.
struct PeerStatus {
  bool ran = false;
  std::string version;
  std::string note;  // why it was skipped, if it was
};

// Times bnlab and, when `onednn` is set, oneDNN on the same buffers, case by case
// (cases of one shape share one allocation). The implementations are in
// run_bnlab.cpp and run_onednn.cpp.
std::vector<CaseResult> run_bnlab_and_onednn(const std::vector<Case>& cases,
                                             const TimingPolicy& policy, bool onednn,
                                             PeerStatus& onednn_status);

// Runs `python script` with the cases as JSON on argv and fills each result's
// pytorch field from the JSON it prints. A missing interpreter or torch is a
// note in `status`, never an error.
struct PytorchOptions {
  std::string python = "/usr/bin/python3";
  std::string script;
  int threads = 2;
  std::vector<std::string> env;  // KEY=VALUE set in the child's environment (e.g. glibc malloc tunables)
};
void run_pytorch(std::vector<CaseResult>& results, const TimingPolicy& policy,
                 const PytorchOptions& options, PeerStatus& status);

// Walk rooflines (rooflines.cpp): stand-alone loops that make a walk's passes and
// nothing more, per chunk a statistics pass (a sum) then an output pass (a centred
// copy, streaming stores), over a tensor of dims (N first) with GroupNorm's groups:
//   output_only   the output pass alone over the whole tensor (inference's walk)
//   tensor        the statistics over the whole tensor, then the output: the threads
//                 split it and meet once (channels-last BN, whose sums span every row)
//   sample        a sample at a time, a thread per sample (a 3.2 MiB sample overflows
//                 a 2 MiB L2, so its second pass reads the LLC or memory)
//   sample_team   a sample at a time, every thread taking a part of it, so each part's
//                 second pass reads the thread's own L2 (channels-last GroupNorm)
//   group         a group of a sample at a time (channels-first GroupNorm, from L2)
// The backward walks read x and dy and write dx; the forward ones read x, write y.
enum class Walk { output_only, tensor, sample, sample_team, group };
const char* walk_name(Walk walk);

struct RooflineBuffers {
  RooflineBuffers(int64_t samples, int64_t per_sample, int64_t groups, bool backward);
  int64_t samples, per_sample, groups;
  AlignedVector<float> x, dy, out;  // dy empty unless made for the backward walks
};
// One walk, forward (out = x - the chunk's mean) or backward (out = dy - mean(dy) -
// x * mean(x * dy), per chunk), on `threads` threads. The tests check out.
void run_walk(RooflineBuffers& buffers, bool backward, Walk walk, int threads);

struct Roofline {
  std::string walk;    // "forward/sample_team"
  std::string models;  // the kernel rows that walk the tensor this way
  std::vector<int64_t> dims;
  int passes = 0;  // the op's passes when its statistics come from cache: 2 or 3
  int64_t tensor_bytes = 0;
  Timing timing;
};
// Every walk, forward and backward, on float tensors of `dims`, timed by `policy`; then
// the bf16 kernels' walks ("bf16_forward/tensor"), on as many bytes in 2-byte elements.
std::vector<Roofline> measure_rooflines(const std::vector<int64_t>& dims, int64_t groups,
                                        int threads, const TimingPolicy& policy);

// The report.
struct Report {
  MachineInfo machine;
  int threads = 0;
  std::string kernel_variant;
  std::string command;
  double load_before = -1, load_after = -1;  // load_average() at the start and the end
  Bandwidth bandwidth;  // the better (by copy GB/s) of the measurements at the start and the end
  double copy_gbs_start = 0, copy_gbs_end = 0;
  PeerStatus onednn;
  PeerStatus pytorch;
  std::vector<CaseResult> results;
  std::vector<Roofline> rooflines;  // empty unless measured
};
std::string format_table(const Report& report);
std::string report_json(const Report& report);  // pretty-printed JSON text
// Reads a JSON report back and checks its keys; throws bnlab::Error naming what is missing.
void check_report_file(const std::string& path);

}  // namespace bnlab::bench
