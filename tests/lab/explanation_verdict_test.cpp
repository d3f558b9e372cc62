// The rules that judge the seed's explanation (explanation_verdicts.hpp):
// each verdict from hand-made figures on either side of its thresholds.
#include <gtest/gtest.h>

#include <cmath>

#include "bnlab/lab/explanation_verdicts.hpp"

using namespace bnlab::lab;

TEST(NoisyBnVerdict, MoreShiftThanPlainAndAccuracyKeptIsNotSupported) {
  // The paper's finding: noisy BN drifts more than the plain net, trains as well as BN.
  VerdictResult v = noisy_bn_verdict({0.8, 0.2, 1.5, 0.78, 0.83, 0.82}, 0.02);
  EXPECT_EQ(v.verdict, Verdict::not_supported);
  EXPECT_NE(v.reason.find("1.500"), std::string::npos);
  EXPECT_NE(v.reason.find("rule"), std::string::npos);
}

TEST(NoisyBnVerdict, ShiftThatCostsAccuracyIsSupported) {
  EXPECT_EQ(noisy_bn_verdict({0.8, 0.2, 1.5, 0.78, 0.83, 0.70}, 0.02).verdict, Verdict::supported);
  // A diverged noisy run counts as worse than any accuracy.
  EXPECT_EQ(noisy_bn_verdict({0.8, 0.2, 0.5, 0.78, 0.83, NAN}, 0.02).verdict, Verdict::supported);
}

TEST(NoisyBnVerdict, NoiseThatAddsLessShiftThanPlainWithAccuracyKeptIsMixed) {
  EXPECT_EQ(noisy_bn_verdict({0.8, 0.2, 0.5, 0.78, 0.83, 0.825}, 0.02).verdict, Verdict::mixed);
  // Exactly at the margin counts as "about as well".
  EXPECT_EQ(noisy_bn_verdict({0.8, 0.2, 0.8, 0.78, 0.83, 0.81}, 0.02).verdict, Verdict::not_supported);
}

TEST(GridVerdict, MoreCellsTrainWithBnAndNoneLostIsSupported) {
  std::vector<Comparison> cells = {{"2, 0.1", 0.85, 0.86}, {"20, 0.1", 0.10, 0.84}, {"20, 2", NAN, 0.8}};
  VerdictResult v = grid_verdict(cells, 0.5);
  EXPECT_EQ(v.verdict, Verdict::supported);
  EXPECT_NE(v.reason.find("3 of 3 cells train with BN, 1 without"), std::string::npos);
}

TEST(GridVerdict, ACellLostWithBnMakesItMixedAndNoMoreCellsIsNotSupported) {
  EXPECT_EQ(grid_verdict({{"a", 0.85, 0.3}, {"b", 0.1, 0.8}, {"c", 0.1, 0.8}}, 0.5).verdict, Verdict::mixed);
  EXPECT_EQ(grid_verdict({{"a", 0.85, 0.3}, {"b", 0.1, 0.8}}, 0.5).verdict, Verdict::not_supported);
  EXPECT_EQ(grid_verdict({{"a", 0.85, 0.86}}, 0.5).verdict, Verdict::not_supported);
  EXPECT_EQ(grid_verdict({}, 0.5).verdict, Verdict::not_supported);
}

TEST(ExplanationVerdict, FollowsTheStatedRule) {
  const auto yes = Verdict::supported, no = Verdict::not_supported, mixed = Verdict::mixed;
  EXPECT_EQ(explanation_verdict({yes, yes, no}).verdict, yes);
  EXPECT_EQ(explanation_verdict({no, no, no}).verdict, no);
  EXPECT_EQ(explanation_verdict({no, mixed, yes}).verdict, no);
  EXPECT_EQ(explanation_verdict({no, yes, no}).verdict, mixed);
  EXPECT_EQ(explanation_verdict({yes, mixed, yes}).verdict, mixed);
  // Not run: never supported, never refuted by the missing piece.
  VerdictResult missing = explanation_verdict({yes, std::nullopt, std::nullopt});
  EXPECT_EQ(missing.verdict, mixed);
  EXPECT_NE(missing.reason.find("not run"), std::string::npos);
}
