// Verdicts follow from the numbers by the stated rules; percentiles match
// numpy's linear interpolation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "bnlab/lab/benefits.hpp"

using namespace bnlab::lab;

TEST(PairedVerdict, BnBetterInAtLeastHalfAndWorseInNoneIsSupported) {
  std::vector<Comparison> c = {{"a", 0.80, 0.86}, {"b", 0.85, 0.855}};  // one win, one tie
  VerdictResult v = paired_verdict(c, 0.02, "accuracy");
  EXPECT_EQ(v.verdict, Verdict::supported);
  EXPECT_NE(v.reason.find("1 of 2"), std::string::npos) << v.reason;
  EXPECT_NE(v.reason.find("a: 0.860 with BN vs 0.800 without"), std::string::npos) << v.reason;
}

TEST(PairedVerdict, NoWinOrMoreLossesThanWinsIsNotSupported) {
  EXPECT_EQ(paired_verdict({{"a", 0.8, 0.81}, {"b", 0.8, 0.79}}, 0.02, "x").verdict,
            Verdict::not_supported);  // two ties
  EXPECT_EQ(paired_verdict({{"a", 0.8, 0.9}, {"b", 0.8, 0.7}, {"c", 0.8, 0.7}}, 0.02, "x").verdict,
            Verdict::not_supported);  // 1 win, 2 losses
  EXPECT_EQ(paired_verdict({}, 0.02, "x").verdict, Verdict::not_supported);
}

TEST(PairedVerdict, WinsWithALossIsMixed) {
  VerdictResult v = paired_verdict({{"a", 0.8, 0.9}, {"b", 0.8, 0.9}, {"c", 0.8, 0.7}}, 0.02, "x");
  EXPECT_EQ(v.verdict, Verdict::mixed);
  EXPECT_NE(v.reason.find("worse in 1"), std::string::npos);
  // Both sides are named: the largest gain and the largest loss.
  EXPECT_NE(v.reason.find("a: 0.900 with BN vs 0.800 without; but c: 0.700 with BN vs 0.800 without"),
            std::string::npos)
      << v.reason;
}

TEST(PairedVerdict, DivergedRunLosesToAnyNumberAndTwoDivergedTie) {
  PairTally t = tally({{"a", NAN, 0.1}, {"b", 0.5, NAN}, {"c", NAN, NAN}}, 0.02);
  EXPECT_EQ(t.wins, 1);
  EXPECT_EQ(t.losses, 1);
  EXPECT_EQ(t.ties, 1);
  VerdictResult v = paired_verdict({{"lr 2", NAN, 0.84}}, 0.02, "accuracy");
  EXPECT_EQ(v.verdict, Verdict::supported);
  EXPECT_NE(v.reason.find("0.840 with BN vs diverged without"), std::string::npos) << v.reason;
}

TEST(PairedVerdict, MarginDecidesTies) {
  EXPECT_EQ(tally({{"a", 0.80, 0.819}}, 0.02).ties, 1);
  EXPECT_EQ(tally({{"a", 0.80, 0.8201}}, 0.02).wins, 1);
  EXPECT_EQ(tally({{"a", 0.80, 0.7799}}, 0.02).losses, 1);
}

TEST(ConvergenceVerdict, RatioOfStepsDecides) {
  EXPECT_EQ(convergence_verdict(1000, 400, 5000, 0.8).verdict, Verdict::supported);   // 0.4x
  EXPECT_EQ(convergence_verdict(1000, 800, 5000, 0.8).verdict, Verdict::supported);   // 0.8x
  EXPECT_EQ(convergence_verdict(1000, 1000, 5000, 0.8).verdict, Verdict::mixed);      // 1x
  EXPECT_EQ(convergence_verdict(1000, 1250, 5000, 0.8).verdict, Verdict::not_supported);
  VerdictResult v = convergence_verdict(1000, 400, 5000, 0.8);
  EXPECT_NE(v.reason.find("0.40x"), std::string::npos) << v.reason;
  EXPECT_NE(v.reason.find("80%"), std::string::npos) << v.reason;
}

TEST(ConvergenceVerdict, OnlyOneReachingTheTargetDecidesForIt) {
  EXPECT_EQ(convergence_verdict(-1, 700, 5000, 0.8).verdict, Verdict::supported);
  EXPECT_EQ(convergence_verdict(700, -1, 5000, 0.8).verdict, Verdict::not_supported);
  VerdictResult v = convergence_verdict(-1, -1, 5000, 0.8);
  EXPECT_EQ(v.verdict, Verdict::mixed);
  EXPECT_NE(v.reason.find("inconclusive"), std::string::npos);
}

TEST(AboutAsWellVerdict, BnMustCloseTheGapToTheReferenceWhereItWasOpen) {
  // Comparisons hold the shortfall against ReLU, without and with BN.
  EXPECT_EQ(about_as_well_verdict({{"Sigmoid", 0.30, 0.01}, {"Tanh", -0.05, 0.0}}, 0.02, "ReLU")
                .verdict,
            Verdict::supported);  // Sigmoid made viable; Tanh viable either way
  const VerdictResult narrowed =
      about_as_well_verdict({{"Sigmoid", 0.30, 0.10}, {"Tanh", 0.05, 0.01}}, 0.02, "ReLU");
  EXPECT_EQ(narrowed.verdict, Verdict::mixed);  // Tanh made viable, Sigmoid still short
  // Only narrowed (Sigmoid), the other viable either way: mixed, not a refutation.
  EXPECT_EQ(about_as_well_verdict({{"Sigmoid", 0.30, 0.025}, {"Tanh", 0.0, 0.0}}, 0.02, "ReLU")
                .verdict,
            Verdict::mixed);
  // Short with BN and not narrowed: no help at all.
  EXPECT_EQ(about_as_well_verdict({{"Sigmoid", 0.05, 0.04}, {"Tanh", 0.0, 0.0}}, 0.02, "ReLU")
                .verdict,
            Verdict::not_supported);
  EXPECT_NE(narrowed.reason.find("Sigmoid 0.100 with BN, 0.300 without"), std::string::npos)
      << narrowed.reason;
  EXPECT_EQ(about_as_well_verdict({{"Sigmoid", 0.01, 0.0}}, 0.02, "ReLU").verdict,
            Verdict::not_supported);  // viable without BN: nothing for BN to do
  EXPECT_EQ(about_as_well_verdict({{"Sigmoid", 0.30, NAN}}, 0.02, "ReLU").verdict,
            Verdict::not_supported);
}

TEST(InferenceVerdict, EvalModeHoldsAndSingleExampleCollapses) {
  EXPECT_EQ(inference_verdict(0.87, 0.865, 0.10, 10).verdict, Verdict::supported);
  EXPECT_EQ(inference_verdict(0.80, 0.86, 0.10, 10).verdict, Verdict::mixed);
  EXPECT_EQ(inference_verdict(0.80, 0.86, 0.50, 10).verdict, Verdict::not_supported);
  EXPECT_NE(inference_verdict(0.87, 0.865, 0.10, 10).reason.find("0.100"), std::string::npos);
}

// numpy.percentile(v, q) with the default linear method, written out in double.
static double reference_percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  double pos = q / 100.0 * double(v.size() - 1);
  double lo = std::floor(pos), hi = std::ceil(pos);
  return v[size_t(lo)] + (pos - lo) * (v[size_t(hi)] - v[size_t(lo)]);
}

TEST(Percentile, MatchesLinearInterpolationBetweenOrderStatistics) {
  std::vector<double> values = {3.0, -1.0, 7.5, 2.0, 0.25, 9.0, 4.0};
  for (double q : {0.0, 15.0, 50.0, 85.0, 100.0}) {
    std::vector<double> copy = values;
    EXPECT_NEAR(percentile(copy, q), reference_percentile(values, q), 1e-12) << q;
  }
  std::vector<double> one = {5.0};
  EXPECT_EQ(percentile(one, 85), 5.0);
  std::vector<double> none;
  EXPECT_TRUE(std::isnan(percentile(none, 50)));
}

TEST(FirstStepReaching, FindsTheFirstEvaluationAtOrAboveTheTarget) {
  std::vector<int64_t> steps = {0, 100, 200, 300};
  std::vector<double> acc = {0.1, 0.79, 0.80, 0.85};
  EXPECT_EQ(first_step_reaching(steps, acc, 0.8), 200);
  EXPECT_EQ(first_step_reaching(steps, acc, 0.9), -1);
}
