// The rules of include/bnlab/lab/explanation_verdicts.hpp.
#include "bnlab/lab/explanation_verdicts.hpp"

#include <cmath>
#include <cstdio>

namespace bnlab::lab {
namespace {

std::string fixed3(double v) {
  if (std::isnan(v)) return "diverged";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

// A diverged run's accuracy loses against any number.
double accuracy_or_worst(double a) { return std::isnan(a) ? -INFINITY : a; }

std::string evidence_text(const char* name, const std::optional<Verdict>& v) {
  return std::string(name) + " " + (v ? verdict_name(*v) : "not run");
}

}  // namespace

VerdictResult noisy_bn_verdict(const NoisyBnFigures& f, double margin) {
  const double with = accuracy_or_worst(f.accuracy_with), noisy = accuracy_or_worst(f.accuracy_noisy);
  const bool more_shift_than_plain = f.drift_noisy >= f.drift_without;
  const bool more_shift_than_bn = f.drift_noisy > f.drift_with;
  const bool as_good_as_bn = noisy >= with - margin;
  VerdictResult r;
  if (more_shift_than_plain && as_good_as_bn)
    r.verdict = Verdict::not_supported;
  else if (more_shift_than_bn && !as_good_as_bn)
    r.verdict = Verdict::supported;
  else
    r.verdict = Verdict::mixed;
  char buf[400];
  std::snprintf(buf, sizeof buf,
                "drift with noisy BN %.3f, without BN %.3f, with BN %.3f; test accuracy with noisy "
                "BN %s, with BN %s, without BN %s (rule: not supported when noisy BN drifts at "
                "least as much as without BN and its accuracy is within %g of BN's; supported "
                "when it drifts more than BN and trails BN by >= %g)",
                f.drift_noisy, f.drift_without, f.drift_with, fixed3(f.accuracy_noisy).c_str(),
                fixed3(f.accuracy_with).c_str(), fixed3(f.accuracy_without).c_str(), margin, margin);
  r.reason = buf;
  return r;
}

VerdictResult grid_verdict(const std::vector<Comparison>& cells, double threshold) {
  int trains_without = 0, trains_with = 0, lost = 0;
  std::string lost_example;
  for (const auto& c : cells) {
    bool without = !std::isnan(c.without_bn) && c.without_bn >= threshold;
    bool with = !std::isnan(c.with_bn) && c.with_bn >= threshold;
    trains_without += without;
    trains_with += with;
    if (without && !with) {
      ++lost;
      if (lost_example.empty())
        lost_example = c.label + ": " + fixed3(c.with_bn) + " with BN vs " + fixed3(c.without_bn) + " without";
    }
  }
  VerdictResult r;
  if (trains_with > trains_without && lost == 0)
    r.verdict = Verdict::supported;
  else if (trains_with <= trains_without)
    r.verdict = Verdict::not_supported;
  else
    r.verdict = Verdict::mixed;
  char buf[300];
  std::snprintf(buf, sizeof buf,
                "%d of %zu cells train with BN, %d without, %d train only without BN (a cell "
                "trains at test accuracy >= %g; rule: supported when BN trains in more cells and "
                "in every cell the plain network trains in, not supported when in no more)",
                trains_with, cells.size(), trains_without, lost, threshold);
  r.reason = buf;
  if (!lost_example.empty()) r.reason += "; e.g. " + lost_example;
  return r;
}

VerdictResult explanation_verdict(const ExplanationEvidence& e) {
  auto is = [](const std::optional<Verdict>& v, Verdict want) { return v && *v == want; };
  VerdictResult r;
  if (is(e.noisy_bn, Verdict::supported) && is(e.gradient_shift, Verdict::supported))
    r.verdict = Verdict::supported;
  else if ((is(e.noisy_bn, Verdict::not_supported) && is(e.gradient_shift, Verdict::not_supported)) ||
           (is(e.noisy_bn, Verdict::not_supported) && is(e.landscape, Verdict::supported)))
    r.verdict = Verdict::not_supported;
  else
    r.verdict = Verdict::mixed;
  r.reason = evidence_text("noisy BN:", e.noisy_bn) + "; " +
             evidence_text("shift by the gradient:", e.gradient_shift) + "; " +
             evidence_text("smoother landscape:", e.landscape) +
             " (rule: supported when the first two are supported; not supported when both are "
             "not, or when the first is not and the landscape is smoother with BN)";
  return r;
}

}  // namespace bnlab::lab
