// bnlab recalibrate: precise BN on a checkpoint (issue 14).
#pragma once

#include <CLI/CLI.hpp>

namespace bnlab::cli {
void add_recalibrate_command(CLI::App& app);
}
