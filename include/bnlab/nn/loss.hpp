// Cross-entropy of logits (N, K) against class indices, mean over the batch,
// as PyTorch's nn.CrossEntropyLoss(label_smoothing=eps): the target is
// q = (1 - eps) * onehot(y) + eps / K, loss = mean_i sum_k -q[i,k] log softmax(z_i)[k]
// (eps = 0: mean_i(logsumexp(z_i) - z_i[y_i])), computed with the max
// subtracted; dz = (softmax(z) - q) / N.
#pragma once

#include <cstdint>
#include <string>

#include "bnlab/tensor.hpp"

namespace bnlab::nn {

class CrossEntropyLoss {
 public:
  // Throws Error unless label_smoothing is in [0, 1] (PyTorch's range).
  explicit CrossEntropyLoss(double label_smoothing = 0.0);
  // Returns the mean loss; throws Error on a label outside [0, K) or a shape mismatch.
  double forward(const Tensor& logits, const int32_t* labels);
  // Gradient w.r.t. the logits of the last forward.
  const Tensor& backward();
  // Count of rows of the last forward whose argmax equals the label.
  int64_t correct() const { return correct_; }
  double label_smoothing() const { return label_smoothing_; }
 private:
  double label_smoothing_ = 0.0;
  Tensor probs_, grad_;
  const int32_t* labels_ = nullptr;
  int64_t correct_ = 0;
};

class Sequential;

// A warning for a network whose last layer is Softmax, "" otherwise.
// CrossEntropyLoss applies log-softmax to what the network gives, so after a
// Softmax it trains on log_softmax(softmax(z)): probabilities taken as logits,
// whose gradients are small and whose loss never nears 0 (docs/toolkit.md).
// A final LogSoftmax changes nothing: log_softmax is idempotent, so the loss
// is PyTorch's NLLLoss of it, the same as cross-entropy of the logits.
std::string final_softmax_warning(Sequential& net);

}  // namespace bnlab::nn
