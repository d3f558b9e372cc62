// Cross-entropy over logits, PyTorch's nn.CrossEntropyLoss(label_smoothing=eps)
// (mean reduction, no class weights).
#include "bnlab/nn/loss.hpp"

#include <cmath>
#include <string>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "core/parallel.hpp"

namespace bnlab::nn {

CrossEntropyLoss::CrossEntropyLoss(double label_smoothing) : label_smoothing_(label_smoothing) {
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
    throw Error("CrossEntropyLoss: label_smoothing must be in [0, 1], got " +
                std::to_string(label_smoothing));
}

/* Forward. z (N, K) logits, y (N) labels in [0, K), eps = label_smoothing,
 * lse_i = log(sum_k exp(z[i,k] - max_i)) + max_i:
 *   p[i, :] = softmax(z[i, :]) = exp(z - max) / sum(exp(z - max))   (kept for backward)
 *   loss = mean_i ((1 - eps) (lse_i - z[i, y_i]) + eps/K sum_k (lse_i - z[i,k]))
 * Per-row sums in double; one pass to find max, one to exponentiate, one to scale. */
double CrossEntropyLoss::forward(const Tensor& logits, const int32_t* labels) {
  if (logits.dim() != 2)
    throw Error("CrossEntropyLoss: expected logits (N, K), got " + shape_string(logits.shape()));
  if (labels == nullptr && logits.size(0) > 0) throw Error("CrossEntropyLoss: labels is null");
  const int64_t n = logits.size(0), k = logits.size(1);
  for (int64_t i = 0; i < n; ++i)
    if (labels[i] < 0 || labels[i] >= k)
      throw Error("CrossEntropyLoss: label " + std::to_string(labels[i]) + " at row " +
                  std::to_string(i) + " is outside [0, " + std::to_string(k) + ")");
  probs_.resize(logits.shape());
  labels_ = labels;
  const float* z = logits.data();
  float* p = probs_.data();
  const double eps = label_smoothing_;
  double total = 0.0;
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = z + i * k;
    float* prow = p + i * k;
    float max_value = row[0];
    int64_t argmax = 0;
    for (int64_t j = 1; j < k; ++j)
      if (row[j] > max_value) {
        max_value = row[j];
        argmax = j;
      }
    double sum = 0.0, row_sum = 0.0;
    for (int64_t j = 0; j < k; ++j) {
      const double e = std::exp(static_cast<double>(row[j]) - max_value);
      prow[j] = static_cast<float>(e);
      sum += e;
      row_sum += row[j];
    }
    const double inv_sum = 1.0 / sum;
    for (int64_t j = 0; j < k; ++j) prow[j] = static_cast<float>(prow[j] * inv_sum);
    const double lse = std::log(sum) + max_value;
    const double nll = lse - row[labels[i]];
    // eps = 0 adds nothing: the plain loss stays bit for bit what it was.
    total += eps == 0.0 ? nll : (1.0 - eps) * nll + eps * (lse - row_sum / double(k));
    if (argmax == labels[i]) ++correct;
  }
  correct_ = correct;
  return n > 0 ? total / static_cast<double>(n) : 0.0;
}

/* Backward: dz[i, k] = (p[i, k] - (1 - eps) [k == y_i] - eps / K) / N. */
const Tensor& CrossEntropyLoss::backward() {
  if (labels_ == nullptr) throw Error("CrossEntropyLoss: backward called before forward");
  const int64_t n = probs_.size(0), k = probs_.size(1);
  grad_.resize(probs_.shape());
  const float scale = 1.0f / static_cast<float>(n);
  const float* p = probs_.data();
  float* dz = grad_.data();
  const double eps = label_smoothing_;
  if (eps == 0.0) {
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < k; ++j) dz[i * k + j] = p[i * k + j] * scale;
      dz[i * k + labels_[i]] -= scale;
    }
    return grad_;
  }
  const float spread = static_cast<float>(eps / double(k)), hit = static_cast<float>(1.0 - eps);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) dz[i * k + j] = (p[i * k + j] - spread) * scale;
    dz[i * k + labels_[i]] -= hit * scale;
  }
  return grad_;
}

std::string final_softmax_warning(Sequential& net) {
  if (net.size() == 0) return "";
  const auto* last = dynamic_cast<const Softmax*>(&net[net.size() - 1]);
  if (last == nullptr || last->log) return "";
  return "the network ends with " + last->repr() +
         ": the loss (cross-entropy) applies log-softmax itself, so it takes these "
         "probabilities as logits; training slows and the loss stays high. Drop the final "
         "Softmax (or end with LogSoftmax, which gives the same loss as none)";
}

}  // namespace bnlab::nn
