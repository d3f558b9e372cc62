// Internal to the lab: experiment 4 of issue 15, batch size and the
// statistics, as three sections (the --only names):
//   ghost_batch  (a) Ghost BN's normalization batch at a fixed global batch:
//                the train-test inconsistency (Wu & Johnson 2021)
//   precise_bn   (b) the moving averages against precise BN, every epoch
//   small_batch  (c) BN, BatchRenorm, GroupNorm, LayerNorm and BN over a larger
//                batch (SyncBN's equivalent) at per-batch sizes 2 to 32 (Wu & He 2018)
#pragma once

#include "runner.hpp"

namespace bnlab::lab {

Experiment ghost_batch_experiment(const LabContext& context);
Experiment precise_bn_experiment(const LabContext& context);
Experiment small_batch_experiment(const LabContext& context);

}  // namespace bnlab::lab
