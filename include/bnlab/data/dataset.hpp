// Data sets in the IDX format (MNIST, Fashion-MNIST and any set with the same
// file names), plain or gzip, read as u8 pixels and handed out as float images
// in [0, 1] exactly like torchvision's ToTensor(), and seeded shuffling into
// batches.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bnlab::data {

// The examples, count * channels * rows * cols values, are held one of two
// ways: `pixels` (u8, as an IDX file stores them; value = pixel / 255 in
// float32, torchvision's ToTensor) or `images` (floats, for data made in
// code); the other is empty. Read them through value(), copy_examples() or
// gather_batch(), which serve both. Keeping the u8 bytes and converting a
// batch at a time holds a quarter of the float array's memory (docs/toolkit.md,
// Data loading).
struct Dataset {
  int64_t count = 0;                // examples
  int64_t channels = 1, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;      // count * example_size(), or empty
  std::vector<float> images;        // count * example_size(), or empty
  std::vector<int32_t> labels;      // count, each in [0, num_classes)
  int32_t num_classes = 10;
  int64_t example_size() const { return channels * rows * cols; }
  // Element i of the examples laid end to end, as a float.
  float value(int64_t i) const;
};

// pixel / 255 as torchvision's ToTensor computes it (a float32 division).
float pixel_value(uint8_t pixel);

struct Split {
  Dataset train;
  Dataset test;
};

// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] from dir. A missing
// folder or file is named, with the package to install (the default folder)
// or what --data must name (any other).
Split load_split(const std::string& dir);
// The test split alone (t10k-*), for evaluation: the training files are not read.
Dataset load_test_split(const std::string& dir);
// What the errors of both say about a folder or file that is missing: the
// package to install for the default folder, for any other what it must hold.
std::string missing_data_advice(const std::string& dir);

// The first `count` examples (or all, if fewer): for quick runs and tests.
Dataset head(const Dataset& d, int64_t count);

// A permutation of [0, count) from a seed, the same on every machine
// (Fisher-Yates over a fixed 64-bit generator).
std::vector<int64_t> shuffled_indices(int64_t count, uint64_t seed);

// Copies examples [begin, begin + count) into out (count, C, H, W) as floats.
void copy_examples(const Dataset& d, int64_t begin, int64_t count, float* out);

// Copies the examples order[begin, begin + batch) into images (batch, C, H, W)
// and labels (batch).
void gather_batch(const Dataset& d, const std::vector<int64_t>& order, int64_t begin,
                  int64_t batch, float* images, int32_t* labels);

}  // namespace bnlab::data
