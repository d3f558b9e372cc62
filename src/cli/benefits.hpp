// bnlab benefits: the lab of issue 5 as a subcommand (a thin shell over
// bnlab::lab::run_benefits).
#pragma once

#include <CLI/CLI.hpp>

namespace bnlab::cli {
void add_benefits_command(CLI::App& app);
}
