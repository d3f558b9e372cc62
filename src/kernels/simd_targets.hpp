// The x86 targets a Highway kernel file was compiled for and this CPU runs,
// for the files that keep one table of functions per target (the batch-norm
// loops, the max-pool rows), so tests can run every variant.
#pragma once

#include <hwy/targets.h>

#include <cstdint>
#include <vector>

namespace bnlab::kernels {

// Calls fetch(name) once per target compiled in and supported here, best
// first, with Highway's dispatch narrowed to that target: HWY_DYNAMIC_DISPATCH
// inside fetch reaches that target's code. The scalar and emulated targets
// are skipped (each file's plain loops cover them). Dispatch is restored to
// the real CPU afterwards.
template <class Fetch>
void for_each_simd_target(Fetch&& fetch) {
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    if (target == HWY_SCALAR || target == HWY_EMU128) continue;
    hwy::SetSupportedTargetsForTest(target);
    fetch(hwy::TargetName(target));
  }
  hwy::SetSupportedTargetsForTest(0);
}

// What fetch() returns (a file's table of loops) for each of those targets, best first.
template <class Fetch>
auto simd_tables(Fetch&& fetch) {
  std::vector<decltype(fetch())> tables;
  for_each_simd_target([&](const char*) { tables.push_back(fetch()); });
  return tables;
}

}  // namespace bnlab::kernels
