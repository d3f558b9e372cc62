// Data-parallel runs of the `bnlab` executable under mpirun: K processes with
// --sync-bn and per-process batch B follow one process with batch K*B (the
// same per-epoch losses and saved weights), without --sync-bn they do not, an
// eval over K processes scores like one, and a failure on one rank (missing
// data, a non-finite loss, kill -9) ends the whole run with a non-zero status
// and the rank's name, never a hang. One thread per process, --oversubscribe
// (the machine may have fewer cores than ranks), --limit for short runs; skips
// when Fashion-MNIST is absent. OpenMPI refuses root without its opt-in,
// which the tests set for their own runs.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "bnlab/data/idx.hpp"
#include "bnlab/io/safetensors.hpp"
#include "cli/cli_run.hpp"

namespace {

using bnlab_cli_test::Finished;
using bnlab_cli_test::have_data;
using bnlab_cli_test::read_text;
using bnlab_cli_test::scratch_dir;

// run_shell with OpenMPI's opt-in for root set for the child.
Finished run_shell(const std::string& command_line) {
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  return bnlab_cli_test::run_shell(command_line);
}

const std::string kExe = std::string("'") + BNLAB_EXE + "'";
// mpirun under `timeout`, so that no hang can outlast a test. In a sanitizer
// build LeakSanitizer would report OpenMPI's own allocations at MPI_Finalize
// (its dlopen'ed components), so the ranks run without leak checks.
const std::string kMpirun =
    "timeout -k 5 60 env ASAN_OPTIONS=detect_leaks=0 mpirun --oversubscribe ";
// mpirun with K processes of one thread each.
std::string mpirun(int processes) {
  return kMpirun + "-np " + std::to_string(processes) + " -x OMP_NUM_THREADS=1 ";
}

std::vector<float> floats(const bnlab::io::NamedTensor& t) {
  std::vector<float> values(t.bytes.size() / sizeof(float));
  std::memcpy(values.data(), t.bytes.data(), values.size() * sizeof(float));
  return values;
}

// The largest |a - b| / max(1, |b|) over every float tensor of two checkpoints.
double max_weight_difference(const std::string& a_path, const std::string& b_path) {
  const bnlab::io::SafetensorsFile a = bnlab::io::read_safetensors(a_path);
  const bnlab::io::SafetensorsFile b = bnlab::io::read_safetensors(b_path);
  EXPECT_EQ(a.tensors.size(), b.tensors.size());
  double worst = 0.0;
  for (const auto& ta : a.tensors) {
    const bnlab::io::NamedTensor* tb = b.find(ta.name);
    if (tb == nullptr) {
      ADD_FAILURE() << ta.name << " missing from " << b_path;
      continue;
    }
    EXPECT_EQ(ta.bytes.size(), tb->bytes.size()) << ta.name;
    if (ta.dtype != bnlab::io::DType::F32 || ta.bytes.size() != tb->bytes.size()) {
      EXPECT_EQ(ta.bytes, tb->bytes) << ta.name;  // num_batches_tracked
      continue;
    }
    const std::vector<float> va = floats(ta), vb = floats(*tb);
    for (size_t i = 0; i < va.size(); ++i)
      worst = std::max(worst,
                       std::fabs(double(va[i]) - vb[i]) / std::max(1.0, std::fabs(double(vb[i]))));
  }
  return worst;
}

double max_relative_loss_difference(const nlohmann::json& a, const nlohmann::json& b) {
  EXPECT_EQ(a["train_loss"].size(), b["train_loss"].size());
  double worst = 0.0;
  for (size_t e = 0; e < a["train_loss"].size() && e < b["train_loss"].size(); ++e) {
    const double la = a["train_loss"][e], lb = b["train_loss"][e];
    worst = std::max(worst, std::fabs(la - lb) / std::fabs(lb));
  }
  return worst;
}

struct Trained {
  nlohmann::json json;
  std::string weights;
};

// `bnlab train` on `processes` ranks (0: no mpirun) with per-process batch `batch`.
Trained train(const std::string& model, int processes, int64_t batch, const std::string& extra,
              const std::string& limits) {
  const std::string dir = scratch_dir(model + "_" + std::to_string(processes) + "_" +
                                      std::to_string(batch) + (extra.empty() ? "" : "_x"));
  Trained t;
  t.weights = dir + "/weights.safetensors";
  const std::string launch = processes > 0 ? mpirun(processes) : std::string("OMP_NUM_THREADS=1 ");
  const Finished run = run_shell(launch + kExe + " train --model " + model + " " + limits +
                                 " --batch " + std::to_string(batch) + " --threads 1 --seed 3" +
                                 " --json --save '" + t.weights + "' " + extra);
  EXPECT_EQ(run.status, 0) << run.err;
  if (run.status == 0) t.json = run.json();
  return t;
}

// K processes x batch B with --sync-bn against one process x batch K*B.
void expect_sync_bn_follows_one_process(const std::string& model, int processes, int64_t batch,
                                        const std::string& limits) {
  const Trained one = train(model, 0, batch * processes, "", limits);
  const Trained many = train(model, processes, batch, "--sync-bn", limits);
  ASSERT_FALSE(one.json.is_null());
  ASSERT_FALSE(many.json.is_null());
  EXPECT_EQ(many.json["distributed"]["processes"], processes);
  EXPECT_EQ(many.json["distributed"]["global_batch"], batch * processes);
  EXPECT_LE(max_relative_loss_difference(many.json, one.json), 1e-5)
      << many.json["train_loss"] << " vs " << one.json["train_loss"];
  EXPECT_LE(max_weight_difference(many.weights, one.weights), 1e-4);
  EXPECT_EQ(many.json["test_accuracy"], one.json["test_accuracy"]);
}

// 1000 examples: global batches of 64 end in 40 (20 + 20 at K = 2); of 96 in
// 40 (13 + 13 + 14 at K = 3): unequal slices.
const char* kMlpLimits = "--limit 1000 --test-limit 166 --epochs 2";
const char* kCnnLimits = "--limit 400 --test-limit 66 --epochs 1";

TEST(DataParallel, SyncBnTwoProcessesFollowOneProcessWithTheGlobalBatchMlpBn) {
  REQUIRE_DATA();
  expect_sync_bn_follows_one_process("mlp-bn", 2, 32, kMlpLimits);
}

TEST(DataParallel, SyncBnThreeProcessesWithUnequalSlicesFollowOneProcessMlpBn) {
  REQUIRE_DATA();
  expect_sync_bn_follows_one_process("mlp-bn", 3, 32, kMlpLimits);
}

// 400 examples: global batches of 64 end in 16 (8 + 8); of 96 in 16 (5 + 5 + 6).
TEST(DataParallel, SyncBnTwoProcessesFollowOneProcessWithTheGlobalBatchCnnBn) {
  REQUIRE_DATA();
  expect_sync_bn_follows_one_process("cnn-bn", 2, 32, kCnnLimits);
}

TEST(DataParallel, SyncBnThreeProcessesWithUnequalSlicesFollowOneProcessCnnBn) {
  REQUIRE_DATA();
  expect_sync_bn_follows_one_process("cnn-bn", 3, 32, kCnnLimits);
}

// Each rank normalizing its own 32 examples is a different model: the test
// above cannot pass by accident. The saved running statistics are the ranks'
// mean, which no single process's run produces either.
TEST(DataParallel, WithoutSyncBnTheRunsDiffer) {
  REQUIRE_DATA();
  const Trained one = train("mlp-bn", 0, 64, "", kMlpLimits);
  const Trained many = train("mlp-bn", 2, 32, "", kMlpLimits);
  ASSERT_FALSE(one.json.is_null());
  ASSERT_FALSE(many.json.is_null());
  EXPECT_EQ(many.json["distributed"]["sync_bn"], false);
  EXPECT_GT(max_relative_loss_difference(many.json, one.json), 1e-3);
  EXPECT_GT(max_weight_difference(many.weights, one.weights), 1e-3);
}

TEST(DataParallel, EvalOverThreeProcessesScoresLikeOne) {
  REQUIRE_DATA();
  const Trained trained = train("mlp-bn", 0, 64, "", "--limit 600 --test-limit 100 --epochs 1");
  const std::string args =
      " eval --weights '" + trained.weights + "' --limit 500 --threads 1 --json";
  const Finished one = run_shell("OMP_NUM_THREADS=1 " + kExe + args);
  const Finished three = run_shell(mpirun(3) + kExe + args);
  ASSERT_EQ(one.status, 0) << one.err;
  ASSERT_EQ(three.status, 0) << three.err;
  EXPECT_EQ(three.json()["test_accuracy"], one.json()["test_accuracy"]);
  EXPECT_NEAR(three.json()["test_loss"].get<double>(), one.json()["test_loss"].get<double>(), 1e-6);
  // Rank 0 alone prints: one JSON line, one result line.
  EXPECT_EQ(three.out.find("test: accuracy"), three.out.rfind("test: accuracy")) << three.out;
}

TEST(DataParallel, MissingDataOnOneRankEndsEveryRankNamingIt) {
  REQUIRE_DATA();
  const std::string train_args = " train --model mlp-bn --limit 1000 --epochs 50 --threads 1 ";
  // MPMD: rank 0 has the data, rank 1 a folder that does not exist.
  const Finished run =
      run_shell(kMpirun + "-x OMP_NUM_THREADS=1 -np 1 " + kExe +
                train_args + " : -np 1 " + kExe + train_args + "--data /nonexistent/bnlab-data");
  EXPECT_NE(run.status, 0) << run.out << run.err;
  EXPECT_NE(run.status, 124) << "timed out: a rank hung";
  EXPECT_NE(run.err.find("rank 1 of 2"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("/nonexistent/bnlab-data"), std::string::npos) << run.err;
  EXPECT_LT(run.seconds, 30.0);
}

TEST(DataParallel, NonFiniteLossOnOneRankEndsEveryRankNamingIt) {
  REQUIRE_DATA();
  const std::string train_args = " train --model mlp --limit 1000 --epochs 50 --threads 1 ";
  // Rank 1's huge learning rate sends its weights to infinity after its first update.
  const Finished run =
      run_shell(kMpirun + "-x OMP_NUM_THREADS=1 -np 1 " + kExe +
                train_args + " : -np 1 " + kExe + train_args + "--lr 1e30");
  EXPECT_NE(run.status, 0) << run.out << run.err;
  EXPECT_NE(run.status, 124) << "timed out: a rank hung";
  EXPECT_NE(run.err.find("non-finite on rank 1 of 2"), std::string::npos) << run.err;
  EXPECT_LT(run.seconds, 30.0);
}

TEST(DataParallel, KillingOneRankEndsTheRunWithinSeconds) {
  REQUIRE_DATA();
  // Starts a long run, waits for rank 0's first progress, kills rank 1 with
  // SIGKILL, and reports mpirun's status and how long it took to end.
  const std::string dir = scratch_dir("kill");
  // The tag tells this run's processes from those of tests running beside it.
  const std::string tag = "BNLAB_KILL_TEST=" + std::to_string(getpid());
  // Plain sh and coreutils: rank 1 is the process whose environment has both
  // OMPI_COMM_WORLD_RANK=1 and the tag.
  const std::string out = "'" + dir + "/out.txt'", err = "'" + dir + "/err.txt'";
  const std::string script =
      mpirun(2) + "-x " + tag + " " + kExe +
      " train --model mlp-bn --limit 4000 --epochs 200 --threads 1 >" + out + " 2>" + err +
      " & pid=$!\n"
      "for i in $(seq 1 200); do grep -q '^epoch 1/' " +
      out +
      " && break; sleep 0.1; done\n"
      "victim=''\n"
      "for p in /proc/[0-9]*; do\n"
      "  grep -qz '^OMPI_COMM_WORLD_RANK=1$' $p/environ 2>/dev/null &&\n"
      "    grep -qz '^" +
      tag +
      "$' $p/environ 2>/dev/null && victim=${p#/proc/}\n"
      "done\n"
      "[ -n \"$victim\" ] || { echo 'no rank 1'; kill $pid; exit 3; }\n"
      "kill -9 $victim; start=$(date +%s%N)\n"
      "wait $pid; status=$?\n"
      "echo \"status=$status milliseconds=$(( ($(date +%s%N) - start) / 1000000 ))\"\n";
  const Finished run = run_shell(script);
  ASSERT_EQ(run.status, 0) << run.out << run.err << read_text(dir + "/err.txt");
  const size_t at = run.out.find("status=");
  ASSERT_NE(at, std::string::npos) << run.out;
  const int status = std::atoi(run.out.c_str() + at + 7);
  EXPECT_NE(status, 0) << run.out;
  EXPECT_NE(status, 124) << "timed out: rank 0 hung after rank 1 died";
  const double milliseconds = std::atof(run.out.c_str() + run.out.find("milliseconds=") + 13);
  EXPECT_LT(milliseconds, 20000.0) << run.out;
  std::printf("%s", run.out.c_str());  // status and time, for the log
}

}  // namespace
