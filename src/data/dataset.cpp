// Finding a data set on disk, slicing it, reading examples as floats, seeded
// shuffling and batch gathering.
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <string>
#include <utility>
#include <vector>

#include "bnlab/data/idx.hpp"
#include "bnlab/error.hpp"
#include "bnlab/random.hpp"
#include "bnlab/threading.hpp"

namespace bnlab::data {
namespace {

// pixel_value for each of the 256 bytes.
struct PixelTable {
  float value[256];
  PixelTable() {
    for (int i = 0; i < 256; ++i) value[i] = static_cast<float>(i) / 255.0f;
  }
};
const PixelTable kPixels;

// out[k] = the example values [first, first + n) (first in elements).
void copy_values(const Dataset& d, int64_t first, int64_t n, float* out) {
  if (!d.pixels.empty()) {
    const uint8_t* in = d.pixels.data() + first;
    for (int64_t k = 0; k < n; ++k) out[k] = kPixels.value[in[k]];
  } else {
    std::memcpy(out, d.images.data() + first, static_cast<size_t>(n) * sizeof(float));
  }
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// dir/name if it exists, else dir/name.gz; the plain file wins when both exist
// because it needs no inflating.
std::string find_idx_file(const std::string& dir, const std::string& name) {
  const std::string plain = dir + "/" + name;
  if (is_regular_file(plain)) return plain;
  if (is_regular_file(plain + ".gz")) return plain + ".gz";
  throw Error(ErrorCode::io, "data folder " + dir + " has no " + name + " (nor " + name +
                                 ".gz): " + missing_data_advice(dir));
}

// splitmix64 (bnlab/random.hpp), written out so that every machine and every
// standard library gives the same sequence.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() { return splitmix64(state); }
  // Uniform in [0, bound) without modulo bias: outputs below 2^64 mod bound
  // are rejected, so the accepted range is a whole number of copies of bound.
  uint64_t below(uint64_t bound) {
    const uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound
    for (;;) {
      const uint64_t r = next();
      if (r >= threshold) return r % bound;
    }
  }
};

}  // namespace

std::string missing_data_advice(const std::string& dir) {
  if (dir == default_data_dir())
    return "install the Debian package dataset-fashion-mnist (bash scripts/setup.sh) or pass "
           "--data DIR";
  return "--data names a folder holding MNIST's four files, train-images-idx3-ubyte, "
         "train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each "
         "plain or .gz)";
}

namespace {
void check_data_dir(const std::string& dir) {
  if (!is_directory(dir))
    throw Error(ErrorCode::io, "data folder " + dir + " not found: " + missing_data_advice(dir));
}
}  // namespace

Dataset load_test_split(const std::string& dir) {
  check_data_dir(dir);
  const std::string test_images = find_idx_file(dir, "t10k-images-idx3-ubyte");
  return read_idx(test_images, find_idx_file(dir, "t10k-labels-idx1-ubyte"));
}

Split load_split(const std::string& dir) {
  check_data_dir(dir);
  // All four files are looked for first, in a fixed order, so that a missing
  // one is reported before any reading starts.
  const std::string train_images = find_idx_file(dir, "train-images-idx3-ubyte");
  const std::string train_labels = find_idx_file(dir, "train-labels-idx1-ubyte");
  const std::string test_images = find_idx_file(dir, "t10k-images-idx3-ubyte");
  const std::string test_labels = find_idx_file(dir, "t10k-labels-idx1-ubyte");
  // With two threads or more the test files are read beside the training ones
  // (Fashion-MNIST: the inflation of the test images, a quarter of the work,
  // no longer adds to the load time); a training file's error is reported first.
  Split split;
  if (num_threads() < 2) {
    split.train = read_idx(train_images, train_labels);
    split.test = read_idx(test_images, test_labels);
    return split;
  }
  std::future<Dataset> test =
      std::async(std::launch::async, [&] { return read_idx(test_images, test_labels); });
  split.train = read_idx(train_images, train_labels);
  split.test = test.get();
  return split;
}

float pixel_value(uint8_t pixel) { return kPixels.value[pixel]; }

float Dataset::value(int64_t i) const {
  return pixels.empty() ? images[static_cast<size_t>(i)] : kPixels.value[pixels[static_cast<size_t>(i)]];
}

void copy_examples(const Dataset& d, int64_t begin, int64_t count, float* out) {
  if (begin < 0 || count < 0 || begin > d.count || count > d.count - begin)
    throw Error("copy_examples: range [" + std::to_string(begin) + ", " +
                std::to_string(begin + count) + ") is outside the data set's " +
                std::to_string(d.count) + " examples");
  copy_values(d, begin * d.example_size(), count * d.example_size(), out);
}

Dataset head(const Dataset& d, int64_t count) {
  if (count < 0) throw Error("head: count must be >= 0, got " + std::to_string(count));
  Dataset out;
  out.count = std::min(count, d.count);
  out.channels = d.channels;
  out.rows = d.rows;
  out.cols = d.cols;
  out.num_classes = d.num_classes;
  const int64_t values = out.count * d.example_size();
  if (!d.pixels.empty()) out.pixels.assign(d.pixels.begin(), d.pixels.begin() + values);
  else out.images.assign(d.images.begin(), d.images.begin() + values);
  out.labels.assign(d.labels.begin(), d.labels.begin() + out.count);
  return out;
}

/* Fisher-Yates (Knuth's Algorithm P), from the last position down:
     order = [0, 1, ..., count-1]
     for i = count-1 down to 1: j = below(i + 1); swap(order[i], order[j])
   with below() drawing from splitmix64 seeded with `seed` (rejection sampling,
   see SplitMix64::below). A Python port reproduces it exactly. */
std::vector<int64_t> shuffled_indices(int64_t count, uint64_t seed) {
  if (count < 0) throw Error("shuffled_indices: count must be >= 0, got " + std::to_string(count));
  std::vector<int64_t> order(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) order[static_cast<size_t>(i)] = i;
  SplitMix64 generator{seed};
  for (int64_t i = count - 1; i >= 1; --i) {
    const auto j = static_cast<int64_t>(generator.below(static_cast<uint64_t>(i) + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

/* images[b] = example order[begin + b], labels[b] = d.labels[order[begin + b]]
   for b in [0, batch): one example_size() copy (or u8 conversion) per example. */
void gather_batch(const Dataset& d, const std::vector<int64_t>& order, int64_t begin, int64_t batch,
                  float* images, int32_t* labels) {
  if (begin < 0 || batch < 0 || begin > static_cast<int64_t>(order.size()) ||
      batch > static_cast<int64_t>(order.size()) - begin)
    throw Error("gather_batch: range [" + std::to_string(begin) + ", " +
                std::to_string(begin + batch) + ") is outside the order's " +
                std::to_string(order.size()) + " entries");
  const int64_t example_size = d.example_size();
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t index = order[static_cast<size_t>(begin + b)];
    if (index < 0 || index >= d.count)
      throw Error("gather_batch: order[" + std::to_string(begin + b) +
                  "] = " + std::to_string(index) + " is outside the data set's " +
                  std::to_string(d.count) + " examples");
    copy_values(d, index * example_size, example_size, images + b * example_size);
    labels[b] = d.labels[static_cast<size_t>(index)];
  }
}

}  // namespace bnlab::data
