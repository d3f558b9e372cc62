#include "bnlab/tensor.hpp"

#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>

#include "bnlab/error.hpp"

namespace bnlab {

std::string shape_string(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

int64_t shape_numel(const Shape& shape) {
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error("negative size in shape " + shape_string(shape));
    if (d != 0 && numel > std::numeric_limits<int64_t>::max() / d)
      throw Error("shape " + shape_string(shape) + " has more elements than int64 can count");
    numel *= d;
  }
  return numel;
}

Tensor::Tensor(Shape shape, float fill_value) {
  resize(shape);
  fill(fill_value);
}

int64_t Tensor::size(int64_t d) const {
  const int64_t rank = dim();
  const int64_t i = d < 0 ? d + rank : d;
  if (i < 0 || i >= rank)
    throw Error("dimension " + std::to_string(d) + " out of range for shape " +
                shape_string(shape_));
  return shape_[static_cast<size_t>(i)];
}

void Tensor::resize(const Shape& shape) {
  const int64_t numel = shape_numel(shape);
  if (static_cast<size_t>(numel) > data_.size()) data_.resize(static_cast<size_t>(numel));
  shape_ = shape;
  numel_ = numel;
}

void Tensor::reshape(const Shape& shape) {
  const int64_t numel = shape_numel(shape);
  if (numel != numel_)
    throw Error("cannot reshape " + shape_string(shape_) + " to " + shape_string(shape));
  shape_ = shape;
}

void Tensor::fill(float value) {
  // +0.0f is all zero bits: glibc's memset picks the CPU's widest stores at run
  // time (the portable build's loop gets 16-byte ones); zero_grad lands here
  // every step.
  if (std::bit_cast<uint32_t>(value) == 0) {
    if (numel_ > 0) std::memset(data_.data(), 0, static_cast<size_t>(numel_) * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < numel_; ++i) data_[static_cast<size_t>(i)] = value;
}

}  // namespace bnlab
