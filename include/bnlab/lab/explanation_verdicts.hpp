// The verdict rules of the lab's second part (issue 15): does the seed's
// explanation, that BN works by reducing internal covariate shift, hold?
// Pure functions of the numbers, tested on their own; every rule is printed
// in the report beside its verdict.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "bnlab/lab/benefits.hpp"
#include "bnlab/lab/report.hpp"

namespace bnlab::lab {

// Santurkar et al. (2018)'s noisy-BN test: drift and final test accuracy of
// the network without BN, with BN, and with BN followed by moving noise
// (accuracy NaN: the run diverged, which counts as worse than any accuracy).
struct NoisyBnFigures {
  double drift_without, drift_with, drift_noisy;
  double accuracy_without, accuracy_with, accuracy_noisy;
};

/* The claim tested: BN helps because it reduces internal covariate shift,
   so shift put back after BN should take BN's advantage away.
     not supported  the noisy network drifts at least as much as the one
                    without BN and trains about as well as BN (accuracy >=
                    BN's - margin): shift came back, the benefit stayed
     supported      the noisy network drifts more than BN's and trains worse
                    than BN by >= margin
     mixed          anything else (e.g. the noise added less shift than the
                    plain network has, and accuracy held) */
VerdictResult noisy_bn_verdict(const NoisyBnFigures& figures, double margin);

/* A grid of settings (learning rate x depth), final test accuracy per cell
   without and with BN (NaN: diverged). A cell trains when its accuracy is
   >= threshold.
     supported      BN trains in more cells, and in every cell where the
                    network without BN trains
     not supported  BN trains in no more cells than without
     mixed          BN trains in more cells but fails in one where the plain
                    network trains */
VerdictResult grid_verdict(const std::vector<Comparison>& cells, double threshold);

// The verdicts of the three experiments that test the explanation; nullopt
// when the experiment was not run.
struct ExplanationEvidence {
  std::optional<Verdict> noisy_bn;        // shift put back after BN: benefit lost?
  std::optional<Verdict> gradient_shift;  // BN reduces shift as Definition 2.1 measures it?
  std::optional<Verdict> landscape;       // BN smooths the loss landscape? (the alternative)
};

/* The covariate-shift explanation of BN's benefits:
     supported      noisy_bn and gradient_shift both supported
     not supported  noisy_bn and gradient_shift both not supported, or
                    noisy_bn not supported and landscape supported (the
                    benefit survives the shift and an alternative is seen)
     mixed          anything else, including either of the first two not run */
VerdictResult explanation_verdict(const ExplanationEvidence& evidence);

}  // namespace bnlab::lab
