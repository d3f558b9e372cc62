// Suggestions for a mistyped name: layer names and keywords in the
// architecture text, the tool's subcommands.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace bnlab {

// " (did you mean Linear?)" for a name close to one of the candidates
// (letters in any case, a few typed wrong, swapped, missing or extra), or "";
// each suggestion is written between `quote`s.
std::string did_you_mean(std::string_view name, const std::vector<std::string>& candidates,
                         const char* quote = "");

}  // namespace bnlab
