// Sequential: children run in order forward and in reverse backward; names
// and repr as PyTorch's nn.Sequential ("<index>.<name>", "(0): Linear(...)").
#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/nn/precision.hpp"

namespace bnlab::nn {

void Sequential::add(ModulePtr module) {
  if (!module) throw Error("Sequential::add: module is null");
  module->train(training_);
  children_.push_back(std::move(module));
  plan_shape_.clear();
}

/* The plan of formats (see MemoryFormat). A chain starts at a child that can
 * write nChw16c (Conv2d, out_channels a multiple of 16), runs through the
 * children that keep it (BatchNorm2d, activations, MaxPool2d) and must end at a
 * child that takes nChw16c and ends the chain (Conv2d, Flatten); otherwise
 * every child of that stretch stays plain. An ending Conv2d may start the
 * next chain. Under ComputePrecision::bf16, bf16 chains are found by the same
 * rule on top (from a product, Linear or Conv2d, through BatchNorm, ReLU,
 * MaxPool2d, Flatten, to the next product) and make their stretch's formats
 * bf16 in whichever layout the first rule gave. The first child's input and
 * the last child's output are plain float. */
void Sequential::plan_formats(const Shape& input) {
  const size_t count = children_.size();
  const std::vector<Shape> shapes = walk_shapes(input);
  in_formats_.assign(count, MemoryFormat::plain);
  out_formats_.assign(count, MemoryFormat::plain);
  const auto mark_chains = [&](auto&& can_start, auto&& use, auto&& mark) {
    for (size_t start = 0; start < count; ++start) {
      if (!can_start(start)) continue;
      size_t end = start + 1;
      while (end < count && use(end) == ChainUse::keeps) ++end;
      if (end == count || use(end) != ChainUse::ends) continue;
      mark(out_formats_[start]);
      for (size_t k = start + 1; k < end; ++k) {
        mark(in_formats_[k]);
        mark(out_formats_[k]);
      }
      mark(in_formats_[end]);
      start = end - 1;  // the ending child may start the next chain
    }
  };
  mark_chains([&](size_t i) { return children_[i]->can_output_blocked16(shapes[i]); },
              [&](size_t i) { return children_[i]->blocked16_use(shapes[i]); },
              [](MemoryFormat& f) { f = MemoryFormat::blocked16; });
  plan_precision_ = compute_precision();
  if (plan_precision_ == ComputePrecision::bf16)
    mark_chains([&](size_t i) { return children_[i]->can_output_bf16(shapes[i]); },
                [&](size_t i) { return children_[i]->bf16_use(shapes[i]); },
                [](MemoryFormat& f) { f = with_bf16(f); });
  plan_shape_ = input;
}

const Tensor& Sequential::forward(const Tensor& input) {
  if (input.shape() != plan_shape_ || in_formats_.size() != children_.size() ||
      plan_precision_ != compute_precision())
    plan_formats(input.shape());
  const Tensor* x = &input;
  for (size_t i = 0; i < children_.size(); ++i)
    x = &children_[i]->forward_formatted(*x, in_formats_[i], out_formats_[i]);
  return *x;
}

const Tensor& Sequential::backward(const Tensor& grad_output) {
  const Tensor* dy = &grad_output;
  if (compute_grad_input) {
    for (size_t i = children_.size(); i-- > 0;) {
      dy = &children_[i]->backward(*dy);
      if (after_child_backward) after_child_backward(*children_[i]);
    }
    return *dy;
  }
  // Children before the first one with parameters get no gradient at all; that
  // child computes its parameter grads but not its input gradient when it can.
  for (size_t i = children_.size(); i-- > 0;) {
    Module& child = *children_[i];
    const bool earliest_learnable = [&] {
      if (!child.has_parameters()) return false;
      for (size_t j = 0; j < i; ++j)
        if (children_[j]->has_parameters()) return false;
      return true;
    }();
    if (!earliest_learnable) {
      dy = &child.backward(*dy);
      if (after_child_backward) after_child_backward(child);
      continue;
    }
    const bool saved = child.compute_grad_input;
    child.compute_grad_input = false;
    child.backward(*dy);
    child.compute_grad_input = saved;
    if (after_child_backward) after_child_backward(child);
    break;
  }
  return no_grad_input_;
}

// PyTorch's _addindent: every line of a child's repr after the first gets two spaces.
std::string Sequential::repr() const {
  if (children_.empty()) return "Sequential()";
  std::string out = "Sequential(\n";
  for (size_t i = 0; i < children_.size(); ++i) {
    std::string child = children_[i]->repr();
    std::string indented;
    for (char ch : child) {
      indented += ch;
      if (ch == '\n') indented += "  ";
    }
    out += "  (" + std::to_string(i) + "): " + indented + "\n";
  }
  return out + ")";
}

std::vector<Shape> Sequential::walk_shapes(const Shape& input) const {
  std::vector<Shape> shapes(children_.size() + 1);
  shapes[0] = input;
  for (size_t i = 0; i < children_.size(); ++i) {
    try {
      shapes[i + 1] = children_[i]->output_shape(shapes[i]);
    } catch (const Error& e) {
      // Where the child's message already starts with its name
      // ("BatchNorm1d(11): input has 10 channels ..."), only the index is added.
      const std::string repr = children_[i]->repr();
      const std::string type_name = repr.substr(0, repr.find('('));
      const std::string message = e.what();
      if (message.rfind(type_name + "(", 0) == 0)
        throw Error(e.code(), "layer " + std::to_string(i) + ", " + message);
      throw Error(e.code(), "layer " + std::to_string(i) + ", " + repr + ": input " +
                                shape_string(shapes[i]) + ": " + message);
    }
  }
  return shapes;
}

Shape Sequential::output_shape(const Shape& input) const {
  for (int64_t d : input)
    if (d < 1)
      throw Error(ErrorCode::invalid_argument,
                  "input shape " + shape_string(input) + " has a size below 1");
  return walk_shapes(input).back();
}

std::vector<std::pair<std::string, Parameter*>> Sequential::parameters() {
  std::vector<std::pair<std::string, Parameter*>> params;
  for (size_t i = 0; i < children_.size(); ++i)
    for (auto& [name, param] : children_[i]->parameters())
      params.emplace_back(std::to_string(i) + "." + name, param);
  return params;
}

std::vector<Buffer> Sequential::buffers() {
  std::vector<Buffer> result;
  for (size_t i = 0; i < children_.size(); ++i)
    for (Buffer buffer : children_[i]->buffers()) {
      buffer.name = std::to_string(i) + "." + buffer.name;
      result.push_back(buffer);
    }
  return result;
}

bool Sequential::has_parameters() {
  for (auto& child : children_)
    if (child->has_parameters()) return true;
  return false;
}

void Sequential::reset_parameters(Generator& gen) {
  for (auto& child : children_) child->reset_parameters(gen);
}

double Sequential::state_bytes() const {
  double bytes = 0.0;
  for (const auto& child : children_) bytes += child->state_bytes();
  return bytes;
}

void Sequential::train(bool on) {
  training_ = on;
  for (auto& child : children_) child->train(on);
}

void Sequential::freeze_batch_norm(bool freeze_affine) {
  for (auto& child : children_) child->freeze_batch_norm(freeze_affine);
}

void Sequential::fuse_batch_norm_relu(bool on) {
  for (size_t i = 0; i < children_.size(); ++i) {
    Module& child = *children_[i];
    child.fuse_batch_norm_relu(on);
    Module* next = i + 1 < children_.size() ? children_[i + 1].get() : nullptr;
    const Activation activation =
        on && next != nullptr ? next->fusable_activation() : Activation::none;
    if (child.apply_activation(activation)) next->set_applied_by_previous(true);
  }
  if (!on)
    for (auto& child : children_) child->set_applied_by_previous(false);
}

void Sequential::zero_grad() {
  for (auto& [name, param] : parameters()) param->grad.fill(0.0f);
}

}  // namespace bnlab::nn
