// A dense fp32 tensor: a shape and its values, row-major (PyTorch's contiguous
// layout, channels-first for images). Modules own the tensors they produce and
// reuse them step after step: resize() keeps the storage when it is big enough.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bnlab/aligned.hpp"

namespace bnlab {

using Shape = std::vector<int64_t>;

std::string shape_string(const Shape& shape);  // "(64, 784)"
int64_t shape_numel(const Shape& shape);       // throws bnlab::Error on negative sizes or overflow

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape, float fill = 0.0f);

  const Shape& shape() const { return shape_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end, as in PyTorch
  int64_t numel() const { return numel_; }
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  float& operator[](int64_t i) { return data_[static_cast<size_t>(i)]; }
  float operator[](int64_t i) const { return data_[static_cast<size_t>(i)]; }

  // New shape; storage is kept (and values left as they are) when it fits.
  void resize(const Shape& shape);
  // Same values, another shape with the same numel.
  void reshape(const Shape& shape);
  void fill(float value);

 private:
  Shape shape_;
  int64_t numel_ = 0;
  AlignedVector<float> data_;  // starts on a cache line
};

}  // namespace bnlab
