// The verdict rules of experiment 4 (batch size and the statistics): each
// boundary of each rule, and reasons that name the figures.
#include <gtest/gtest.h>

#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/lab/statistics_verdicts.hpp"

namespace bnlab::lab {
namespace {

TEST(InconsistencyVerdict, SupportedWhenSmallBatchesMakePopulationStatisticsCostMore) {
  EXPECT_EQ(inconsistency_verdict({2, 128}, {0.05, 0.01}).verdict, Verdict::supported);
  EXPECT_EQ(inconsistency_verdict({2, 128}, {0.015, 0.01}).verdict, Verdict::mixed);
  EXPECT_EQ(inconsistency_verdict({2, 128}, {0.01, 0.01}).verdict, Verdict::not_supported);
  EXPECT_EQ(inconsistency_verdict({2, 128}, {NAN, 0.01}).verdict, Verdict::mixed);
  const VerdictResult r = inconsistency_verdict({2, 8, 128}, {0.05, 0.2, 0.01});
  EXPECT_NE(r.reason.find("+0.050 at normalization batch 2"), std::string::npos) << r.reason;
  EXPECT_THROW(inconsistency_verdict({2}, {0.1}), Error);
}

TEST(PreciseBnVerdict, SupportedWhenBetterSomewhereAndWorseNowhere) {
  EXPECT_EQ(precise_bn_verdict({{"lr 0.1", 0.80, 0.80}, {"lr 1", 0.70, 0.75}}, 0.005).verdict,
            Verdict::supported);
  EXPECT_EQ(precise_bn_verdict({{"lr 0.1", 0.80, 0.802}, {"lr 1", 0.70, 0.703}}, 0.005).verdict,
            Verdict::not_supported);
  EXPECT_EQ(precise_bn_verdict({{"lr 0.1", 0.80, 0.70}, {"lr 1", 0.70, 0.75}}, 0.005).verdict,
            Verdict::mixed);
  const VerdictResult r = precise_bn_verdict({{"lr 1", 0.70, 0.75}}, 0.005);
  EXPECT_NE(r.reason.find("lr 1: 0.750 precise vs 0.700 EMA (+0.050)"), std::string::npos)
      << r.reason;
}

TEST(SmallBatchVerdict, ComparesBnsDropWithGroupNorms) {
  EXPECT_EQ(small_batch_verdict(2, 32, 0.70, 0.85, 0.84, 0.85, 0.1).verdict, Verdict::supported);
  EXPECT_EQ(small_batch_verdict(2, 32, 0.84, 0.85, 0.84, 0.85, 0.1).verdict,
            Verdict::not_supported);
  EXPECT_EQ(small_batch_verdict(2, 32, 0.83, 0.85, 0.84, 0.85, 0.1).verdict, Verdict::mixed);
  // BN does not drop at all: GroupNorm doing worse at small batches is no support.
  EXPECT_EQ(small_batch_verdict(2, 32, 0.86, 0.85, 0.70, 0.85, 0.1).verdict,
            Verdict::not_supported);
  // A diverged BN run at batch 2 counts as chance.
  const VerdictResult r = small_batch_verdict(2, 32, NAN, 0.85, 0.84, 0.85, 0.1);
  EXPECT_EQ(r.verdict, Verdict::supported);
  EXPECT_NE(r.reason.find("drops by 0.750"), std::string::npos) << r.reason;
}

}  // namespace
}  // namespace bnlab::lab
