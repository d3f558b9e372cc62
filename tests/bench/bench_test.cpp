// The benchmark's bookkeeping: the shape table, the timing rule, the bandwidth
// arithmetic and the report. Timings themselves are never asserted.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "bench.hpp"
#include "bnlab/error.hpp"
#include "bnlab/io/atomic_file.hpp"

namespace bnlab::bench {
namespace {

// The median as a statistics book defines it, in float64: sort, take the middle
// value or the mean of the middle two.
double reference_median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

TEST(BenchHarness, MedianMatchesSortedMiddleForOddAndEvenCounts) {
  const std::vector<std::vector<double>> samples = {
      {3.0}, {5.0, 1.0}, {9.0, 2.0, 7.0}, {4.0, 8.0, 1.0, 3.0}, {2.5, 2.5, 0.5, 10.0, 7.0, 1.0}};
  for (const auto& s : samples) EXPECT_DOUBLE_EQ(median(s), reference_median(s));
  EXPECT_EQ(median({}), 0.0);
}

TEST(BenchHarness, RepsFillTheBudgetWithinTheirBounds) {
  TimingPolicy policy;
  policy.min_reps = 5, policy.max_reps = 200, policy.budget_s = 0.3;
  EXPECT_EQ(reps_for(policy, 0.01), 30);     // 0.3 s / 10 ms
  EXPECT_EQ(reps_for(policy, 1.0), 5);       // slow calls: at least min_reps
  EXPECT_EQ(reps_for(policy, 1e-7), 200);    // fast calls: at most max_reps
  EXPECT_EQ(reps_for(policy, 0.0), 200);
  policy.fixed_reps = 3;
  EXPECT_EQ(reps_for(policy, 0.01), 3);
}

TEST(BenchHarness, TimeCallsMakesWarmupPlusFixedRepsCalls) {
  TimingPolicy policy;
  policy.warmup = 2, policy.fixed_reps = 4;
  int calls = 0;
  const Timing t = time_calls([&] { ++calls; }, policy);
  EXPECT_EQ(calls, 6);
  EXPECT_EQ(t.reps, 4);
  EXPECT_LE(t.min_ms, t.median_ms);
}

TEST(BenchHarness, EffectiveBandwidthCountsEveryPass) {
  // 3 passes over 1e8 bytes in 10 ms: 3e8 bytes / 0.01 s = 30 GB/s.
  EXPECT_NEAR(effective_gbs(3, 100000000, 10.0), 30.0, 1e-9);
  EXPECT_NEAR(effective_gbs(5, 4096, 1e-3), 5.0 * 4096 / 1e-6 / 1e9, 1e-9);
  EXPECT_EQ(effective_gbs(2, 100, 0.0), 0.0);
}

TEST(BenchShapes, FullTableHoldsTheIssueShapesInBothLayouts) {
  const std::vector<Case> cases = expand_cases(shape_table(false), "");
  auto has = [&](const std::string& id) {
    return std::any_of(cases.begin(), cases.end(), [&](const Case& c) { return c.id() == id; });
  };
  for (const char* dims : {"32x64x56x56", "32x256x56x56", "32x64x112x112", "8x32x16x32x32"})
    for (const char* layout : {"channels_first", "channels_last"})
      for (const char* op : {"train_forward", "inference_forward", "backward"})
        EXPECT_TRUE(has(std::string(dims) + "/" + layout + "/" + op)) << dims << " " << layout;
  for (const char* dims : {"256x1024", "64x512"}) EXPECT_TRUE(has(std::string(dims) + "/nc/backward"));
  EXPECT_TRUE(has("32x256x56x56/channels_last/train_forward_relu"));
  // oneDNN's own layout on the 4-D shapes.
  for (const char* dims : {"32x64x56x56", "32x256x56x56", "32x64x112x112"})
    EXPECT_TRUE(has(std::string(dims) + "/blocked16/backward")) << dims;
  // The issue's "forward + backward" row.
  for (const char* layout : {"channels_first", "channels_last"})
    EXPECT_TRUE(has(std::string("32x256x56x56/") + layout + "/forward_backward")) << layout;
}

TEST(BenchShapes, OnlyKeepsCasesWhoseIdContainsTheText) {
  const std::vector<Case> cases = expand_cases(shape_table(false), "channels_last/backward");
  ASSERT_EQ(cases.size(), 5u);  // the three 4-D shapes, the 3-D one and the 16-byte-aligned row
  for (const Case& c : cases) EXPECT_NE(c.id().find("channels_last/backward"), std::string::npos);
  EXPECT_TRUE(expand_cases(shape_table(false), "no such case").empty());
}

TEST(BenchShapes, CaseMapsDimsToBatchNormShape) {
  const Case c{{8, 32, 16, 32, 32}, BenchLayout::channels_last, Op::backward};
  const BatchNormShape shape = c.batch_norm_shape();
  EXPECT_EQ(shape.n, 8);
  EXPECT_EQ(shape.c, 32);
  EXPECT_EQ(shape.s, 16 * 32 * 32);
  EXPECT_EQ(shape.layout, Layout::channels_last);
  EXPECT_EQ(c.tensor_bytes(), int64_t{8} * 32 * 16 * 32 * 32 * 4);
  EXPECT_EQ((Case{{32, 64, 56, 56}, BenchLayout::blocked16, Op::backward}.batch_norm_shape().layout),
            Layout::blocked16);
  const Case mlp{{256, 1024}, BenchLayout::nc, Op::train_forward};
  EXPECT_EQ(mlp.batch_norm_shape().s, 1);
  EXPECT_EQ(op_passes(Op::train_forward), 3);
  EXPECT_EQ(op_passes(Op::inference_forward), 2);
  EXPECT_EQ(op_passes(Op::backward), 5);
  EXPECT_EQ(op_passes(Op::forward_backward), 8);
  EXPECT_STREQ(op_name(Op::forward_backward), "forward_backward");
}

Report sample_report() {
  Report report;
  report.machine = {"Test CPU", 32 << 20, 2, 48 << 10, 2 << 20, "sysfs", {"avx512f", "amx_bf16"},
                    "AVX3", int64_t{256} << 20, 16, 2};
  report.threads = 2;
  report.kernel_variant = "plain";
  report.bandwidth = {50.0, 60.0, 1 << 20, 3};
  report.onednn = {true, "oneDNN 2.6.3", ""};
  report.pytorch = {false, "", "--no-pytorch"};
  CaseResult r;
  r.the_case = {{32, 256, 56, 56}, BenchLayout::channels_first, Op::train_forward};
  r.bnlab = {4.0, 3.9, 10};
  r.onednn.timing = Timing{20.0, 19.0, 10};
  r.onednn.max_abs_diff_vs_bnlab = 1e-6;
  r.pytorch.note = "skipped";
  report.results.push_back(r);
  return report;
}

TEST(BenchReport, JsonCarriesRatiosBandwidthShareAndAbsentPeers) {
  const nlohmann::json j = nlohmann::json::parse(report_json(sample_report()));
  const auto& r = j["results"][0];
  EXPECT_EQ(r["id"], "32x256x56x56/channels_first/train_forward");
  EXPECT_NEAR(r["onednn"]["ratio_to_bnlab"].get<double>(), 5.0, 1e-12);
  // 3 passes * 32*256*56*56*4 bytes / 4 ms, over 50 GB/s.
  const double gbs = 3.0 * 32 * 256 * 56 * 56 * 4 / 4e-3 / 1e9;
  EXPECT_NEAR(r["bnlab"]["effective_gbs"].get<double>(), gbs, 1e-9);
  EXPECT_NEAR(r["bnlab"]["share_of_copy_bandwidth"].get<double>(), gbs / 50.0, 1e-12);
  EXPECT_TRUE(r["pytorch"]["median_ms"].is_null());
  EXPECT_EQ(j["peers"]["pytorch"]["note"], "--no-pytorch");
}

TEST(BenchReport, JsonAndTableNameTheCpuItsCachesAndFeatures) {
  const Report report = sample_report();
  const nlohmann::json m = nlohmann::json::parse(report_json(report))["machine"];
  EXPECT_EQ(m["cpu_model"], "Test CPU");
  EXPECT_EQ(m["l1d_bytes"], 48 << 10);
  EXPECT_EQ(m["l2_bytes"], 2 << 20);
  EXPECT_EQ(m["llc_bytes"], 32 << 20);
  EXPECT_EQ(m["cache_source"], "sysfs");
  EXPECT_EQ(m["isa_features"], nlohmann::json::array({"avx512f", "amx_bf16"}));
  EXPECT_EQ(m["highway_target"], "AVX3");
  EXPECT_EQ(m["llc_instance_bytes"], int64_t{256} << 20);
  EXPECT_EQ(m["llc_sharing_cpus"], 16);
  EXPECT_EQ(m["process_cpus"], 2);
  const std::string table = format_table(report);
  EXPECT_NE(table.find("L1d 48 KiB, L2 2048 KiB, LLC 32 MiB (sysfs, the share of 2 CPUs of 256 MiB "
                       "shared by 16); ISA: avx512f amx_bf16; Highway target AVX3"),
            std::string::npos)
      << table;
}

TEST(BenchReport, TablePrintsPeerOverBnlabRatio) {
  const std::string table = format_table(sample_report());
  EXPECT_NE(table.find("32x256x56x56"), std::string::npos);
  EXPECT_NE(table.find("5.00"), std::string::npos);  // oneDNN 20 ms / bnlab 4 ms
  EXPECT_NE(table.find("PyTorch: skipped (--no-pytorch)"), std::string::npos);
}

TEST(BenchReport, AtomicWriteLeavesAFileTheCheckAccepts) {
  const std::string path = ::testing::TempDir() + "bench_report_test.json";
  bnlab::io::write_file_atomic(path, report_json(sample_report()));
  EXPECT_NO_THROW(check_report_file(path));
  std::ifstream tmp(path + ".tmp");
  EXPECT_FALSE(tmp.good());  // renamed away
  std::remove(path.c_str());
}

TEST(BenchReport, CheckNamesTheMissingKey) {
  const std::string path = ::testing::TempDir() + "bench_report_bad.json";
  bnlab::io::write_file_atomic(path, "{\"machine\": {}, \"threads\": 2}");
  try {
    check_report_file(path);
    FAIL() << "a report without bandwidth was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bandwidth"), std::string::npos) << e.what();
  }
  bnlab::io::write_file_atomic(path, "not json");
  EXPECT_THROW(check_report_file(path), Error);
  std::remove(path.c_str());
  EXPECT_THROW(bnlab::io::write_file_atomic("/nonexistent-dir/x.json", "{}"), Error);
}

// Each walk computes what it times: per chunk (the whole tensor, a sample or a
// group) y = x - mean(x), or dx = dy - mean(dy) - x * mean(x * dy), checked here
// in float64 for every walk on 1 and 3 threads (a team of 3 cuts a sample in 3).
TEST(BenchRooflines, EveryWalkComputesItsChunksStatisticsAndOutput) {
  const int64_t samples = 3, per_sample = 384, groups = 4;
  for (bool backward : {false, true}) {
    for (Walk walk :
         {Walk::output_only, Walk::tensor, Walk::sample, Walk::sample_team, Walk::group}) {
      if (backward && walk == Walk::output_only) continue;
      for (int threads : {1, 3}) {
        RooflineBuffers b(samples, per_sample, groups, backward);
        run_walk(b, backward, walk, threads);
        const int64_t numel = samples * per_sample;
        const int64_t chunk = walk == Walk::group ? per_sample / groups
                              : walk == Walk::sample || walk == Walk::sample_team ? per_sample
                                                                                  : numel;
        for (int64_t begin = 0; begin < numel; begin += chunk) {
          double sum = 0, sum_xdy = 0;
          for (int64_t i = begin; i < begin + chunk; ++i) {
            sum += backward ? b.dy[i] : b.x[i];
            if (backward) sum_xdy += double(b.x[i]) * b.dy[i];
          }
          const double mean = walk == Walk::output_only ? 0 : sum / chunk;
          const double mean_xdy = sum_xdy / chunk;
          for (int64_t i = begin; i < begin + chunk; ++i) {
            const double want = backward ? b.dy[i] - mean - b.x[i] * mean_xdy : b.x[i] - mean;
            ASSERT_NEAR(b.out[i], want, 1e-5)
                << walk_name(walk) << (backward ? " backward" : " forward") << ", " << threads
                << " threads, element " << i;
          }
        }
      }
    }
  }
}

TEST(BenchRooflines, ASampleThatDoesNotSplitIntoGroupsIsAnError) {
  EXPECT_THROW(RooflineBuffers(2, 100, 4, false), Error);
  RooflineBuffers forward_only(1, 128, 1, false);
  EXPECT_THROW(run_walk(forward_only, true, Walk::tensor, 1), Error);
}

TEST(BenchRooflines, ReportPrintsAndRecordsEachWalk) {
  Report report = sample_report();
  Roofline r;
  r.walk = "backward/sample_team", r.models = "channels_last group_norm_backward";
  r.dims = {32, 256, 56, 56}, r.passes = 3, r.tensor_bytes = 102760448, r.timing = {10.0, 9.0, 5};
  report.rooflines.push_back(r);
  const std::string table = format_table(report);
  EXPECT_NE(table.find("walk rooflines on 32x256x56x56"), std::string::npos) << table;
  EXPECT_NE(table.find("backward/sample_team"), std::string::npos) << table;
  EXPECT_NE(table.find("30.8"), std::string::npos) << table;  // 3 * 102760448 B / 10 ms
  const auto j = nlohmann::json::parse(report_json(report));
  ASSERT_EQ(j["rooflines"].size(), 1u);
  EXPECT_EQ(j["rooflines"][0]["walk"], "backward/sample_team");
  EXPECT_NEAR(j["rooflines"][0]["timing"]["effective_gbs"].get<double>(), 30.83, 0.01);
  const std::string path = ::testing::TempDir() + "bench_rooflines.json";
  bnlab::io::write_file_atomic(path, report_json(report));
  EXPECT_NO_THROW(check_report_file(path));
  auto broken = j;
  broken["rooflines"][0].erase("timing");
  bnlab::io::write_file_atomic(path, broken.dump());
  EXPECT_THROW(check_report_file(path), Error);
  std::remove(path.c_str());
}

std::vector<CaseResult> results_for(const std::vector<Case>& cases) {
  std::vector<CaseResult> results;
  for (const Case& c : cases) {
    CaseResult r;
    r.the_case = c;
    r.bnlab = {1.0, 1.0, 1};
    results.push_back(r);
  }
  return results;
}

TEST(BenchPytorchPeer, MissingInterpreterIsANoteNotAnError) {
  std::vector<CaseResult> results =
      results_for({{{16, 32}, BenchLayout::nc, Op::train_forward}});
  PytorchOptions options;
  options.python = "/nonexistent/python3";
  options.script = BNLAB_BENCH_SOURCE_DIR "/peer_pytorch.py";
  PeerStatus status;
  EXPECT_NO_THROW(run_pytorch(results, TimingPolicy{}, options, status));
  EXPECT_FALSE(status.ran);
  EXPECT_NE(status.note.find("/nonexistent/python3"), std::string::npos) << status.note;
  EXPECT_FALSE(results[0].pytorch.timing.has_value());
}

// A stand-in for the peer script: /bin/sh runs it and it prints `reply`.
std::string fake_peer(const std::string& name, const std::string& body) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << body;
  return path;
}

TEST(BenchPytorchPeer, RepliesAreMatchedToCasesById) {
  std::vector<CaseResult> results = results_for({{{16, 32}, BenchLayout::nc, Op::train_forward},
                                                 {{16, 32}, BenchLayout::nc, Op::backward}});
  PytorchOptions options;
  options.python = "/bin/sh";
  options.script = fake_peer("fake_peer_ok.sh",
                             "echo '{\"torch_version\": \"9.9\", \"results\": ["
                             "{\"id\": \"16x32/nc/backward\", \"median_ms\": 2.5, "
                             "\"min_ms\": 2.0, \"reps\": 7}]}'\n");
  options.env = {"BNLAB_BENCH_TEST=1"};
  PeerStatus status;
  run_pytorch(results, TimingPolicy{}, options, status);
  EXPECT_TRUE(status.ran) << status.note;
  EXPECT_EQ(status.version, "PyTorch 9.9");
  EXPECT_FALSE(results[0].pytorch.timing.has_value());
  EXPECT_EQ(results[0].pytorch.note, "no result");
  ASSERT_TRUE(results[1].pytorch.timing.has_value());
  EXPECT_EQ(results[1].pytorch.timing->median_ms, 2.5);
  EXPECT_EQ(results[1].pytorch.timing->reps, 7);
  std::remove(options.script.c_str());
}

TEST(BenchPytorchPeer, FailingOrSilentScriptIsANote) {
  for (const std::string& body : {std::string("exit 3\n"), std::string("echo not-json\n"),
                                  std::string("echo '{\"error\": \"no torch\"}'\n")}) {
    std::vector<CaseResult> results =
        results_for({{{16, 32}, BenchLayout::nc, Op::train_forward}});
    PytorchOptions options;
    options.python = "/bin/sh";
    options.script = fake_peer("fake_peer_bad.sh", body);
    PeerStatus status;
    EXPECT_NO_THROW(run_pytorch(results, TimingPolicy{}, options, status)) << body;
    EXPECT_FALSE(status.ran) << body;
    EXPECT_FALSE(status.note.empty()) << body;
    std::remove(options.script.c_str());
  }
}

// The real script with Debian's PyTorch, one call per op and layout on tiny
// shapes (blocked16, which PyTorch lacks, says so instead); skipped where
// /usr/bin/python3 has no torch.
TEST(BenchPytorchPeer, ScriptTimesEveryOpAndLayoutWhereTorchIsInstalled) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  std::vector<CaseResult> results = results_for(expand_cases(shape_table(true), ""));
  PytorchOptions options;
  options.script = BNLAB_BENCH_SOURCE_DIR "/peer_pytorch.py";
  options.threads = 1;
  TimingPolicy policy;
  policy.warmup = 0, policy.fixed_reps = 1;
  PeerStatus status;
  run_pytorch(results, policy, options, status);
  if (!status.ran) GTEST_SKIP() << "PyTorch skipped: " << status.note;
  for (const CaseResult& r : results) {
    if (r.the_case.layout == BenchLayout::blocked16 || r.the_case.align_bytes < 64) {
      EXPECT_FALSE(r.pytorch.timing.has_value()) << r.the_case.id();
      EXPECT_NE(r.pytorch.note.find("n/a"), std::string::npos) << r.the_case.id();
      continue;
    }
    EXPECT_TRUE(r.pytorch.timing.has_value()) << r.the_case.id() << ": " << r.pytorch.note;
  }
}

}  // namespace
}  // namespace bnlab::bench
