// bnlab_bench: bnlab's batch-norm kernels beside oneDNN and PyTorch, with the
// machine's memory bandwidth, in one run. See bench.hpp and docs/performance.md.
//
//   bnlab_bench                      the full table, peers included, 2 threads
//   bnlab_bench --quick --json F     one call per case on small shapes (CI's smoke test)
//   bnlab_bench --only 32x256 --no-pytorch --reps 20
//   bnlab_bench --only 32x256 --rooflines   those cases and the walks' rooflines
//   bnlab_bench --check-json F       parse a report written by --json, exit 0 when well-formed
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <string>

#include "bench.hpp"
#include "bnlab/batch_norm.hpp"
#include "bnlab/error.hpp"
#include "bnlab/io/atomic_file.hpp"
#include "bnlab/threading.hpp"

#ifndef BNLAB_BENCH_SOURCE_DIR
#define BNLAB_BENCH_SOURCE_DIR "bench"
#endif

int main(int argc, char** argv) {
  using namespace bnlab::bench;
  CLI::App app{"bnlab_bench: batch-norm kernels beside oneDNN and PyTorch, with the copy bandwidth"};
  int threads = 2;
  bool quick = false, no_pytorch = false, no_onednn = false, want_pytorch = false,
       want_onednn = false, want_rooflines = false, no_rooflines = false;
  std::string only, json_path, check_json, variant;
  int reps = 0;
  double budget_s = 0.3;
  int64_t bandwidth_mib = 0;
  PytorchOptions pytorch;
  pytorch.script = std::string(BNLAB_BENCH_SOURCE_DIR) + "/peer_pytorch.py";
  app.add_option("--threads", threads, "threads for bnlab and both peers")->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_flag("--quick", quick,
               "one timed call per case, small shapes, small bandwidth buffer, no peers unless "
               "--onednn/--pytorch (CI's smoke pass)");
  app.add_flag("--no-pytorch", no_pytorch, "skip PyTorch");
  app.add_flag("--no-onednn", no_onednn, "skip oneDNN");
  app.add_flag("--pytorch", want_pytorch, "run PyTorch even with --quick");
  app.add_flag("--onednn", want_onednn, "run oneDNN even with --quick");
  app.add_flag("--rooflines", want_rooflines,
               "time the walk rooflines even with --only or --quick (the fastest each walk of a "
               "tensor can run here: see docs/performance.md)");
  app.add_flag("--no-rooflines", no_rooflines, "skip the walk rooflines of a full run")
      ->excludes("--rooflines");
  app.add_option("--only", only, "run only the cases whose id (dims/layout/op) contains this");
  app.add_option("--reps", reps, "timed calls per case (default: as many as fit in --budget)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--budget", budget_s, "seconds of timed calls per case and implementation")
      ->check(CLI::Range(0.0, 60.0))->capture_default_str();
  app.add_option("--bandwidth-mib", bandwidth_mib,
                 "copy-bandwidth buffer size (default: 512 MiB or 8x the LLC, 16 MiB with --quick)")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--kernel-variant", variant, "bnlab kernel variant (plain, AVX3, AVX2, ...)");
  app.add_option("--json", json_path, "also write the results as JSON to this file");
  app.add_option("--python", pytorch.python, "interpreter with torch")->capture_default_str();
  app.add_option("--pytorch-env", pytorch.env,
                 "KEY=VALUE for PyTorch's environment, repeatable (e.g. MALLOC_MMAP_THRESHOLD_=...)")
      ->check([](const std::string& entry) {
        return entry.find('=') == std::string::npos ? "--pytorch-env takes KEY=VALUE, got " + entry
                                                    : std::string();
      });
  app.add_option("--pytorch-script", pytorch.script, "the PyTorch peer")->capture_default_str();
  app.add_option("--check-json", check_json,
                 "only parse a report written by --json and check its keys");
  CLI11_PARSE(app, argc, argv);

  try {
    if (!check_json.empty()) {
      check_report_file(check_json);
      std::printf("%s: a well-formed bnlab_bench report\n", check_json.c_str());
      return 0;
    }
    bnlab::set_num_threads(threads);
    omp_set_num_threads(threads);  // oneDNN (OpenMP runtime in Debian's build) follows this
    if (!variant.empty()) bnlab::set_batch_norm_kernel_variant(variant);

    Report report;
    report.machine = machine_info();
    report.threads = threads;
    report.kernel_variant = bnlab::batch_norm_kernel_variant();
    report.load_before = load_average();
    for (int i = 0; i < argc; ++i) report.command += (i ? " " : "") + std::string(argv[i]);

    TimingPolicy policy;
    policy.budget_s = budget_s;
    if (quick) policy.warmup = 0, policy.fixed_reps = 1;
    if (reps > 0) policy.fixed_reps = reps;

    const int64_t default_mib = quick ? 16
                                      : std::max<int64_t>(512, 8 * report.machine.llc_bytes >> 20);
    // Measured at the start and again at the end; the better one is the reference, so
    // that a burst of other work on the machine during one of them does not set it.
    const int64_t bandwidth_bytes = (bandwidth_mib > 0 ? bandwidth_mib : default_mib) << 20;
    const int bandwidth_reps = quick ? 1 : 7;
    std::fprintf(stderr, "bnlab_bench: copy bandwidth...\n");
    report.bandwidth = measure_bandwidth(bandwidth_bytes, threads, bandwidth_reps);
    report.copy_gbs_start = report.bandwidth.copy_gbs;

    const std::vector<Case> cases = expand_cases(shape_table(quick), only);
    if (cases.empty()) throw bnlab::Error("--only: no case id contains \"" + only + "\"");
    const bool onednn = !no_onednn && (!quick || want_onednn);
    const bool run_torch = !no_pytorch && (!quick || want_pytorch);
    if (!onednn) report.onednn.note = no_onednn ? "--no-onednn" : "--quick";
    std::fprintf(stderr, "bnlab_bench: %zu cases, bnlab%s...\n", cases.size(),
                 onednn ? " and oneDNN" : "");
    report.results = run_bnlab_and_onednn(cases, policy, onednn, report.onednn);
    if (run_torch) {
      std::fprintf(stderr, "bnlab_bench: PyTorch (%s %s)...\n", pytorch.python.c_str(),
                   pytorch.script.c_str());
      pytorch.threads = threads;
      run_pytorch(report.results, policy, pytorch, report.pytorch);
    } else {
      report.pytorch.note = no_pytorch ? "--no-pytorch" : "--quick";
    }

    if (want_rooflines || (!no_rooflines && !quick && only.empty())) {
      // On the table's largest 4-D shape; a small one with --quick.
      const std::vector<int64_t> dims =
          quick ? std::vector<int64_t>{4, 64, 16, 16} : std::vector<int64_t>{32, 256, 56, 56};
      std::fprintf(stderr, "bnlab_bench: walk rooflines...\n");
      report.rooflines = measure_rooflines(dims, kBenchGroups, threads, policy);
    }
    std::fprintf(stderr, "bnlab_bench: copy bandwidth again...\n");
    const Bandwidth at_end = measure_bandwidth(bandwidth_bytes, threads, bandwidth_reps);
    report.copy_gbs_end = at_end.copy_gbs;
    if (at_end.copy_gbs > report.bandwidth.copy_gbs) report.bandwidth = at_end;
    report.load_after = load_average();
    std::fputs(format_table(report).c_str(), stdout);
    if (!json_path.empty()) {
      bnlab::io::write_file_atomic(json_path, report_json(report));
      std::printf("\nwrote %s\n", json_path.c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bnlab_bench: %s\n", e.what());
    return 1;
  }
}
