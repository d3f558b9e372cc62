// The IDX reader (src/data/idx.cpp): MNIST's file format, plain or gzip.
#pragma once

#include <string>

#include "bnlab/data/dataset.hpp"

namespace bnlab::data {

// Where Debian's dataset-fashion-mnist puts Fashion-MNIST.
std::string default_data_dir();  // "/usr/share/datasets/fashion-mnist"

// Reads one images file and one labels file (each plain or .gz). Throws
// bnlab::Error(io) naming the file and the problem: missing file, truncated
// data, wrong magic number, header claiming more items than the file holds,
// labels out of range, image and label counts that disagree.
Dataset read_idx(const std::string& images_path, const std::string& labels_path);

}  // namespace bnlab::data
