// Verdict rules of experiment 4 of issue 15, batch size and the statistics
// (Wu & Johnson 2021; Wu & He 2018): pure functions of the numbers, each
// reason naming the deciding figures and the rule.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bnlab/lab/report.hpp"

namespace bnlab::lab {

/* (a) Train-test inconsistency: at each normalization batch (ascending), the
   held-out error with population statistics minus the held-out error with
   batch statistics. d = inconsistency at the smallest batch - at the largest.
     supported      d >= 0.01 (small normalization batches make population
                    statistics cost more)
     not supported  d <= 0
     mixed          in between */
VerdictResult inconsistency_verdict(const std::vector<int64_t>& batches,
                                    const std::vector<double>& inconsistency);

// (b) One setting's accuracy with the moving averages and with precise BN.
struct StatisticsComparison {
  std::string label;     // "lr 0.1"
  double ema = 0.0;      // mean eval accuracy with the moving averages
  double precise = 0.0;  // the same evaluations with recalibrated statistics
};

/* (b) Precise BN against the moving average, gain = precise - ema per setting:
     supported      gain >= margin in at least one setting and <= -margin in none
     not supported  gain >= margin in none
     mixed          anything else */
VerdictResult precise_bn_verdict(const std::vector<StatisticsComparison>& settings, double margin);

/* (c) Small batches: drop = accuracy at the largest per-batch size minus at
   the smallest, for BN and for GroupNorm (which does not depend on the
   batch); a NaN (diverged) accuracy counts as `chance`. e = drop_BN - drop_GN.
     supported      drop_BN >= 0.02 and e >= 0.02 (BN loses at small batches,
                    and more than GroupNorm)
     not supported  drop_BN <= 0 or e <= 0
     mixed          in between */
VerdictResult small_batch_verdict(int64_t small, int64_t large, double bn_small, double bn_large,
                                  double gn_small, double gn_large, double chance);

}  // namespace bnlab::lab
