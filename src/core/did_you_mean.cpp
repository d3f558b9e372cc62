// did_you_mean (did_you_mean.hpp): the closest names to a mistyped one.
#include "bnlab/did_you_mean.hpp"

#include <algorithm>
#include <cctype>
#include <vector>

namespace bnlab {

namespace {

// Optimal string alignment distance (Levenshtein with adjacent swaps), ignoring case.
size_t edit_distance(std::string_view a, std::string_view b) {
  auto lower = [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  };
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
          lower(a[i - 2]) == lower(b[j - 1]))
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

}  // namespace

std::string did_you_mean(std::string_view name, const std::vector<std::string>& candidates,
                         const char* quote) {
  // Up to a third of the letters may be wrong (at least one, at most three);
  // longer names are not compared (they are nobody's typo of a layer's name).
  constexpr size_t kLongest = 64;
  if (name.empty() || name.size() > kLongest) return "";
  const size_t allowed = std::clamp<size_t>(name.size() / 3, 1, 3);
  size_t best = allowed + 1;
  std::vector<std::string> closest;
  for (const std::string& candidate : candidates) {
    const size_t distance = edit_distance(name, candidate);
    if (distance < best) {
      best = distance;
      closest.clear();
    }
    if (distance == best) closest.push_back(candidate);
  }
  if (closest.empty()) return "";
  std::string names;
  for (size_t i = 0; i < closest.size(); ++i)
    names += (i == 0                    ? ""
              : i + 1 == closest.size() ? " or "
                                        : ", ") +
             std::string(quote) + closest[i] + quote;
  return " (did you mean " + names + "?)";
}

}  // namespace bnlab
