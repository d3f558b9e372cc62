// Verdicts computed from numbers with explicit thresholds (see
// include/bnlab/lab/benefits.hpp): the report never prints a fixed sentence.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "bnlab/lab/benefits.hpp"

namespace bnlab::lab {
namespace {

std::string fixed3(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

// BN minus plain, with a failed run as -infinity (it loses against any number).
double difference(const Comparison& c) {
  bool fail_without = std::isnan(c.without_bn), fail_with = std::isnan(c.with_bn);
  if (fail_without && fail_with) return 0.0;
  if (fail_without) return INFINITY;
  if (fail_with) return -INFINITY;
  return c.with_bn - c.without_bn;
}

}  // namespace

PairTally tally(const std::vector<Comparison>& comparisons, double margin) {
  PairTally t;
  for (const auto& c : comparisons) {
    double d = difference(c);
    if (d >= margin)
      ++t.wins;
    else if (d <= -margin)
      ++t.losses;
    else
      ++t.ties;
  }
  return t;
}

VerdictResult paired_verdict(const std::vector<Comparison>& comparisons, double margin,
                             const std::string& measure, const std::string& failed_name,
                             const std::function<std::string(double)>& format) {
  auto show = [&](double v) {
    if (std::isnan(v)) return failed_name;
    return format ? format(v) : fixed3(v);
  };
  PairTally t = tally(comparisons, margin);
  int n = static_cast<int>(comparisons.size());
  VerdictResult result;
  if (n > 0 && t.wins * 2 >= n && t.losses == 0)
    result.verdict = Verdict::supported;
  else if (t.wins == 0 || t.losses > t.wins)
    result.verdict = Verdict::not_supported;
  else
    result.verdict = Verdict::mixed;

  // The deciding figures: the largest gain when supported, the largest loss
  // when not, both when mixed.
  const Comparison *largest_gain = nullptr, *largest_loss = nullptr;
  for (const auto& c : comparisons) {
    double d = difference(c);
    if (largest_gain == nullptr || d > difference(*largest_gain)) largest_gain = &c;
    if (largest_loss == nullptr || d < difference(*largest_loss)) largest_loss = &c;
  }
  auto figure = [&](const Comparison& c) {
    return c.label + ": " + show(c.with_bn) + " with BN vs " + show(c.without_bn) + " without";
  };
  char margin_text[32];
  std::snprintf(margin_text, sizeof margin_text, "%g", margin);
  result.reason = "with BN " + measure + " better by >= " + margin_text + " in " +
                  std::to_string(t.wins) + " of " + std::to_string(n) + ", worse in " +
                  std::to_string(t.losses);
  if (result.verdict == Verdict::supported && largest_gain)
    result.reason += "; e.g. " + figure(*largest_gain);
  else if (result.verdict == Verdict::not_supported && largest_loss)
    result.reason += "; e.g. " + figure(*largest_loss);
  else if (largest_gain && largest_loss)
    result.reason += "; e.g. " + figure(*largest_gain) + "; but " + figure(*largest_loss);
  result.reason += " (rule: supported when better in at least half and worse in none)";
  return result;
}

VerdictResult convergence_verdict(int64_t steps_without, int64_t steps_with, int64_t steps_run,
                                  double target) {
  char target_text[32];
  std::snprintf(target_text, sizeof target_text, "%.0f%%", target * 100);
  std::string goal = std::string("test accuracy ") + target_text;
  VerdictResult r;
  bool reached_without = steps_without >= 0, reached_with = steps_with >= 0;
  if (reached_with && reached_without) {
    double ratio = static_cast<double>(steps_with) / static_cast<double>(std::max<int64_t>(steps_without, 1));
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "%s reached after %lld steps with BN and %lld without: %.2fx the steps "
                  "(rule: supported when <= 0.8x, not supported when >= 1.25x)",
                  goal.c_str(), static_cast<long long>(steps_with),
                  static_cast<long long>(steps_without), ratio);
    r.reason = buf;
    r.verdict = ratio <= 0.8 ? Verdict::supported : ratio >= 1.25 ? Verdict::not_supported
                                                                  : Verdict::mixed;
  } else if (reached_with) {
    r.verdict = Verdict::supported;
    r.reason = goal + " reached after " + std::to_string(steps_with) +
               " steps with BN; never within " + std::to_string(steps_run) + " steps without";
  } else if (reached_without) {
    r.verdict = Verdict::not_supported;
    r.reason = goal + " reached after " + std::to_string(steps_without) +
               " steps without BN; never within " + std::to_string(steps_run) + " steps with BN";
  } else {
    r.verdict = Verdict::mixed;
    r.reason = "neither network reached " + goal + " within " + std::to_string(steps_run) +
               " steps: inconclusive";
  }
  return r;
}

VerdictResult about_as_well_verdict(const std::vector<Comparison>& shortfalls, double tolerance,
                                    const std::string& reference) {
  auto within = [tolerance](double shortfall) { return shortfall <= tolerance; };  // NaN: no
  auto show = [](double v) { return std::isnan(v) ? std::string("diverged") : fixed3(v); };
  int wins = 0, partials = 0, losses = 0;
  std::string figures;
  for (const Comparison& c : shortfalls) {
    const bool viable_with = within(c.with_bn), viable_without = within(c.without_bn);
    // NaN without BN (diverged) counts as the largest shortfall.
    const bool narrowed =
        std::isnan(c.without_bn) ? !std::isnan(c.with_bn) : c.with_bn <= c.without_bn - tolerance;
    if (viable_with && !viable_without) ++wins;
    if (!viable_with) ++(narrowed ? partials : losses);
    figures += (figures.empty() ? "" : "; ") + c.label + " " + show(c.with_bn) + " with BN, " +
               show(c.without_bn) + " without";
  }
  const int n = static_cast<int>(shortfalls.size());
  VerdictResult r;
  r.verdict = n > 0 && wins * 2 >= n && partials + losses == 0 ? Verdict::supported
              : wins + partials == 0                           ? Verdict::not_supported
                                                               : Verdict::mixed;
  char rule[260];
  std::snprintf(rule, sizeof rule,
                " (shortfall against %s; rule: BN makes an activation viable when with BN it is "
                "within %g of %s and without BN it is not; supported when that holds for at "
                "least half and none falls short with BN; mixed when BN only narrows a gap)",
                reference.c_str(), tolerance, reference.c_str());
  r.reason = "BN made " + std::to_string(wins) + " of " + std::to_string(n) +
             " viable; short with BN in " + std::to_string(partials + losses) +
             " (gap narrowed in " + std::to_string(partials) + "): " + figures + rule;
  return r;
}

VerdictResult inference_verdict(double eval_accuracy, double train_mode_64_accuracy,
                                double single_example_accuracy, int num_classes) {
  double chance_bound = 2.0 / num_classes;
  bool eval_holds = eval_accuracy >= train_mode_64_accuracy - 0.01;
  bool mistake_fails = single_example_accuracy <= chance_bound;
  VerdictResult r;
  r.verdict = eval_holds && mistake_fails   ? Verdict::supported
              : !eval_holds && !mistake_fails ? Verdict::not_supported
                                              : Verdict::mixed;
  char buf[300];
  std::snprintf(buf, sizeof buf,
                "eval mode %.3f vs batch statistics at batch 64 %.3f; single-example batch "
                "statistics %.3f (rule: supported when eval >= batch-64 - 0.01 and single-example "
                "<= %.2f)",
                eval_accuracy, train_mode_64_accuracy, single_example_accuracy, chance_bound);
  r.reason = buf;
  return r;
}

/* percentile: sort, position p = q/100 * (n - 1), value = v[floor p] +
   (p - floor p) * (v[floor p + 1] - v[floor p]). */
double percentile(std::vector<double>& values, double q) {
  if (values.empty()) return NAN;
  std::sort(values.begin(), values.end());
  double position = std::clamp(q, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
  size_t below = static_cast<size_t>(std::floor(position));
  size_t above = std::min(below + 1, values.size() - 1);
  double fraction = position - static_cast<double>(below);
  return values[below] + fraction * (values[above] - values[below]);
}

int64_t first_step_reaching(const std::vector<int64_t>& steps, const std::vector<double>& accuracy,
                            double target) {
  for (size_t i = 0; i < std::min(steps.size(), accuracy.size()); ++i)
    if (accuracy[i] >= target) return steps[i];
  return -1;
}

}  // namespace bnlab::lab
