// End-to-end runs of the `bnlab` executable: exit statuses (0 done, 1 error,
// 2 usage), the JSON last lines, a checkpoint round trip through train and
// eval, and the error messages a user sees. Data-set runs use --limit and one
// thread so the whole suite stays short, and skip when Fashion-MNIST is absent.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "bnlab/data/idx.hpp"
#include "bnlab/io/safetensors.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/nn/state_dict.hpp"
#include "bnlab/random.hpp"
#include "cli_run.hpp"

namespace {

using namespace bnlab_cli_test;

TEST(Cli, VersionPrintsTheProjectVersion) {
  const Finished run = run_bnlab("--version");
  EXPECT_EQ(run.status, 0);
  EXPECT_EQ(run.out, "bnlab " BNLAB_VERSION "\n");
}

TEST(Cli, DemoJsonLastLineHasBothRunsAndTheChartIsWritten) {
  REQUIRE_DATA();
  const std::string svg = scratch_dir("demo") + "/loss.svg";
  const Finished run = run_bnlab("demo --epochs 1 --limit 2000 --threads 1 --json --svg '" + svg + "'");
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json result = nlohmann::json::parse(run.last_line());
  ASSERT_EQ(result["runs"].size(), 2u) << run.last_line();
  const auto& plain = result["runs"][0];
  const auto& bn = result["runs"][1];
  EXPECT_EQ(plain["name"], "without_bn");
  EXPECT_EQ(bn["name"], "with_bn");
  for (const auto* r : {&plain, &bn}) {
    ASSERT_EQ((*r)["train_loss"].size(), 1u);
    const double loss = (*r)["train_loss"][0];
    EXPECT_GT(loss, 0.0);
    EXPECT_LT(loss, 2.4);  // below log(10): it learned something
    const double accuracy = (*r)["test_accuracy"];
    EXPECT_GT(accuracy, 0.1);
    EXPECT_LE(accuracy, 1.0);
  }
  const double train_mode = bn["test_accuracy_train_mode"];
  EXPECT_GT(train_mode, 0.1);
  EXPECT_FALSE(plain.contains("test_accuracy_train_mode"));
  EXPECT_NE(run.out.find("loss chart: " + svg), std::string::npos) << run.out;
  EXPECT_EQ(read_text(svg).rfind("<svg", 0), 0u);
}

TEST(Cli, TrainSavesACheckpointThatEvalScoresTheSame) {
  REQUIRE_DATA();
  const std::string weights = scratch_dir("train") + "/mlp-bn.safetensors";
  const Finished train = run_bnlab(
      "train --model mlp-bn --epochs 1 --limit 1000 --test-limit 166 --threads 1 --json --save '" +
      weights + "'");
  ASSERT_EQ(train.status, 0) << train.err;
  const nlohmann::json trained = nlohmann::json::parse(train.last_line());
  for (const char* key : {"train_loss", "epochs", "test_accuracy", "test_loss", "seconds",
                          "images_per_second"})
    EXPECT_TRUE(trained.contains(key)) << key << " missing from " << train.last_line();
  EXPECT_EQ(trained["train_loss"].size(), 1u);
  EXPECT_GT(trained["images_per_second"].get<double>(), 0.0);

  // train tests on the first 166 test images; eval on the same ones.
  const Finished eval = run_bnlab("eval --weights '" + weights + "' --limit 166 --threads 1 --json");
  ASSERT_EQ(eval.status, 0) << eval.err;
  const nlohmann::json scored = nlohmann::json::parse(eval.last_line());
  EXPECT_DOUBLE_EQ(scored["test_accuracy"].get<double>(), trained["test_accuracy"].get<double>());
  EXPECT_NEAR(scored["test_loss"].get<double>(), trained["test_loss"].get<double>(), 1e-9);
}

TEST(Cli, FoldRemovesBatchNormAndKeepsTheOutputs) {
  REQUIRE_DATA();
  const std::string dir = scratch_dir("fold");
  const std::string weights = dir + "/mlp-bn.safetensors", folded = dir + "/folded.safetensors";
  ASSERT_EQ(run_bnlab("train --model mlp-bn --epochs 1 --limit 640 --threads 1 --save '" +
                      weights + "'").status, 0);
  const Finished fold = run_bnlab("fold --weights '" + weights + "' --out '" + folded +
                                  "' --limit 200 --threads 1 --json");
  ASSERT_EQ(fold.status, 0) << fold.err;
  const nlohmann::json result = nlohmann::json::parse(fold.last_line());
  EXPECT_EQ(result["folded"].get<int>(), 2);
  EXPECT_TRUE(result["checked"].get<bool>());
  EXPECT_EQ(result["arch"].get<std::string>().find("BatchNorm"), std::string::npos);
  EXPECT_LT(result["max_abs_diff"].get<double>(),
            1e-4 * (1.0 + result["max_abs_output"].get<double>()));
  EXPECT_DOUBLE_EQ(result["accuracy_after"].get<double>(),
                   result["accuracy_before"].get<double>());
  // The folded file carries its own architecture: eval needs no --arch.
  const Finished eval = run_bnlab("eval --weights '" + folded + "' --limit 200 --threads 1 --json");
  ASSERT_EQ(eval.status, 0) << eval.err;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(eval.last_line())["test_accuracy"].get<double>(),
                   result["accuracy_after"].get<double>());
}

TEST(Cli, RecalibrateReplacesTheRunningStatisticsAndReportsBothAccuracies) {
  REQUIRE_DATA();
  const std::string dir = scratch_dir("recalibrate");
  const std::string weights = dir + "/mlp-bn.safetensors", out = dir + "/precise.safetensors";
  // --precise-bn recalibrates after the epoch: the saved file holds population statistics.
  const Finished train = run_bnlab("train --model mlp-bn --epochs 1 --limit 640 --threads 1 "
                                   "--precise-bn 4 --save '" + weights + "'");
  ASSERT_EQ(train.status, 0) << train.err;
  EXPECT_NE(train.out.find("precise BN: 2 layer(s) recalibrated on 256 images"), std::string::npos)
      << train.out;
  const Finished run = run_bnlab("recalibrate --weights '" + weights + "' --out '" + out +
                                 "' --batches 3 --batch 50 --limit 200 --threads 1 --json");
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json result = nlohmann::json::parse(run.last_line());
  EXPECT_EQ(result["layers"].get<int>(), 2);
  EXPECT_EQ(result["batches"].get<int>(), 3);
  EXPECT_EQ(result["examples"].get<int>(), 150);
  EXPECT_GT(result["test_accuracy_after"].get<double>(), 0.3);
  // The written file scores as the command said, and its statistics changed.
  const Finished eval = run_bnlab("eval --weights '" + out + "' --limit 200 --threads 1 --json");
  ASSERT_EQ(eval.status, 0) << eval.err;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(eval.last_line())["test_accuracy"].get<double>(),
                   result["test_accuracy_after"].get<double>());
  const auto before = bnlab::io::read_safetensors(weights), after = bnlab::io::read_safetensors(out);
  ASSERT_NE(before.find("2.running_var"), nullptr);
  ASSERT_NE(after.find("2.running_var"), nullptr);
  EXPECT_NE(before.find("2.running_var")->bytes, after.find("2.running_var")->bytes);
  EXPECT_EQ(before.find("1.weight")->bytes, after.find("1.weight")->bytes);

  const Finished bad = run_bnlab("recalibrate --weights '" + weights + "' --out '" + out +
                                 "' --batches 0");
  EXPECT_EQ(bad.status, 2) << bad.err;
}

// Issue 13: divergence is an error (exit 1, where it happened), and the
// checkpoint at --save stays as it was.
TEST(Cli, ADivergedRunIsReportedNotCrashed) {
  REQUIRE_DATA();
  const std::string weights = scratch_dir("diverged") + "/kept.safetensors";
  { std::ofstream(weights) << "the previous checkpoint"; }
  const Finished run = run_bnlab(
      "train --model mlp --lr 1e6 --epochs 3 --limit 640 --threads 1 --json --save '" + weights +
      "'");
  ASSERT_EQ(run.status, 1) << run.err;
  EXPECT_EQ(read_text(weights), "the previous checkpoint");
  EXPECT_NE(run.err.find("non-finite at epoch 1, step "), std::string::npos) << run.err;
  EXPECT_EQ(run.out.find("saved"), std::string::npos) << run.out;
  const nlohmann::json result = nlohmann::json::parse(run.last_line());
  EXPECT_TRUE(result["diverged"].get<bool>());
  EXPECT_EQ(result["diverged_at"]["epoch"], 1);
  EXPECT_GE(result["diverged_at"]["step"].get<int>(), 1);
  EXPECT_LT(result["train_loss"].size(), 3u);  // stopped early
  EXPECT_TRUE(result["train_loss"].back().is_null());  // NaN is written as null
  EXPECT_NE(run.out.find("DIVERGED"), std::string::npos) << run.out;
  EXPECT_EQ(run.out.find("-nan"), std::string::npos) << run.out;
  EXPECT_NE(run.err.find("--lr"), std::string::npos) << run.err;
}

TEST(Cli, EvalOfAFileWithoutArchitectureAsksForArch) {
  REQUIRE_DATA();
  const std::string arch = "Flatten(), Linear(784, 10)";
  bnlab::Generator gen(0);
  auto net = bnlab::nn::parse_arch(arch, gen);
  bnlab::io::SafetensorsFile file = bnlab::nn::state_dict(*net);
  file.metadata.clear();  // as PyTorch's safetensors.torch.save_file writes it
  const std::string weights = scratch_dir("noarch") + "/plain.safetensors";
  bnlab::io::write_safetensors(weights, file);

  const Finished without = run_bnlab("eval --weights '" + weights + "' --limit 100");
  EXPECT_EQ(without.status, 1);
  EXPECT_NE(without.err.find("bnlab: error:"), std::string::npos) << without.err;
  EXPECT_NE(without.err.find("--arch"), std::string::npos) << without.err;
  const Finished with = run_bnlab("eval --weights '" + weights + "' --arch '" + arch + "' --limit 100 --json");
  EXPECT_EQ(with.status, 0) << with.err;
  EXPECT_TRUE(nlohmann::json::parse(with.last_line()).contains("test_loss"));
}

TEST(Cli, UsageErrorsExitWithTwo) {
  for (const char* args : {"", "frobnicate", "train", "train --model mlp --arch 'Flatten()'",
                           "train --model resnet50", "train --model mlp --optimizer rmsprop",
                           "demo --epochs 0", "demo --epochs many", "eval", "demo --no-such-flag"}) {
    const Finished run = run_bnlab(args);
    EXPECT_EQ(run.status, 2) << "bnlab " << args << "\n" << run.err;
    EXPECT_FALSE(run.err.empty()) << "bnlab " << args;
  }
}

TEST(Cli, HelpOfEachCommandExitsWithZeroAndShowsExamples) {
  for (const char* args : {"--help", "demo --help", "train --help", "eval --help",
                           "recalibrate --help"}) {
    const Finished run = run_bnlab(args);
    EXPECT_EQ(run.status, 0) << "bnlab " << args;
    EXPECT_NE(run.out.find("Examples:"), std::string::npos) << "bnlab " << args << "\n" << run.out;
  }
}

TEST(Cli, ShapeErrorExitsWithOneAndNamesTheLayer) {
  REQUIRE_DATA();
  const Finished run = run_bnlab(
      "train --arch 'Flatten(), Linear(784, 10), BatchNorm1d(11)' --epochs 1 --limit 100");
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("bnlab: error:"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("BatchNorm1d(11"), std::string::npos) << run.err;
}

TEST(Cli, ArchSyntaxErrorExitsWithOne) {
  REQUIRE_DATA();
  const Finished run = run_bnlab("train --arch 'Flatten(), Linear(784,' --epochs 1 --limit 100");
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("bnlab: error:"), std::string::npos) << run.err;
}

// The package hint is for the default folder only (issue 13); another folder
// is named, with what it must hold.
TEST(Cli, MissingDataDirectoryExitsWithOneAndNamesTheFolder) {
  const Finished run = run_bnlab("train --model mlp --epochs 1 --data /nonexistent/fashion-mnist");
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("/nonexistent/fashion-mnist not found"), std::string::npos) << run.err;
  EXPECT_EQ(run.err.find("dataset-fashion-mnist"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("--data"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("t10k-images-idx3-ubyte"), std::string::npos) << run.err;
  const Finished demo = run_bnlab("demo --epochs 1 --data /nonexistent/fashion-mnist");
  EXPECT_EQ(demo.status, 1);
  EXPECT_NE(demo.err.find("/nonexistent/fashion-mnist not found"), std::string::npos) << demo.err;
}

TEST(Cli, MissingCheckpointExitsWithOneAndNamesTheFile) {
  const Finished run = run_bnlab("eval --weights /nonexistent/model.safetensors");
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.err.find("/nonexistent/model.safetensors"), std::string::npos) << run.err;
}

// Each case: the arguments and the text the message must hold (the option and
// the value). Numbers are checked for every command at once (make_numbers_strict).
TEST(Cli, BadNumbersAndOptimizerOptionsAreUsageErrorsNamingTheOption) {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"train --model mlp --lr inf", "--lr: must be a finite number, got inf"},
      {"train --model mlp --lr 1e400", "--lr: must be a finite number, got 1e400"},
      {"train --model mlp --lr nan", "--lr: must be a finite number, got nan"},
      {"train --model mlp --momentum inf", "--momentum: must be a finite number, got inf"},
      {"train --model mlp --weight-decay nan", "--weight-decay: must be a finite number, got nan"},
      {"train --model mlp --optimizer adam --betas 0.9,inf", "--betas: must be a finite number, got inf"},
      {"train --model mlp --weight-decay 1e999", "--weight-decay: must be a finite number"},
      {"train --model mlp --clip-grad-norm inf", "--clip-grad-norm: must be a finite number"},
      {"train --model mlp --optimizer adam --eps -inf", "--eps"},
      {"train --model mlp --epochs 99999999999999999999", "--epochs: out of range"},
      {"train --model mlp --seed -1", "--seed: out of range"},
      {"train --model mlp --seed 18446744073709551616", "--seed: out of range"},
      {"train --model mlp --batch 0", "--batch: must be > 0, got 0"},
      {"train --model mlp --epochs 0x10", "--epochs: expected a decimal integer, got 0x10"},
      {"train --model mlp --threads 5000", "--threads"},
      {"benefits --threads 5000", "--threads"},
      {"demo --limit 99999999999999999999", "--limit: out of range"},
      {"eval --weights x --threads 99999999999", "--threads"},
      {"train --model mlp --optimizer adam --momentum 0.9",
       "--momentum 0.9: applies to --optimizer sgd only"},
      {"train --model mlp --optimizer adamw --nesterov",
       "--nesterov: applies to --optimizer sgd only"},
      {"train --model mlp --optimizer adamw --dampening 0.1", "--dampening 0.1: applies"},
      {"train --model mlp --betas 0.8,0.9",
       "--betas 0.8,0.9: applies to --optimizer adam and adamw"},
      {"train --model mlp --nesterov", "--nesterov: needs --momentum > 0"},
      {"train --model mlp --momentum 0.9 --nesterov --dampening 0.5", "--nesterov: needs"},
      {"train --model mlp --optimizer adam --betas 0.9,1", "--betas: must be in [0, 1), got 1"},
      {"train --model mlp --label-smoothing 2", "--label-smoothing: must be in [0, 1], got 2"},
      {"train --model mlp --lr-schedule step:0:0.1", "--lr-schedule: lr schedule \"step:0:0.1\""},
      {"train --model mlp --lr-schedule multistep:5,2:0.1", "increase"},
      {"train --model mlp --lr-schedule warm", "unknown schedule"},
      {"train --model mlp --lr-schedule onecycle --warmup-epochs 1", "--warmup-epochs 1"},
      {"train --model mlp --epochs 3 --warmup-epochs 3", "--warmup-epochs 3 (--epochs 3)"}};
  for (const auto& [args, expected] : cases) {
    const Finished run = run_bnlab(args);
    EXPECT_EQ(run.status, 2) << "bnlab " << args << "\n" << run.err;
    EXPECT_NE(run.err.find(expected), std::string::npos) << "bnlab " << args << "\n" << run.err;
  }
}

// CLI11 alone reads 010 as octal (8 epochs); bnlab reads decimal.
TEST(Cli, IntegersAreDecimal) {
  REQUIRE_DATA();
  const Finished run = run_bnlab("train --model mlp --epochs 010 --limit 64 --threads 1 --json");
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(nlohmann::json::parse(run.last_line())["epochs"].size(), 10u);
}

// README's and --help's example, shortened: AdamW, cosine after one warmup
// epoch, clipping, label smoothing; each epoch's lr in the JSON.
TEST(Cli, TrainWithAdamWCosineWarmupClippingAndSmoothing) {
  REQUIRE_DATA();
  const Finished run = run_bnlab(
      "train --model mlp-bn --epochs 3 --optimizer adamw --lr 0.002 --lr-schedule cosine "
      "--warmup-epochs 1 --clip-grad-norm 1 --label-smoothing 0.1 --limit 600 --threads 1 --json");
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json result = nlohmann::json::parse(run.last_line());
  EXPECT_EQ(result["optimizer"], "adamw");
  EXPECT_EQ(result["lr_schedule"], "cosine");
  EXPECT_EQ(result["warmup_epochs"], 1);
  ASSERT_EQ(result["epochs"].size(), 3u);
  EXPECT_DOUBLE_EQ(result["epochs"][0]["lr"].get<double>(), 0.002 * 0.01);  // warmup
  EXPECT_DOUBLE_EQ(result["epochs"][1]["lr"].get<double>(), 0.002);         // cosine starts
  EXPECT_NEAR(result["epochs"][2]["lr"].get<double>(), 0.001, 1e-15);       // half way
  EXPECT_FALSE(result["diverged"].get<bool>());
  EXPECT_LT(result["train_loss"].back().get<double>(), result["train_loss"][0].get<double>());
  EXPECT_NE(run.out.find("adamw lr 0.002 (cosine, warmup 1 epochs)"), std::string::npos) << run.out;
}

TEST(Cli, TrainHelpListsTheOptimizerOptions) {
  const Finished run = run_bnlab("train --help");
  ASSERT_EQ(run.status, 0);
  for (const char* option :
       {"--optimizer", "adamw", "--betas", "--eps", "--nesterov", "--dampening", "--clip-grad-norm",
        "--label-smoothing", "--lr-schedule", "--warmup-epochs", "--lr-schedule cosine"})
    EXPECT_NE(run.out.find(option), std::string::npos) << option;
}

// --precision bf16 trains (Linear's products in bf16 here) and says so in
// the JSON, or, on a CPU without bf16, refuses with exit 1 and the reason.
TEST(Cli, TrainInBf16ReportsItsPrecisionOrRefuses) {
  REQUIRE_DATA();
  const Finished run =
      run_bnlab("train --model mlp-bn --epochs 1 --limit 600 --threads 1 --precision bf16 --json");
  if (run.status == 1) {
    EXPECT_NE(run.err.find("AVX512-BF16"), std::string::npos) << run.err;
    return;
  }
  ASSERT_EQ(run.status, 0) << run.err;
  const nlohmann::json trained = nlohmann::json::parse(run.last_line());
  EXPECT_EQ(trained["precision"], "bf16");
  EXPECT_GT(trained["test_accuracy"].get<double>(), 0.3);  // it learns: chance is 0.1
  EXPECT_EQ(run_bnlab("train --model mlp --precision fp16").status, 2);
}

// benefits takes --precision as train and demo do (issue 16, section 3).
TEST(Cli, BenefitsTakesThePrecision) {
  const Finished help = run_bnlab("benefits --help");
  ASSERT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("--precision"), std::string::npos);
  EXPECT_EQ(run_bnlab("benefits --precision fp16").status, 2);
}

// A CPU without bf16, as oneDNN sees one when capped at AVX-512 core: exit 1
// with the reason, before any data is read.
TEST(Cli, TrainInBf16RefusesOnACpuWithoutBf16) {
  const Finished capped = []() {
    ::setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE", 1);
    Finished r = run_bnlab("train --model mlp --precision bf16 --data /nonexistent");
    ::unsetenv("DNNL_MAX_CPU_ISA");
    return r;
  }();
  EXPECT_EQ(capped.status, 1);
  EXPECT_NE(capped.err.find("needs a CPU with AVX512-BF16 or AMX-BF16"), std::string::npos)
      << capped.err;
}

}  // namespace
