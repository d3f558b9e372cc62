// Precise BN: the running statistics become the mean and unbiased variance of
// every value each BN's input held over all the batches, computed here in
// float64 from the same inputs (earlier BNs normalizing with batch statistics,
// as in training), and by PyTorch from train-mode hooks
// (tests/golden/make_precise_bn_goldens.py); state that a training forward
// moves is put back.
#include "bnlab/nn/precise_bn.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "bnlab/error.hpp"
#include "bnlab/io/safetensors.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/nn/norm_layers.hpp"
#include "bnlab/nn/state_dict.hpp"

namespace bnlab::nn {
namespace {

using Matrix = std::vector<std::vector<double>>;  // [row][column]

// Per column: {mean, unbiased variance}, two passes in double.
std::vector<std::pair<double, double>> population(const Matrix& rows) {
  const size_t c = rows[0].size();
  std::vector<std::pair<double, double>> out(c);
  for (size_t j = 0; j < c; ++j) {
    double sum = 0, m2 = 0;
    for (const auto& r : rows) sum += r[j];
    const double mean = sum / double(rows.size());
    for (const auto& r : rows) m2 += (r[j] - mean) * (r[j] - mean);
    out[j] = {mean, m2 / double(rows.size() - 1)};
  }
  return out;
}

// Training-mode BN of a group of rows with the group's own (biased) statistics.
void normalize_rows(Matrix& rows, size_t begin, size_t end, const Tensor& gamma, const Tensor& beta,
                    double eps) {
  for (size_t j = 0; j < rows[0].size(); ++j) {
    double sum = 0, sq = 0;
    for (size_t i = begin; i < end; ++i) sum += rows[i][j];
    const double mean = sum / double(end - begin);
    for (size_t i = begin; i < end; ++i) sq += (rows[i][j] - mean) * (rows[i][j] - mean);
    const double invstd = 1.0 / std::sqrt(sq / double(end - begin) + eps);
    for (size_t i = begin; i < end; ++i)
      rows[i][j] = (rows[i][j] - mean) * invstd * gamma[int64_t(j)] + beta[int64_t(j)];
  }
}

void randomize_affine(Tensor& w, Tensor& b, Generator& gen) {
  for (int64_t j = 0; j < w.numel(); ++j) {
    w[j] = gen.uniform(0.5f, 1.5f);
    b[j] = gen.normal(0.0f, 0.5f);
  }
}

void expect_statistics(const Tensor& mean, const Tensor& var,
                       const std::vector<std::pair<double, double>>& want) {
  for (size_t j = 0; j < want.size(); ++j) {
    EXPECT_NEAR(mean[int64_t(j)], want[j].first, 2e-5 * (1 + std::fabs(want[j].first))) << j;
    EXPECT_NEAR(var[int64_t(j)], want[j].second, 2e-5 * want[j].second) << j;
  }
}

// A source handing out the given batches in turn.
BatchSource batches_of(const std::vector<Tensor>& batches) {
  auto next = std::make_shared<size_t>(0);
  return [&batches, next](Tensor& x) {
    if (*next == batches.size()) return false;
    x = batches[(*next)++];
    return true;
  };
}

TEST(PreciseBn, MlpStatisticsArePopulationStatisticsWeightedByBatchSize) {
  Generator gen(3);
  auto net = parse_arch(
      "Linear(6, 5, bias=False), BatchNorm1d(5), ReLU(), Linear(5, 4), BatchNorm1d(4)", gen);
  net->fuse_batch_norm_relu(true);  // as the CLI runs it
  auto& bn1 = dynamic_cast<BatchNorm&>((*net)[1]);
  auto& bn2 = dynamic_cast<BatchNorm&>((*net)[4]);
  randomize_affine(bn1.weight.value, bn1.bias.value, gen);
  bn1.num_batches_tracked = 17;
  auto& lin1 = dynamic_cast<Linear&>((*net)[0]);
  auto& lin2 = dynamic_cast<Linear&>((*net)[3]);
  // Batches of different sizes: a size-weighted population differs from a mean of batch means.
  std::vector<Tensor> batches;
  for (int64_t n : {4, 9, 3}) {
    Tensor x({n, 6});
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = gen.normal(float(n) * 0.3f, 1.0f + float(n) / 4);
    batches.push_back(x);
  }
  net->eval();
  const RecalibrationResult result = recalibrate_batch_norm(*net, batches_of(batches));
  EXPECT_EQ(result.batches, 3);
  EXPECT_EQ(result.examples, 16);
  EXPECT_EQ(result.layers, 2);
  EXPECT_FALSE(net->is_training());
  EXPECT_EQ(bn1.num_batches_tracked, 17);

  Matrix h1_all, h2_all;
  for (const Tensor& x : batches) {
    const int64_t n = x.size(0);
    Matrix h1(size_t(n), std::vector<double>(5)), h2(size_t(n), std::vector<double>(4));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < 5; ++o) {
        double s = 0;
        for (int64_t k = 0; k < 6; ++k) s += double(lin1.weight.value[o * 6 + k]) * x[i * 6 + k];
        h1[size_t(i)][size_t(o)] = s;
      }
    h1_all.insert(h1_all.end(), h1.begin(), h1.end());
    normalize_rows(h1, 0, size_t(n), bn1.weight.value, bn1.bias.value, bn1.eps);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < 4; ++o) {
        double s = lin2.bias->value[o];
        for (int64_t k = 0; k < 5; ++k)
          s += double(lin2.weight.value[o * 5 + k]) * std::max(0.0, h1[size_t(i)][size_t(k)]);
        h2[size_t(i)][size_t(o)] = s;
      }
    h2_all.insert(h2_all.end(), h2.begin(), h2.end());
  }
  const auto want1 = population(h1_all), want2 = population(h2_all);
  expect_statistics(bn1.running_mean, bn1.running_var, want1);
  expect_statistics(bn2.running_mean, bn2.running_var, want2);

  // The test tells the two semantics apart: the equal-weight mean of the batch
  // variances (torch.optim.swa_utils.update_bn) is far from the population's.
  double mean_of_batch_vars = 0;
  size_t at = 0;
  for (const Tensor& x : batches) {
    const size_t n = size_t(x.size(0));
    Matrix part(h1_all.begin() + long(at), h1_all.begin() + long(at + n));
    mean_of_batch_vars += population(part)[0].second / 3.0;
    at += n;
  }
  EXPECT_GT(std::fabs(mean_of_batch_vars - want1[0].second), 1e-3 * want1[0].second);
}

TEST(PreciseBn, GhostSlicesFeedTheNextLayerAndItsOwnStatisticsAreTheWholeBatchs) {
  Generator gen(5);
  auto net = parse_arch("GhostBatchNorm2d(3, virtual_batch_size=2), BatchNorm2d(3)", gen);
  auto& ghost = dynamic_cast<GhostBatchNorm&>((*net)[0]);
  auto& bn = dynamic_cast<BatchNorm&>((*net)[1]);
  randomize_affine(ghost.weight.value, ghost.bias.value, gen);
  std::vector<Tensor> batches;
  for (int k = 0; k < 2; ++k) {
    Tensor x({4, 3, 2, 2});
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = gen.normal(float(i % 3), 2.0f);
    batches.push_back(x);
  }
  EXPECT_EQ(recalibrate_batch_norm(*net, batches_of(batches)).layers, 2);
  EXPECT_TRUE(net->is_training());

  // Rows are (example, position) pairs; a ghost slice of 2 examples is 8 rows.
  Matrix in_all, out_all;
  for (const Tensor& x : batches) {
    Matrix rows;
    for (int64_t n = 0; n < 4; ++n)
      for (int64_t p = 0; p < 4; ++p) {
        std::vector<double> r(3);
        for (int64_t c = 0; c < 3; ++c) r[size_t(c)] = x[(n * 3 + c) * 4 + p];
        rows.push_back(r);
      }
    in_all.insert(in_all.end(), rows.begin(), rows.end());
    normalize_rows(rows, 0, 8, ghost.weight.value, ghost.bias.value, ghost.eps);
    normalize_rows(rows, 8, 16, ghost.weight.value, ghost.bias.value, ghost.eps);
    out_all.insert(out_all.end(), rows.begin(), rows.end());
  }
  expect_statistics(ghost.running_mean, ghost.running_var, population(in_all));
  expect_statistics(bn.running_mean, bn.running_var, population(out_all));
}

TEST(PreciseBn, BatchRenormGetsItsInputsStatisticsAndFrozenLayersAreSkipped) {
  Generator gen(9);
  auto net = parse_arch("BatchRenorm1d(2), BatchNorm1d(2)", gen);
  auto& renorm = dynamic_cast<BatchRenorm&>((*net)[0]);
  auto& bn = dynamic_cast<BatchNorm&>((*net)[1]);
  renorm.running_mean[0] = 3.0f;  // far from the data: r and d are clipped
  bn.freeze_batch_norm(false);
  std::vector<Tensor> batches;
  for (int k = 0; k < 3; ++k) {
    Tensor x({5, 2});
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = gen.normal(0.0f, 1.0f);
    batches.push_back(x);
  }
  const RecalibrationResult result = recalibrate_batch_norm(*net, batches_of(batches));
  EXPECT_EQ(result.layers, 1);
  EXPECT_EQ(bn.running_mean[0], 0.0f);  // frozen: untouched
  EXPECT_EQ(bn.running_var[0], 1.0f);
  Matrix rows;
  for (const Tensor& x : batches)
    for (int64_t i = 0; i < 5; ++i) rows.push_back({x[i * 2], x[i * 2 + 1]});
  expect_statistics(renorm.running_mean, renorm.running_var, population(rows));
  EXPECT_EQ(renorm.num_batches_tracked, 0);
}

TEST(PreciseBn, NoBatchIsAnErrorAndLeavesTheNetworkAsItWas) {
  Generator gen(1);
  auto net = parse_arch("BatchNorm1d(2)", gen);
  auto& bn = dynamic_cast<BatchNorm&>((*net)[0]);
  bn.running_mean[1] = 0.25f;
  net->eval();
  std::vector<Tensor> none;
  EXPECT_THROW(recalibrate_batch_norm(*net, batches_of(none)), Error);
  std::vector<Tensor> one_value = {Tensor({1, 2}, 1.0f)};
  EXPECT_THROW(recalibrate_batch_norm(*net, batches_of(one_value)), Error);
  EXPECT_EQ(bn.running_mean[1], 0.25f);
  EXPECT_EQ(bn.running_var[0], 1.0f);
  EXPECT_FALSE(net->is_training());
}

Tensor golden_tensor(const io::SafetensorsFile& file, const std::string& name) {
  const io::NamedTensor* found = file.find(name);
  if (found == nullptr) throw Error("precise_bn golden: no tensor " + name);
  Tensor t(found->shape);
  std::memcpy(t.data(), found->bytes.data(), found->bytes.size());
  return t;
}

TEST(PreciseBnGolden, MatchesPyTorchsStatisticsOfTheTrainModeInputs) {
  const std::string dir = std::string(BNLAB_GOLDEN_DIR) + "/precise_bn";
  const io::SafetensorsFile file = io::read_safetensors(dir + "/pytorch_precise_bn.safetensors");
  const io::SafetensorsFile io_file =
      io::read_safetensors(dir + "/pytorch_precise_bn_io.safetensors");
  Generator gen(0);
  auto net = parse_arch(checkpoint_arch(file), gen, {1, 2, 6, 6});
  load_state_dict(*net, file);
  net->fuse_batch_norm_relu(true);
  std::vector<Tensor> batches;
  for (const char* name : {"batch0", "batch1", "batch2"})
    batches.push_back(golden_tensor(io_file, name));
  EXPECT_EQ(recalibrate_batch_norm(*net, batches_of(batches)).layers, 3);
  for (int index : {1, 5, 8}) {
    const auto& bn = dynamic_cast<BatchNorm&>((*net)[size_t(index)]);
    const std::string prefix = "expected." + std::to_string(index) + ".";
    const Tensor mean = golden_tensor(io_file, prefix + "running_mean");
    const Tensor var = golden_tensor(io_file, prefix + "running_var");
    const Tensor averaged =
        golden_tensor(io_file, "update_bn." + std::to_string(index) + ".running_var");
    double apart = 0;
    for (int64_t j = 0; j < mean.numel(); ++j) {
      EXPECT_NEAR(bn.running_mean[j], mean[j], 1e-5 * (1 + std::fabs(mean[j])))
          << index << " " << j;
      EXPECT_NEAR(bn.running_var[j], var[j], 1e-5 * var[j]) << index << " " << j;
      apart = std::max(apart, double(std::fabs(averaged[j] - var[j]) / var[j]));
    }
    // update_bn's mean of batch variances is another estimate: the golden tells them apart.
    EXPECT_GT(apart, 1e-3) << "layer " << index;
  }
}

}  // namespace
}  // namespace bnlab::nn
