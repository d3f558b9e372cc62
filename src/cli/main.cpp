// bnlab: the command-line tool. Each subcommand registers itself from its own
// file (add_<name>_command); this file only lists them and maps failures to
// exit statuses: 0 done, 1 an error (message on stderr), 2 a usage error.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "bnlab/dist/mpi_replicas.hpp"
#include "bnlab/did_you_mean.hpp"
#include "bnlab/error.hpp"
#include "benefits.hpp"
#include "common.hpp"
#include "fold.hpp"
#include "recalibrate.hpp"

namespace {
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
}  // namespace

int main(int argc, char** argv) {
  // MPI only under mpirun (data-parallel train and eval; docs/distributed.md).
  bnlab::dist::Launch launch(argc, argv);
  CLI::App app{"bnlab: batch normalization in C++, with a training toolkit and a lab", "bnlab"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "bnlab " BNLAB_VERSION);
  app.footer(
      "Examples:\n"
      "  bnlab demo                        the tutorial's MLP with and without BN\n"
      "  bnlab train --model mlp-bn --save mlp-bn.safetensors\n"
      "  bnlab eval --weights mlp-bn.safetensors\n"
      "Run `bnlab <command> --help` for each command's options.");
  using namespace bnlab::cli;
  add_demo_command(app);
  add_train_command(app);
  add_eval_command(app);
  add_benefits_command(app);
  add_fold_command(app);
  make_numbers_strict(app);
  add_recalibrate_command(app);
  // A first word that names no command gets the closest names (CLI11 would
  // only say that it was not expected).
  if (argc > 1 && argv[1][0] != '-') {
    std::vector<std::string> names;
    for (const CLI::App* command : app.get_subcommands({})) names.push_back(command->get_name());
    if (std::find(names.begin(), names.end(), argv[1]) == names.end()) {
      std::string list;
      for (const std::string& name : names) list += (list.empty() ? "" : ", ") + name;
      std::fprintf(stderr, "bnlab: error: unknown command '%s'%s; the commands are %s\n",
                   bnlab::excerpt(argv[1]).c_str(), bnlab::did_you_mean(argv[1], names).c_str(),
                   list.c_str());
      return kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);  // runs the chosen subcommand's callback
  } catch (const CLI::ParseError& e) {
    // --help and --version come here too, as successes (status 0).
    const int status = app.exit(e);
    return status == 0 ? 0 : kExitUsage;
  } catch (const bnlab::cli::ExitStatus& e) {
    std::fflush(stdout);
    return e.status;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    if (launch.active()) {
      // Named, then every rank ended: the others may be waiting in a collective.
      std::fprintf(stderr, "bnlab: error: rank %d of %d: %s\n", launch.replicas()->rank(),
                   launch.replicas()->size(), e.what());
      launch.abort(kExitError);
    }
    std::fprintf(stderr, "bnlab: error: %s\n", e.what());
    return kExitError;
  }
  return 0;
}
