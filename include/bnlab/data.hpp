// Data sets in the IDX format (MNIST, Fashion-MNIST and any set with the same
// file names), plain or gzip, as float images in [0, 1] exactly like
// torchvision's ToTensor(), and seeded shuffling into batches.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bnlab::data {

struct Dataset {
  int64_t count = 0;                // examples
  int64_t channels = 1, rows = 0, cols = 0;
  std::vector<float> images;        // count * channels * rows * cols, in [0, 1]
  std::vector<int32_t> labels;      // count, each in [0, num_classes)
  int32_t num_classes = 10;
  int64_t example_size() const { return channels * rows * cols; }
};

struct Split {
  Dataset train;
  Dataset test;
};

// Where Debian's dataset-fashion-mnist puts Fashion-MNIST.
std::string default_data_dir();  // "/usr/share/datasets/fashion-mnist"

// Reads one images file and one labels file (each plain or .gz). Throws
// bnlab::Error(io) naming the file and the problem: missing file, truncated
// data, wrong magic number, header claiming more items than the file holds,
// labels out of range, image and label counts that disagree.
Dataset read_idx(const std::string& images_path, const std::string& labels_path);

// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] from dir. A missing
// directory or file says which package to install or which flag to use.
Split load_split(const std::string& dir);

// The first `count` examples (or all, if fewer): for quick runs and tests.
Dataset head(const Dataset& d, int64_t count);

// A permutation of [0, count) from a seed, the same on every machine
// (Fisher-Yates over a fixed 64-bit generator).
std::vector<int64_t> shuffled_indices(int64_t count, uint64_t seed);

// Copies the examples order[begin, begin + batch) into images (batch, C, H, W)
// and labels (batch).
void gather_batch(const Dataset& d, const std::vector<int64_t>& order, int64_t begin,
                  int64_t batch, float* images, int32_t* labels);

}  // namespace bnlab::data
