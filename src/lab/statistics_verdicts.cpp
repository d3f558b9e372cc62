// The verdict rules of experiment 4 (see bnlab/lab/statistics_verdicts.hpp).
#include "bnlab/lab/statistics_verdicts.hpp"

#include <cmath>
#include <cstdio>

#include "bnlab/error.hpp"

namespace bnlab::lab {

VerdictResult inconsistency_verdict(const std::vector<int64_t>& batches,
                                    const std::vector<double>& inconsistency) {
  if (batches.size() < 2 || batches.size() != inconsistency.size())
    throw Error("inconsistency_verdict: needs one inconsistency per batch, at least two batches");
  const double small = inconsistency.front(), large = inconsistency.back();
  const double d = small - large;
  VerdictResult r;
  r.verdict = d >= 0.01 ? Verdict::supported : d <= 0 ? Verdict::not_supported : Verdict::mixed;
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "held-out error with population minus with batch statistics: %+.3f at "
                "normalization batch %lld, %+.3f at %lld, difference %+.3f (rule: supported when "
                ">= 0.01, not supported when <= 0)",
                small, static_cast<long long>(batches.front()), large,
                static_cast<long long>(batches.back()), d);
  r.reason = buf;
  if (std::isnan(d)) {
    r.verdict = Verdict::mixed;
    r.reason += "; a run diverged: inconclusive";
  }
  return r;
}

VerdictResult precise_bn_verdict(const std::vector<StatisticsComparison>& settings, double margin) {
  int gains = 0, losses = 0;
  const StatisticsComparison* best = nullptr;
  std::string figures;
  for (const auto& s : settings) {
    const double gain = s.precise - s.ema;
    if (gain >= margin) ++gains;
    if (gain <= -margin) ++losses;
    if (best == nullptr || gain > best->precise - best->ema) best = &s;
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s%s: %.3f precise vs %.3f EMA (%+.3f)",
                  figures.empty() ? "" : "; ", s.label.c_str(), s.precise, s.ema, gain);
    figures += buf;
  }
  VerdictResult r;
  r.verdict = gains > 0 && losses == 0 ? Verdict::supported
              : gains == 0             ? Verdict::not_supported
                                       : Verdict::mixed;
  char rule[200];
  std::snprintf(rule, sizeof rule,
                " (rule: supported when precise BN is better by >= %g in at least one setting "
                "and worse by >= %g in none)",
                margin, margin);
  r.reason = figures + rule;
  return r;
}

VerdictResult small_batch_verdict(int64_t small, int64_t large, double bn_small, double bn_large,
                                  double gn_small, double gn_large, double chance) {
  auto acc = [chance](double a) { return std::isnan(a) ? chance : a; };
  const double bn_drop = acc(bn_large) - acc(bn_small), gn_drop = acc(gn_large) - acc(gn_small);
  const double e = bn_drop - gn_drop;
  VerdictResult r;
  r.verdict = bn_drop >= 0.02 && e >= 0.02 ? Verdict::supported
              : bn_drop <= 0 || e <= 0     ? Verdict::not_supported
                                           : Verdict::mixed;
  char buf[400];
  std::snprintf(buf, sizeof buf,
                "from per-batch size %lld to %lld BN's test accuracy drops by %.3f (%.3f to "
                "%.3f), GroupNorm's by %.3f (%.3f to %.3f) (rule: supported when BN drops by >= "
                "0.02 and by >= 0.02 more than GroupNorm; not supported when BN does not drop "
                "or drops no more than GroupNorm)",
                static_cast<long long>(large), static_cast<long long>(small), bn_drop,
                acc(bn_large), acc(bn_small), gn_drop, acc(gn_large), acc(gn_small));
  r.reason = buf;
  return r;
}

}  // namespace bnlab::lab
