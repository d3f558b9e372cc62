// `bnlab train` as issue 13 wants it: validation each epoch, --limit that
// leaves the test split whole, resume that continues exactly, fine-tuning
// from a checkpoint, a real SIGINT/SIGTERM, outputs checked before training,
// and a last batch of one example with BatchNorm. Tiny runs (--limit, one
// thread), skipped without Fashion-MNIST.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "bnlab/io/safetensors.hpp"
#include "cli_run.hpp"

extern char** environ;

namespace {

using namespace bnlab_cli_test;

std::string read_bytes(const std::string& path) { return read_text(path); }

TEST(CliTrain, ValidationIsReportedEachEpochAndLimitKeepsTheTestSplit) {
  REQUIRE_DATA();
  const Finished run =
      run_bnlab("train --model mlp-bn --epochs 2 --limit 600 --val-split 0.25 --threads 1 --json");
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json result = nlohmann::json::parse(run.last_line());
  ASSERT_EQ(result["epochs"].size(), 2u);
  for (const auto& epoch : result["epochs"]) {
    EXPECT_GT(epoch["val_loss"].get<double>(), 0.0) << epoch;
    EXPECT_GT(epoch["val_accuracy"].get<double>(), 0.1) << epoch;  // better than chance
    EXPECT_LE(epoch["val_accuracy"].get<double>(), 1.0) << epoch;
  }
  EXPECT_NE(run.out.find("validation: 150 images held out"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("on 450 images"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("val accuracy"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("(10000 images, eval mode)"), std::string::npos) << run.out;

  const Finished quick =
      run_bnlab("train --model mlp --epochs 1 --limit 300 --test-limit 50 --threads 1");
  ASSERT_EQ(quick.status, 0) << quick.err;
  EXPECT_NE(quick.out.find("(50 images, eval mode)"), std::string::npos) << quick.out;
}

TEST(CliTrain, OptionsThatNeedAnotherAreUsageErrors) {
  for (const char* args :
       {"train --model mlp --save-best best.safetensors", "train --model mlp --checkpoint-every 2",
        "train --model mlp --val-split 1", "train --model mlp --val-split 0",
        "train --model mlp --resume a.safetensors --init b.safetensors"}) {
    const Finished run = run_bnlab(args);
    EXPECT_EQ(run.status, 2) << "bnlab " << args << "\n" << run.err;
  }
}

// E epochs in one run and k + (E - k) through --resume: the same bytes.
TEST(CliTrain, ResumeContinuesBitIdentically) {
  REQUIRE_DATA();
  const std::string dir = scratch_dir("resume");
  const std::string common =
      " --model mlp-bn --momentum 0.9 --limit 500 --test-limit 50 --val-split 0.2 --threads 1 ";
  const std::string whole = dir + "/whole.safetensors", split = dir + "/split.safetensors";
  ASSERT_EQ(run_bnlab("train" + common + "--epochs 3 --save '" + whole + "'").status, 0);
  ASSERT_EQ(run_bnlab("train" + common + "--epochs 1 --save '" + split + "'").status, 0);
  const Finished rest =
      run_bnlab("train" + common + "--epochs 3 --resume '" + split + "' --save '" + split + "'");
  ASSERT_EQ(rest.status, 0) << rest.err;
  EXPECT_NE(rest.out.find("resumed from"), std::string::npos) << rest.out;
  EXPECT_EQ(rest.out.find("epoch 1/3"), std::string::npos) << rest.out;  // epoch 1 is not rerun
  EXPECT_EQ(read_bytes(whole), read_bytes(split));

  // Other options would not continue the same run: an error naming them.
  const Finished other =
      run_bnlab("train" + common + "--epochs 3 --lr 0.1 --resume '" + split + "'");
  EXPECT_EQ(other.status, 1);
  EXPECT_NE(other.err.find("lr: 0.01"), std::string::npos) << other.err;
  EXPECT_NE(other.err.find("--init"), std::string::npos) << other.err;

  // eval reads the resumable checkpoint like any other (the extras are skipped).
  const Finished eval = run_bnlab("eval --weights '" + whole + "' --limit 50 --threads 1");
  EXPECT_EQ(eval.status, 0) << eval.err;
}

TEST(CliTrain, InitStartsFromTheWeightsWithEvalsKeyChecks) {
  REQUIRE_DATA();
  const std::string dir = scratch_dir("init");
  const std::string weights = dir + "/mlp.safetensors";
  ASSERT_EQ(
      run_bnlab("train --model mlp --epochs 1 --limit 300 --test-limit 50 --threads 1 --save '" +
                weights + "'")
          .status,
      0);
  const Finished tuned = run_bnlab("train --init '" + weights +
                                   "' --epochs 1 --limit 300 --test-limit 50 --lr 0.001 "
                                   "--optimizer adam --threads 1 --json");
  EXPECT_EQ(tuned.status, 0) << tuned.err;
  const Finished wrong =
      run_bnlab("train --model mlp-bn --init '" + weights + "' --epochs 1 --limit 300 --threads 1");
  EXPECT_EQ(wrong.status, 1);
  EXPECT_NE(wrong.err.find("missing key"), std::string::npos) << wrong.err;
}

// Starts `bnlab <args>` with stdout and stderr to files; returns its pid.
pid_t spawn_bnlab(const std::string& args, const std::string& out, const std::string& err) {
  const std::string command = "exec '" BNLAB_EXE "' " + args + " >'" + out + "' 2>'" + err + "'";
  const char* argv[] = {"/bin/sh", "-c", command.c_str(), nullptr};
  pid_t pid = -1;
  if (::posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ) != 0)
    return -1;
  return pid;
}

// A signal mid-run: the step finishes, a resumable checkpoint is written,
// the status is 128 + the signal; --resume then finishes the run.
TEST(CliTrain, SigintAndSigtermSaveAResumableCheckpoint) {
  REQUIRE_DATA();
  const std::string dir = scratch_dir("signal");
  for (const int signal : {SIGINT, SIGTERM}) {
    const std::string weights = dir + "/run" + std::to_string(signal) + ".safetensors";
    const std::string out = dir + "/out.txt", err = dir + "/err.txt";
    const std::string args =
        "train --model mlp --epochs 1000 --limit 3000 --test-limit 50 "
        "--threads 1 --save '" +
        weights + "'";
    ::unlink(out.c_str());
    const pid_t pid = spawn_bnlab(args, out, err);
    ASSERT_GT(pid, 0);
    // The handlers are in place once "training" is printed; the signal lands
    // in epoch 2, after the first epoch's line.
    for (int i = 0; i < 500 && read_text(out).find("epoch 1/1000  ") == std::string::npos; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_EQ(::kill(pid, signal), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status) << "\n"
                                   << read_text(err);
    EXPECT_EQ(WEXITSTATUS(status), 128 + signal) << read_text(err);
    EXPECT_NE(read_text(out).find("continue with --resume"), std::string::npos) << read_text(out);
    const bnlab::io::SafetensorsFile file = bnlab::io::read_safetensors(weights);
    EXPECT_EQ(file.metadata.count("bnlab_resume"), 1u);
    const Finished rest = run_bnlab(
        "train --model mlp --epochs 1 --limit 3000 --test-limit 50 --threads 1 --resume '" +
        weights + "' --json");
    // Stopped in epoch 1 (or just after it, on a fast machine): either way it finishes.
    EXPECT_EQ(rest.status, 0) << rest.err;
  }
}

TEST(CliTrain, UnwritableOutputsFailBeforeTraining) {
  REQUIRE_DATA();
  for (const std::string target :
       {"--save /nonexistent/folder/x.safetensors", "--save /proc/bnlab.safetensors",
        "--val-split 0.2 --save-best /nonexistent/best.safetensors", "--save /dev/null"}) {
    const Finished run =
        run_bnlab("train --model mlp --epochs 50 --limit 300 --threads 1 " + target);
    EXPECT_EQ(run.status, 1) << target << "\n" << run.err;
    EXPECT_EQ(run.out.find("epoch 1/"), std::string::npos) << target << ": it trained first";
    const std::string path = target.substr(target.rfind(' ') + 1);
    EXPECT_NE(run.err.find(path), std::string::npos) << run.err;
  }
  const Finished demo =
      run_bnlab("demo --epochs 5 --limit 300 --threads 1 --svg /nonexistent/x.svg");
  EXPECT_EQ(demo.status, 1) << demo.err;
  EXPECT_NE(demo.err.find("/nonexistent/x.svg"), std::string::npos) << demo.err;
  EXPECT_EQ(demo.out.find("epoch"), std::string::npos) << demo.out;
  const Finished benefits = run_bnlab("benefits --quick --out /proc/bnlab-report");
  EXPECT_EQ(benefits.status, 1) << benefits.err;
  EXPECT_NE(benefits.err.find("/proc/bnlab-report"), std::string::npos) << benefits.err;
}

TEST(CliTrain, AReadOnlyFolderIsFoundBeforeTraining) {
  REQUIRE_DATA();
  if (::geteuid() == 0) GTEST_SKIP() << "root writes into read-only folders (/proc is tested)";
  const std::string dir = scratch_dir("readonly");
  ASSERT_EQ(::chmod(dir.c_str(), 0555), 0);
  const Finished run = run_bnlab("train --model mlp --epochs 50 --limit 300 --threads 1 --save '" +
                                 dir + "/x.safetensors'");
  ::chmod(dir.c_str(), 0755);
  EXPECT_EQ(run.status, 1) << run.err;
  EXPECT_NE(run.err.find(dir), std::string::npos) << run.err;
}

// 641 = 10 batches of 64 and one of 1: BatchNorm1d cannot normalize one value.
TEST(CliTrain, ALastBatchOfOneExampleIsDroppedWithANote) {
  REQUIRE_DATA();
  const Finished run =
      run_bnlab("train --model mlp-bn --epochs 1 --limit 641 --test-limit 50 --threads 1 --json");
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.err.find("bnlab: note: each epoch's last batch would hold 1 of 641"),
            std::string::npos)
      << run.err;
  // Without BatchNorm the batch of one trains as in PyTorch: no note.
  const Finished plain =
      run_bnlab("train --model mlp --epochs 1 --limit 641 --test-limit 50 --threads 1");
  ASSERT_EQ(plain.status, 0) << plain.err;
  EXPECT_EQ(plain.err.find("note"), std::string::npos) << plain.err;
}

}  // namespace
