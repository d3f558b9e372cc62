// bnlab benefits [--quick] [--out DIR] [--data DIR] [--seed N] [--only NAME,...]
// [--threads T] [--precision fp32|bf16]: parse, call bnlab::lab::run_benefits, print the report's path.
#include "benefits.hpp"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bnlab/data/idx.hpp"
#include "bnlab/io/atomic_file.hpp"
#include "bnlab/lab/benefits.hpp"
#include "common.hpp"

namespace bnlab::cli {

void add_benefits_command(CLI::App& app) {
  auto o = std::make_shared<bnlab::lab::BenefitsOptions>();
  o->data_dir = bnlab::data::default_data_dir();
  CLI::App* command = app.add_subcommand(
      "benefits",
      "Measure each claim about batch normalization, with and without BN, into an HTML report");
  command->add_flag("--quick", o->quick,
                    "A slice of the data and a few hundred steps per run (under 2 minutes; CI)");
  command->add_option("--out", o->out_dir, "Folder for report.html, results.json and the CSVs")
      ->capture_default_str();
  command->add_option("--data", o->data_dir, "Folder with the IDX files (MNIST or Fashion-MNIST)")
      ->capture_default_str();
  command->add_option("--seed", o->seed, "Seed for weights and shuffling")->capture_default_str();
  std::string names;
  for (const auto& n : bnlab::lab::experiment_names()) names += (names.empty() ? "" : ", ") + n;
  command->add_option("--only", o->only, "Run only these experiments: " + names)
      ->delimiter(',')
      ->check(CLI::IsMember(bnlab::lab::experiment_names()));
  add_threads_option(*command, o->threads);  // bounded as train's: more is a usage error
  auto precision = std::make_shared<std::string>("fp32");
  add_precision_option(*command, *precision);
  command->footer(
      "Examples:\n"
      "  bnlab benefits --quick --out /tmp/bn     the whole report in under 2 minutes\n"
      "  bnlab benefits                           the full report (under 30 minutes on 2 cores)\n"
      "  bnlab benefits --only learning_rate,depth --data /path/to/mnist");
  command->callback([o, precision] {
    apply_precision(*precision);  // refuses bf16 on a CPU without it
    // Before the runs: an --out that cannot be written would lose all of them.
    bnlab::io::check_writable_folder(o->out_dir, "--out");
    const std::string path = bnlab::lab::run_benefits(*o);
    std::printf("%s\n", path.c_str());
  });
}

}  // namespace bnlab::cli
