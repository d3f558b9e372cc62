// The covariate-shift probe (see shift_probe.hpp).
#include "shift_probe.hpp"

#include <algorithm>
#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/lab/benefits.hpp"

namespace bnlab::lab {

SavedBatchNormState::SavedBatchNormState(nn::Sequential& net) {
  for (size_t i = 0; i < net.size(); ++i)
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(&net[i]))
      saved_.push_back({bn,
                        {bn->running_mean.data(), bn->running_mean.data() + bn->running_mean.numel()},
                        {bn->running_var.data(), bn->running_var.data() + bn->running_var.numel()},
                        bn->num_batches_tracked});
}

void SavedBatchNormState::restore() const {
  for (const Saved& s : saved_) {
    std::copy(s.mean.begin(), s.mean.end(), s.bn->running_mean.data());
    std::copy(s.var.begin(), s.var.end(), s.bn->running_var.data());
    s.bn->num_batches_tracked = s.tracked;
  }
}

void probe_shift(nn::Sequential& net, const Tensor& batch, ShiftRecord& record, int64_t step) {
  size_t last_sigmoid = 0;
  for (size_t i = 0; i < net.size(); ++i)
    if (dynamic_cast<nn::Sigmoid*>(&net[i])) last_sigmoid = i;
  if (last_sigmoid == 0) throw Error("covariate_shift: the network has no Sigmoid after a layer");
  SavedBatchNormState saved(net);
  const Tensor* x = &batch;
  for (size_t i = 0; i < last_sigmoid; ++i) x = &net[i].forward(*x);
  saved.restore();
  const int64_t rows = x->size(0), units = x->numel() / rows;
  std::vector<std::array<double, 3>> per_unit(static_cast<size_t>(units));
  std::vector<double> column(static_cast<size_t>(rows));
  for (int64_t u = 0; u < units; ++u) {
    for (int64_t m = 0; m < rows; ++m) column[size_t(m)] = (*x)[m * units + u];
    per_unit[size_t(u)] = {percentile(column, 15), percentile(column, 50), percentile(column, 85)};
  }
  record.steps.push_back(step);
  record.quantiles.push_back(std::move(per_unit));
}

double unit_drift(const ShiftRecord& record, size_t unit) {
  if (record.quantiles.size() < 2) return NAN;
  size_t last = record.quantiles.size() - 1;
  const auto& end = record.quantiles[last][unit];
  double sum = 0;
  for (size_t t = 0; t < last; ++t)
    for (int q = 0; q < 3; ++q) sum += std::abs(record.quantiles[t][unit][q] - end[q]);
  return sum / (3.0 * static_cast<double>(last));
}

double median_drift(const ShiftRecord& record) {
  std::vector<double> drifts;
  size_t units = record.quantiles.empty() ? 0 : record.quantiles[0].size();
  for (size_t u = 0; u < units; ++u) drifts.push_back(unit_drift(record, u));
  return percentile(drifts, 50);
}

}  // namespace bnlab::lab
