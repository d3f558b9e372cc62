// Gradient probes on a batch (see gradient_probes.hpp).
#include "gradient_probes.hpp"

#include <algorithm>
#include <cmath>

#include "bnlab/nn/loss.hpp"
#include "shift_probe.hpp"

namespace bnlab::lab {
namespace {

// Every parameter with the child it belongs to, in network order.
struct Owned {
  size_t child;
  nn::Parameter* param;
};

std::vector<Owned> owned_parameters(nn::Sequential& net) {
  std::vector<Owned> out;
  for (size_t i = 0; i < net.size(); ++i)
    for (auto& [name, p] : net[i].parameters()) out.push_back({i, p});
  return out;
}

using Values = std::vector<std::vector<float>>;

Values copy_values(const std::vector<Owned>& params, bool grads) {
  Values out;
  for (const Owned& o : params) {
    const Tensor& t = grads ? o.param->grad : o.param->value;
    out.emplace_back(t.data(), t.data() + t.numel());
  }
  return out;
}

// value = base - step * direction, for the parameters of children before `end`.
void set_values(const std::vector<Owned>& params, const Values& base, const Values& direction,
                double step, size_t end) {
  for (size_t k = 0; k < params.size(); ++k) {
    if (params[k].child >= end) continue;
    Tensor& t = params[k].param->value;
    for (int64_t i = 0; i < t.numel(); ++i)
      t[i] = static_cast<float>(base[k][size_t(i)] - step * direction[k][size_t(i)]);
  }
}

// The loss of the batch, with every parameter's gradient (zeroed first); BN
// normalises with the batch's statistics and its running statistics are kept.
double batch_gradients(nn::Sequential& net, const Tensor& x, const int32_t* y) {
  SavedBatchNormState saved(net);
  net.zero_grad();
  nn::CrossEntropyLoss loss;
  double value = loss.forward(net.forward(x), y);
  if (std::isfinite(value)) net.backward(loss.backward());
  saved.restore();
  return value;
}

double squared_norm(const std::vector<float>& a) {
  double s = 0;
  for (float v : a) s += double(v) * v;
  return s;
}

}  // namespace

std::vector<LayerShift> gradient_shift(nn::Sequential& net, const Tensor& x, const int32_t* y,
                                       double lr) {
  std::vector<Owned> params = owned_parameters(net);
  batch_gradients(net, x, y);
  const Values weights = copy_values(params, false), grads = copy_values(params, true);
  std::vector<LayerShift> out;
  bool first = true;
  for (size_t k = 0; k < params.size(); ++k) {
    auto* linear = dynamic_cast<nn::Linear*>(&net[params[k].child]);
    if (linear == nullptr || params[k].param != &linear->weight) continue;
    if (first) {  // nothing before the first layer moves
      first = false;
      continue;
    }
    set_values(params, weights, grads, lr, params[k].child);
    batch_gradients(net, x, y);
    const Tensor& moved = linear->weight.grad;
    double diff = 0, dot = 0, moved_sq = 0;
    for (int64_t i = 0; i < moved.numel(); ++i) {
      double g = grads[k][size_t(i)], h = moved[i];
      diff += (g - h) * (g - h);
      dot += g * h;
      moved_sq += h * h;
    }
    double norm = std::sqrt(squared_norm(grads[k]));
    double cosine = norm > 0 && moved_sq > 0 ? dot / (norm * std::sqrt(moved_sq)) : NAN;
    out.push_back({std::sqrt(diff), cosine, norm});
    set_values(params, weights, grads, 0.0, params[k].child);
  }
  net.zero_grad();
  return out;
}

LandscapeSample landscape_along_gradient(nn::Sequential& net, const Tensor& x, const int32_t* y,
                                         const std::vector<double>& etas) {
  std::vector<Owned> params = owned_parameters(net);
  batch_gradients(net, x, y);
  const Values weights = copy_values(params, false), grads = copy_values(params, true);
  double grad_norm = 0;
  for (const auto& g : grads) grad_norm += squared_norm(g);
  grad_norm = std::sqrt(grad_norm);
  LandscapeSample sample{0, 0, 0};
  double loss_low = INFINITY, loss_high = -INFINITY;
  for (double eta : etas) {
    set_values(params, weights, grads, eta, net.size());
    double loss = batch_gradients(net, x, y);
    if (!std::isfinite(loss)) {
      sample = {INFINITY, INFINITY, INFINITY};
      break;
    }
    loss_low = std::min(loss_low, loss);
    loss_high = std::max(loss_high, loss);
    double diff = 0;
    for (size_t k = 0; k < params.size(); ++k) {
      const Tensor& h = params[k].param->grad;
      for (int64_t i = 0; i < h.numel(); ++i) {
        double d = grads[k][size_t(i)] - h[i];
        diff += d * d;
      }
    }
    diff = std::sqrt(diff);
    sample.gradient_predictiveness = std::max(sample.gradient_predictiveness, diff);
    if (grad_norm > 0) sample.beta_smoothness = std::max(sample.beta_smoothness, diff / (eta * grad_norm));
  }
  if (std::isfinite(sample.loss_variation)) sample.loss_variation = loss_high - loss_low;
  set_values(params, weights, grads, 0.0, net.size());
  net.zero_grad();
  return sample;
}

}  // namespace bnlab::lab
