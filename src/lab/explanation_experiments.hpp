// Internal to the lab: the experiments of issue 15, which test the seed's
// explanation of BN (internal covariate shift) and map learning rate against
// depth, and the closing section that sets the verdicts side by side.
#pragma once

#include <string>
#include <vector>

#include "runner.hpp"

namespace bnlab::lab {

// noisy_bn, gradient_shift, landscape, lr_depth, explanation (the closing section).
std::vector<std::string> explanation_experiment_names();
bool is_explanation_experiment(const std::string& name);
Experiment plan_explanation_experiment(const std::string& name, const LabContext& context);

}  // namespace bnlab::lab
