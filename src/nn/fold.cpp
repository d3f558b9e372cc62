#include "bnlab/nn/fold.hpp"

#include <cmath>
#include <sstream>

#include "bnlab/error.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/random.hpp"

namespace bnlab::nn {

namespace {

std::string number(double v) {
  std::ostringstream out;
  out.precision(17);
  out << v;
  return out.str();
}

std::string layer_text(Module& m) {
  if (auto* l = dynamic_cast<Linear*>(&m))
    return "Linear(" + std::to_string(l->in_features) + ", " + std::to_string(l->out_features) +
           (l->bias ? ")" : ", bias=False)");
  if (auto* c = dynamic_cast<Conv2d*>(&m))
    return "Conv2d(" + std::to_string(c->in_channels) + ", " + std::to_string(c->out_channels) +
           ", " + std::to_string(c->kernel_size) + ", stride=" + std::to_string(c->stride) +
           ", padding=" + std::to_string(c->padding) + (c->bias ? ")" : ", bias=False)");
  if (auto* b = dynamic_cast<BatchNorm*>(&m))
    return "BatchNorm" + std::to_string(b->dims) + "d(" + std::to_string(b->num_features) +
           ", eps=" + number(b->eps) +
           ", momentum=" + (b->momentum ? number(*b->momentum) : std::string("None")) +
           ", affine=" + (b->affine ? "True" : "False") +
           ", track_running_stats=" + (b->track_running_stats ? "True" : "False") + ")";
  if (dynamic_cast<ReLU*>(&m)) return "ReLU()";
  if (auto* r = dynamic_cast<LeakyReLU*>(&m))
    return "LeakyReLU(negative_slope=" + number(r->negative_slope) + ")";
  if (dynamic_cast<Sigmoid*>(&m)) return "Sigmoid()";
  if (dynamic_cast<Tanh*>(&m)) return "Tanh()";
  if (auto* p = dynamic_cast<MaxPool2d*>(&m))
    return "MaxPool2d(" + std::to_string(p->kernel_size) + ", stride=" + std::to_string(p->stride) +
           ", padding=" + std::to_string(p->padding) + ")";
  if (auto* d = dynamic_cast<Dropout*>(&m)) return "Dropout(p=" + number(d->p) + ")";
  if (dynamic_cast<Flatten*>(&m)) return "Flatten()";
  throw Error("arch_text: no text form for layer " + m.repr());
}

// The per-output-channel scale and shift of an eval-mode BatchNorm.
void bn_affine(const BatchNorm& bn, std::vector<double>& scale, std::vector<double>& shift) {
  const int64_t c = bn.num_features;
  scale.assign(static_cast<size_t>(c), 0.0);
  shift.assign(static_cast<size_t>(c), 0.0);
  for (int64_t j = 0; j < c; ++j) {
    const double gamma = bn.affine ? bn.weight.value[j] : 1.0;
    const double beta = bn.affine ? bn.bias.value[j] : 0.0;
    const double s = gamma / std::sqrt(static_cast<double>(bn.running_var[j]) + bn.eps);
    scale[static_cast<size_t>(j)] = s;
    shift[static_cast<size_t>(j)] = beta - bn.running_mean[j] * s;
  }
}

// Scales weight rows (out, per_row...) and sets bias' = bias*scale + shift.
void fold_into(const Parameter& weight, const std::optional<Parameter>& bias,
               const std::vector<double>& scale, const std::vector<double>& shift,
               Parameter& new_weight, Parameter& new_bias) {
  const int64_t out = static_cast<int64_t>(scale.size());
  const int64_t per_row = weight.value.numel() / out;
  for (int64_t o = 0; o < out; ++o) {
    const double s = scale[static_cast<size_t>(o)];
    for (int64_t k = 0; k < per_row; ++k)
      new_weight.value[o * per_row + k] =
          static_cast<float>(weight.value[o * per_row + k] * s);
    const double b = bias ? bias->value[o] : 0.0;
    new_bias.value[o] = static_cast<float>(b * s + shift[static_cast<size_t>(o)]);
  }
}

}  // namespace

std::string arch_text(Sequential& net) {
  std::string text;
  for (size_t i = 0; i < net.size(); ++i) {
    if (i > 0) text += ", ";
    text += layer_text(net[i]);
  }
  return text;
}

// Copies parameters, buffers and the counter of one layer into its twin.
void copy_state(Module& from, Module& to) {
  auto from_params = from.parameters();
  auto to_params = to.parameters();
  for (size_t k = 0; k < from_params.size() && k < to_params.size(); ++k)
    to_params[k].second->value = from_params[k].second->value;
  auto from_buffers = from.buffers();
  auto to_buffers = to.buffers();
  for (size_t k = 0; k < from_buffers.size() && k < to_buffers.size(); ++k) {
    if (from_buffers[k].tensor != nullptr) *to_buffers[k].tensor = *from_buffers[k].tensor;
    if (from_buffers[k].counter != nullptr) *to_buffers[k].counter = *from_buffers[k].counter;
  }
}

FoldResult fold_batch_norm(Sequential& net) {
  // First the plan and the folded text: a Linear or Conv2d followed by a
  // BatchNorm becomes the same layer with a bias; every other layer stays.
  struct Step {
    size_t source;       // layer in net
    BatchNorm* bn;       // folded into it, or null
  };
  std::vector<Step> steps;
  std::string text;
  FoldResult result;
  for (size_t i = 0; i < net.size(); ++i) {
    Module& m = net[i];
    auto* bn = (i + 1 < net.size()) ? dynamic_cast<BatchNorm*>(&net[i + 1]) : nullptr;
    auto* linear = dynamic_cast<Linear*>(&m);
    auto* conv = dynamic_cast<Conv2d*>(&m);
    if (!text.empty()) text += ", ";
    if (bn != nullptr && (linear != nullptr || conv != nullptr)) {
      if (!bn->track_running_stats)
        throw Error("cannot fold layer " + std::to_string(i + 1) + ", " + bn->repr() +
                    ": it has no running statistics (track_running_stats=False), so eval mode "
                    "normalizes with each batch's statistics");
      if (linear != nullptr)
        text += "Linear(" + std::to_string(linear->in_features) + ", " +
                std::to_string(linear->out_features) + ")";
      else
        text += "Conv2d(" + std::to_string(conv->in_channels) + ", " +
                std::to_string(conv->out_channels) + ", " + std::to_string(conv->kernel_size) +
                ", stride=" + std::to_string(conv->stride) +
                ", padding=" + std::to_string(conv->padding) + ")";
      steps.push_back({i, bn});
      ++result.folded;
      ++i;  // the BatchNorm is consumed
    } else {
      if (dynamic_cast<BatchNorm*>(&m) != nullptr) ++result.kept;
      text += layer_text(m);
      steps.push_back({i, nullptr});
    }
  }

  // Then the new network, its folded weights, and every other layer's state.
  Generator unused(0);  // initial weights are all overwritten
  result.net = parse_arch(text, unused);
  std::vector<double> scale, shift;
  for (size_t k = 0; k < steps.size(); ++k) {
    Module& source = net[steps[k].source];
    Module& target = (*result.net)[k];
    if (steps[k].bn == nullptr) {
      copy_state(source, target);
      continue;
    }
    bn_affine(*steps[k].bn, scale, shift);
    if (auto* linear = dynamic_cast<Linear*>(&source)) {
      auto& folded = dynamic_cast<Linear&>(target);
      fold_into(linear->weight, linear->bias, scale, shift, folded.weight, *folded.bias);
    } else {
      auto& conv = dynamic_cast<Conv2d&>(source);
      auto& folded = dynamic_cast<Conv2d&>(target);
      fold_into(conv.weight, conv.bias, scale, shift, folded.weight, *folded.bias);
    }
  }
  result.net->eval();
  result.arch = text;
  return result;
}

}  // namespace bnlab::nn
