// Sequential: children run in order forward and in reverse backward; names
// and repr as PyTorch's nn.Sequential ("<index>.<name>", "(0): Linear(...)").
#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"

namespace bnlab::nn {

void Sequential::add(ModulePtr module) {
  if (!module) throw Error("Sequential::add: module is null");
  module->train(training_);
  children_.push_back(std::move(module));
  plan_shape_.clear();
}

const Tensor& Module::forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) {
  if (in != MemoryFormat::plain || out != MemoryFormat::plain)
    throw Error(repr() + ": takes and gives plain tensors only (no nChw16c)");
  return forward(input);
}

void Module::check_blocked16_input(const Shape& input, MemoryFormat in) const {
  if (in == MemoryFormat::blocked16 && !fits_blocked16(input))
    throw Error(repr() + ": nChw16c needs a 4-D input with channels a multiple of 16, got " +
                shape_string(input));
}

void Module::check_kept_format(const Shape& input, MemoryFormat in, MemoryFormat out) const {
  if (in != out)
    throw Error(repr() + ": keeps its input's format, asked for " +
                (in == MemoryFormat::plain ? "plain in, nChw16c out" : "nChw16c in, plain out"));
  check_blocked16_input(input, in);
}

/* The plan of formats (see MemoryFormat). A chain starts at a child that can
 * write nChw16c (Conv2d, out_channels a multiple of 16), runs through the
 * children that keep it (BatchNorm2d, activations, MaxPool2d) and must end at a
 * child that takes nChw16c and ends the chain (Conv2d, Flatten); otherwise
 * every child of that stretch stays plain. An ending Conv2d may start the
 * next chain. The first child's input and the last child's output are plain. */
void Sequential::plan_formats(const Shape& input) {
  const size_t count = children_.size();
  std::vector<Shape> shapes(count + 1);
  shapes[0] = input;
  for (size_t i = 0; i < count; ++i) shapes[i + 1] = children_[i]->output_shape(shapes[i]);
  in_formats_.assign(count, MemoryFormat::plain);
  out_formats_.assign(count, MemoryFormat::plain);
  for (size_t start = 0; start < count; ++start) {
    if (!children_[start]->can_output_blocked16(shapes[start])) continue;
    size_t end = start + 1;
    while (end < count && children_[end]->blocked16_use(shapes[end]) == Blocked16Use::keeps) ++end;
    if (end == count || children_[end]->blocked16_use(shapes[end]) != Blocked16Use::ends) continue;
    out_formats_[start] = MemoryFormat::blocked16;
    for (size_t k = start + 1; k < end; ++k)
      in_formats_[k] = out_formats_[k] = MemoryFormat::blocked16;
    in_formats_[end] = MemoryFormat::blocked16;
    start = end - 1;  // the ending child may start the next chain
  }
  plan_shape_ = input;
}

const Tensor& Sequential::forward(const Tensor& input) {
  if (input.shape() != plan_shape_ || in_formats_.size() != children_.size())
    plan_formats(input.shape());
  const Tensor* x = &input;
  for (size_t i = 0; i < children_.size(); ++i)
    x = &children_[i]->forward_formatted(*x, in_formats_[i], out_formats_[i]);
  return *x;
}

namespace {

// The child's own switch for its input gradient, or null for modules without one.
bool* grad_input_switch(Module& module) {
  if (auto* linear = dynamic_cast<Linear*>(&module)) return &linear->compute_grad_input;
  if (auto* conv = dynamic_cast<Conv2d*>(&module)) return &conv->compute_grad_input;
  if (auto* bn = dynamic_cast<BatchNorm*>(&module)) return &bn->compute_grad_input;
  return nullptr;
}

// Whether the module has learnable parameters, without building the list (no
// allocation in a training step) for the modules of this file.
bool has_parameters(Module& module) {
  if (dynamic_cast<Linear*>(&module) || dynamic_cast<Conv2d*>(&module)) return true;
  if (auto* bn = dynamic_cast<BatchNorm*>(&module)) return bn->affine;
  if (auto* seq = dynamic_cast<Sequential*>(&module)) {
    for (auto& child : seq->children())
      if (has_parameters(*child)) return true;
    return false;
  }
  return !module.parameters().empty();
}

}  // namespace

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
      if (!has_parameters(child)) return false;
      for (size_t j = 0; j < i; ++j)
        if (has_parameters(*children_[j])) return false;
      return true;
    }();
    if (!earliest_learnable) {
      dy = &child.backward(*dy);
      if (after_child_backward) after_child_backward(child);
      continue;
    }
    bool* flag = grad_input_switch(child);
    if (flag == nullptr) {
      child.backward(*dy);
    } else {
      const bool saved = *flag;
      *flag = false;
      child.backward(*dy);
      *flag = saved;
    }
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

Shape Sequential::output_shape(const Shape& input) const {
  Shape shape = input;
  for (size_t i = 0; i < children_.size(); ++i) {
    try {
      shape = children_[i]->output_shape(shape);
    } catch (const Error& e) {
      throw Error(e.code(), "layer " + std::to_string(i) + " (" + children_[i]->repr() +
                                "): " + e.what());
    }
  }
  return shape;
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

void Sequential::train(bool on) {
  training_ = on;
  for (auto& child : children_) child->train(on);
}

void Sequential::fuse_batch_norm_relu(bool on) {
  for (size_t i = 0; i < children_.size(); ++i) {
    if (auto* inner = dynamic_cast<Sequential*>(children_[i].get())) inner->fuse_batch_norm_relu(on);
    auto* bn = dynamic_cast<BatchNorm*>(children_[i].get());
    if (bn == nullptr) continue;
    bn->fuse_relu = false;
    if (i + 1 < children_.size()) {
      if (auto* relu = dynamic_cast<ReLU*>(children_[i + 1].get())) {
        bn->fuse_relu = on;
        relu->fused = on;
      }
    }
  }
  if (!on)
    for (auto& child : children_)
      if (auto* relu = dynamic_cast<ReLU*>(child.get())) relu->fused = false;
}

void Sequential::zero_grad() {
  for (auto& [name, param] : parameters()) param->grad.fill(0.0f);
}

}  // namespace bnlab::nn
