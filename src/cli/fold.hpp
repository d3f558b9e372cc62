// bnlab fold: folds each eval-mode BatchNorm into the Linear or Conv2d before it.
#pragma once

#include <CLI/CLI.hpp>

namespace bnlab::cli {
void add_fold_command(CLI::App& app);
}
