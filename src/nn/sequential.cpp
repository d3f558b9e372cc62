// Sequential: children run in order forward and in reverse backward; names
// and repr as PyTorch's nn.Sequential ("<index>.<name>", "(0): Linear(...)").
#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"

namespace bnlab::nn {

void Sequential::add(ModulePtr module) {
  if (!module) throw Error("Sequential::add: module is null");
  module->train(training_);
  children_.push_back(std::move(module));
}

const Tensor& Sequential::forward(const Tensor& input) {
  const Tensor* x = &input;
  for (auto& child : children_) x = &child->forward(*x);
  return *x;
}

const Tensor& Sequential::backward(const Tensor& grad_output) {
  const Tensor* dy = &grad_output;
  for (size_t i = children_.size(); i-- > 0;) dy = &children_[i]->backward(*dy);
  return *dy;
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
