// The IDX reader, load_split, head, shuffled_indices and gather_batch. Small
// synthetic IDX files (plain and gzip) are written to a temporary folder; one
// test reads the real Fashion-MNIST when the Debian package is installed.
#include "bnlab/data/idx.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bnlab/error.hpp"

namespace fs = std::filesystem;
using bnlab::Error;
using bnlab::ErrorCode;
using bnlab::data::Dataset;

namespace {

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("bnlab_data_test_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  static void put_be32(std::vector<uint8_t>& out, uint32_t v) {
    out.push_back(static_cast<uint8_t>(v >> 24));
    out.push_back(static_cast<uint8_t>(v >> 16));
    out.push_back(static_cast<uint8_t>(v >> 8));
    out.push_back(static_cast<uint8_t>(v));
  }

  static std::vector<uint8_t> images_bytes(uint32_t n, uint32_t rows, uint32_t cols,
                                           const std::vector<uint8_t>& pixels,
                                           uint32_t magic = 0x00000803) {
    std::vector<uint8_t> out;
    put_be32(out, magic);
    put_be32(out, n);
    put_be32(out, rows);
    put_be32(out, cols);
    out.insert(out.end(), pixels.begin(), pixels.end());
    return out;
  }

  static std::vector<uint8_t> labels_bytes(uint32_t n, const std::vector<uint8_t>& labels,
                                           uint32_t magic = 0x00000801) {
    std::vector<uint8_t> out;
    put_be32(out, magic);
    put_be32(out, n);
    out.insert(out.end(), labels.begin(), labels.end());
    return out;
  }

  std::string write_plain(const std::string& name, const std::vector<uint8_t>& bytes) const {
    std::ofstream f(path(name), std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
    return path(name);
  }

  std::string write_gzip(const std::string& name, const std::vector<uint8_t>& bytes) const {
    gzFile gz = gzopen(path(name).c_str(), "wb");
    if (!bytes.empty()) gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(gz);
    return path(name);
  }

  // n examples of rows x cols with pixel values that cover 0 and 255.
  static std::vector<uint8_t> sample_pixels(size_t count) {
    std::vector<uint8_t> pixels(count);
    for (size_t i = 0; i < count; ++i) pixels[i] = static_cast<uint8_t>((i * 37 + 255) % 256);
    return pixels;
  }

  // Expects read_idx to throw Error(io) with every one of the fragments in its message.
  static void expect_io_error(const std::string& images, const std::string& labels,
                              const std::vector<std::string>& fragments) {
    try {
      bnlab::data::read_idx(images, labels);
      ADD_FAILURE() << "no error for " << images << ", " << labels;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::io) << e.what();
      for (const auto& fragment : fragments)
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
            << "message '" << e.what() << "' lacks '" << fragment << "'";
    }
  }

  fs::path dir_;
};

// The float64 reference of ToTensor(): pixel / 255, rounded once to float.
float reference_pixel(uint8_t p) { return static_cast<float>(static_cast<double>(p) / 255.0); }

TEST_F(IdxTest, ReadsPlainImagesAsPixelsOver255) {
  const auto pixels = sample_pixels(3 * 2 * 4);
  const std::vector<uint8_t> labels = {7, 0, 9};
  const Dataset d = bnlab::data::read_idx(write_plain("img", images_bytes(3, 2, 4, pixels)),
                                          write_plain("lbl", labels_bytes(3, labels)));
  EXPECT_EQ(d.count, 3);
  EXPECT_EQ(d.channels, 1);
  EXPECT_EQ(d.rows, 2);
  EXPECT_EQ(d.cols, 4);
  EXPECT_EQ(d.example_size(), 8);
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_EQ(d.pixels, pixels);  // kept as u8
  EXPECT_TRUE(d.images.empty());
  for (size_t i = 0; i < pixels.size(); ++i)
    EXPECT_EQ(d.value(static_cast<int64_t>(i)), reference_pixel(pixels[i])) << "pixel " << i;
  // The floats a batch gets: copy_examples and gather_batch convert the same way.
  std::vector<float> all(pixels.size()), second(8), gathered(16);
  bnlab::data::copy_examples(d, 0, 3, all.data());
  bnlab::data::copy_examples(d, 1, 1, second.data());
  std::vector<int32_t> gathered_labels(2);
  bnlab::data::gather_batch(d, {2, 0, 1}, 0, 2, gathered.data(), gathered_labels.data());
  for (size_t i = 0; i < pixels.size(); ++i) EXPECT_EQ(all[i], reference_pixel(pixels[i])) << i;
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(second[i], reference_pixel(pixels[8 + i])) << i;
    EXPECT_EQ(gathered[i], reference_pixel(pixels[16 + i])) << i;
    EXPECT_EQ(gathered[8 + i], reference_pixel(pixels[i])) << i;
  }
  EXPECT_EQ(gathered_labels, (std::vector<int32_t>{9, 7}));
  EXPECT_THROW(bnlab::data::copy_examples(d, 2, 2, all.data()), Error);
  EXPECT_THROW(bnlab::data::copy_examples(d, -1, 1, all.data()), Error);
  EXPECT_EQ(d.labels, (std::vector<int32_t>{7, 0, 9}));
  const Dataset first = bnlab::data::head(d, 2);
  EXPECT_EQ(first.pixels, std::vector<uint8_t>(pixels.begin(), pixels.begin() + 16));
}

TEST_F(IdxTest, EveryPixelValueMatchesFloat32DivisionBy255) {
  // torchvision's ToTensor divides a float32 tensor by 255 in float32; both
  // that and the float64 reference rounded once must agree with the reader.
  std::vector<uint8_t> pixels(256);
  for (int i = 0; i < 256; ++i) pixels[static_cast<size_t>(i)] = static_cast<uint8_t>(i);
  const Dataset d = bnlab::data::read_idx(write_plain("img", images_bytes(1, 16, 16, pixels)),
                                          write_plain("lbl", labels_bytes(1, {3})));
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(d.value(i), static_cast<float>(i) / 255.0f) << i;
    EXPECT_EQ(d.value(i), reference_pixel(static_cast<uint8_t>(i))) << i;
    EXPECT_EQ(bnlab::data::pixel_value(static_cast<uint8_t>(i)), d.value(i)) << i;
  }
  EXPECT_EQ(d.value(0), 0.0f);
  EXPECT_EQ(d.value(255), 1.0f);
}

TEST_F(IdxTest, GzipAndPlainFilesGiveTheSameDataset) {
  const auto pixels = sample_pixels(5 * 3 * 3);
  const std::vector<uint8_t> labels = {1, 2, 3, 4, 5};
  const Dataset plain = bnlab::data::read_idx(write_plain("img", images_bytes(5, 3, 3, pixels)),
                                              write_plain("lbl", labels_bytes(5, labels)));
  const Dataset gzip = bnlab::data::read_idx(write_gzip("img.gz", images_bytes(5, 3, 3, pixels)),
                                             write_gzip("lbl.gz", labels_bytes(5, labels)));
  EXPECT_EQ(plain.count, gzip.count);
  EXPECT_EQ(plain.pixels, gzip.pixels);
  EXPECT_EQ(plain.labels, gzip.labels);
}

TEST_F(IdxTest, GzipIsDetectedByContentNotByName) {
  const auto pixels = sample_pixels(2 * 2 * 2);
  const Dataset d = bnlab::data::read_idx(write_gzip("img", images_bytes(2, 2, 2, pixels)),
                                          write_plain("lbl.gz", labels_bytes(2, {0, 1})));
  EXPECT_EQ(d.count, 2);
  EXPECT_EQ(d.labels, (std::vector<int32_t>{0, 1}));
}

TEST_F(IdxTest, MissingFileIsNamed) {
  const std::string labels = write_plain("lbl", labels_bytes(1, {0}));
  expect_io_error(path("no-such-images"), labels, {"no-such-images", "cannot open"});
}

TEST_F(IdxTest, FileShorterThanHeaderIsTruncated) {
  const std::string labels = write_plain("lbl", labels_bytes(1, {0}));
  expect_io_error(write_plain("img", {0, 0, 8, 3, 0, 0}), labels, {"img", "truncated"});
  expect_io_error(write_plain("empty", {}), labels, {"empty", "truncated"});
}

TEST_F(IdxTest, TruncatedPixelsAreAnError) {
  auto bytes = images_bytes(4, 2, 2, sample_pixels(16));
  bytes.resize(bytes.size() - 3);
  const std::string labels = write_plain("lbl", labels_bytes(4, {0, 1, 2, 3}));
  expect_io_error(write_plain("img", bytes), labels, {"img", "truncated", "4 items"});
  expect_io_error(write_gzip("img.gz", bytes), labels, {"img.gz", "truncated"});
}

TEST_F(IdxTest, TruncatedGzipStreamIsAnError) {
  // A gzip file cut in the middle of its deflate stream.
  const std::string whole = write_gzip("whole.gz", images_bytes(50, 20, 20, sample_pixels(20000)));
  std::vector<char> compressed(fs::file_size(whole));
  std::ifstream(whole, std::ios::binary)
      .read(compressed.data(), static_cast<std::streamsize>(compressed.size()));
  compressed.resize(compressed.size() / 2);
  std::vector<uint8_t> cut(compressed.begin(), compressed.end());
  std::vector<uint8_t> labels(50, 1);
  expect_io_error(write_plain("cut.gz", cut), write_plain("lbl", labels_bytes(50, labels)),
                  {"cut.gz", "truncated"});
}

TEST_F(IdxTest, GzipMissingItsLastBytesIsTruncatedNotTooLong) {
  // Cut inside the 8-byte trailer (CRC-32, size) or the last deflate block,
  // the stream used to read as more data than the header accounts for.
  for (const int count : {3, 50}) {  // zlib's path (small) and libdeflate's (whole)
    const auto bytes = images_bytes(static_cast<uint32_t>(count), 20, 20, sample_pixels(400 * count));
    const std::string whole = write_gzip("whole.gz", bytes);
    std::vector<char> compressed(fs::file_size(whole));
    std::ifstream(whole, std::ios::binary)
        .read(compressed.data(), static_cast<std::streamsize>(compressed.size()));
    const std::string labels =
        write_plain("lbl", labels_bytes(static_cast<uint32_t>(count), std::vector<uint8_t>(count, 1)));
    for (const size_t missing : {1, 4, 7, 8, 9, 12, 20}) {
      SCOPED_TRACE("count " + std::to_string(count) + ", missing " + std::to_string(missing));
      const std::vector<uint8_t> cut(compressed.begin(), compressed.end() - static_cast<long>(missing));
      expect_io_error(write_plain("cut.gz", cut), labels, {"cut.gz", "truncated"});
    }
  }
}

TEST_F(IdxTest, FilesThatAreNotRegularAreRefusedAtOnce) {
  // A FIFO would block a reader's open() until a writer came.
  const std::string labels = write_plain("lbl", labels_bytes(1, {0}));
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0644), 0);
  expect_io_error(path("fifo"), labels, {"fifo", "is a FIFO, not a regular file"});
  fs::create_directory(path("folder"));
  expect_io_error(path("folder"), labels, {"folder", "is a directory, not a regular file"});
  expect_io_error("/dev/null", labels, {"/dev/null", "is a character device"});
}

TEST_F(IdxTest, WrongMagicIsAnError) {
  const auto pixels = sample_pixels(4);
  const std::string images = write_plain("img", images_bytes(1, 2, 2, pixels));
  const std::string labels = write_plain("lbl", labels_bytes(1, {0}));
  // Files swapped: labels where images belong.
  expect_io_error(labels, images, {"lbl", "wrong magic", "0x00000801"});
  expect_io_error(write_plain("float-img", images_bytes(1, 2, 2, pixels, 0x00000d03)), labels,
                  {"float-img", "wrong magic"});
}

TEST_F(IdxTest, HeaderClaimingMoreItemsThanTheFileHoldsIsRefusedWithoutAllocating) {
  const std::string labels = write_plain("lbl", labels_bytes(1, {0}));
  // 4 billion images of 28x28: refused before any read of that size.
  expect_io_error(write_plain("huge", images_bytes(0xffffffffu, 28, 28, sample_pixels(784))),
                  labels, {"huge", "header claims"});
  // 1 million images of 28x28 (784 MB): within the limit, but the file holds one.
  expect_io_error(write_plain("big", images_bytes(1000000, 28, 28, sample_pixels(784))), labels,
                  {"big", "truncated", "1000000 items"});
  expect_io_error(write_gzip("big.gz", images_bytes(1000000, 28, 28, sample_pixels(784))), labels,
                  {"big.gz", "truncated", "1000000 items"});
  const std::string images = write_plain("img", images_bytes(1, 2, 2, sample_pixels(4)));
  expect_io_error(images, write_plain("lbl-huge", labels_bytes(0x0ffffff0u, {0})),
                  {"lbl-huge", "truncated"});
}

TEST_F(IdxTest, DataPastTheDeclaredItemsIsAnError) {
  const std::string labels = write_plain("lbl", labels_bytes(1, {0}));
  expect_io_error(write_plain("img", images_bytes(1, 2, 2, sample_pixels(5))), labels,
                  {"img", "more data"});
}

// Content of 4 KiB or more is inflated whole by libdeflate (smaller content
// and every header go through zlib): the same bytes as the plain file, with
// concatenated gzip members read in order and bytes after the last member
// ignored, as gzip and zlib do.
TEST_F(IdxTest, LargeGzipFilesReadWholeMatchThePlainFile) {
  const auto pixels = sample_pixels(10 * 28 * 28);
  std::vector<uint8_t> labels(10);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<uint8_t>(i);
  const std::vector<uint8_t> bytes = images_bytes(10, 28, 28, pixels);
  const std::string lbl = write_plain("lbl", labels_bytes(10, labels));
  const Dataset plain = bnlab::data::read_idx(write_plain("img", bytes), lbl);
  const Dataset one = bnlab::data::read_idx(write_gzip("img.gz", bytes), lbl);
  EXPECT_EQ(one.pixels, plain.pixels);
  EXPECT_EQ(one.pixels, pixels);

  // Two members (the bytes split at 3000) and trailing zeros.
  const auto file_bytes = [&](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(f), {});
  };
  std::vector<char> joined = file_bytes(write_gzip("a.gz", {bytes.begin(), bytes.begin() + 3000}));
  const std::vector<char> second = file_bytes(write_gzip("b.gz", {bytes.begin() + 3000, bytes.end()}));
  joined.insert(joined.end(), second.begin(), second.end());
  joined.insert(joined.end(), 16, '\0');
  const Dataset two = bnlab::data::read_idx(write_plain("two.gz", {joined.begin(), joined.end()}), lbl);
  EXPECT_EQ(two.pixels, pixels);

  // More content than the header's items, through the same path.
  std::vector<uint8_t> longer = bytes;
  longer.insert(longer.end(), 100, 7);
  expect_io_error(write_gzip("long.gz", longer), lbl, {"long.gz", "more data"});
  // Corrupt deflate data in the middle of a large member.
  std::vector<char> bad = file_bytes(path("img.gz"));
  for (size_t i = bad.size() / 3; i < bad.size() / 3 + 64; ++i) bad[i] = static_cast<char>(0xff);
  expect_io_error(write_plain("bad.gz", {bad.begin(), bad.end()}), lbl, {"bad.gz", "corrupt"});
}

TEST_F(IdxTest, ZeroDimensionsAreAnError) {
  const std::string labels = write_plain("lbl", labels_bytes(1, {0}));
  expect_io_error(write_plain("rows0", images_bytes(1, 0, 28, {})), labels, {"rows0", "zero"});
  expect_io_error(write_plain("count0", images_bytes(0, 28, 28, {})),
                  write_plain("lbl0", labels_bytes(0, {})), {"count0", "zero"});
}

TEST_F(IdxTest, LabelOutOfRangeIsAnError) {
  const std::string images = write_plain("img", images_bytes(3, 1, 1, {0, 1, 2}));
  expect_io_error(images, write_plain("lbl", labels_bytes(3, {0, 10, 1})),
                  {"lbl", "label 10", "item 1", "out of range"});
}

TEST_F(IdxTest, ImageAndLabelCountsMustAgree) {
  const std::string images = write_plain("img", images_bytes(3, 1, 1, {0, 1, 2}));
  expect_io_error(images, write_plain("lbl", labels_bytes(2, {0, 1})),
                  {"3 images", "2 labels", "img", "lbl"});
}

TEST_F(IdxTest, LoadSplitReadsPlainAndGzipFileNames) {
  write_gzip("train-images-idx3-ubyte.gz", images_bytes(4, 2, 2, sample_pixels(16)));
  write_plain("train-labels-idx1-ubyte", labels_bytes(4, {0, 1, 2, 3}));
  write_plain("t10k-images-idx3-ubyte", images_bytes(2, 2, 2, sample_pixels(8)));
  write_gzip("t10k-labels-idx1-ubyte.gz", labels_bytes(2, {9, 8}));
  const auto split = bnlab::data::load_split(dir_.string());
  EXPECT_EQ(split.train.count, 4);
  EXPECT_EQ(split.test.count, 2);
  EXPECT_EQ(split.test.labels, (std::vector<int32_t>{9, 8}));
}

// The package is named for the default folder only (issue 13): another
// folder is named with the files it must hold.
TEST_F(IdxTest, LoadSplitNamesTheFolderTheFileAndTheFlagWhenDataIsMissing) {
  for (const std::string& dir : {path("absent"), dir_.string()}) {
    for (bool test_only : {false, true}) {
      try {
        if (test_only)
          bnlab::data::load_test_split(dir);
        else
          bnlab::data::load_split(dir);
        ADD_FAILURE() << "no error for " << dir;
      } catch (const Error& e) {
        const std::string message = e.what();
        EXPECT_EQ(e.code(), ErrorCode::io);
        EXPECT_EQ(message.find("dataset-fashion-mnist"), std::string::npos) << message;
        EXPECT_NE(message.find("--data"), std::string::npos) << message;
        EXPECT_NE(message.find("data folder " + dir), std::string::npos) << message;
        EXPECT_NE(message.find("t10k-images-idx3-ubyte"), std::string::npos) << message;
      }
    }
  }
  const std::string hint = bnlab::data::missing_data_advice(bnlab::data::default_data_dir());
  EXPECT_NE(hint.find("dataset-fashion-mnist"), std::string::npos) << hint;
  EXPECT_NE(hint.find("--data DIR"), std::string::npos) << hint;
}

TEST_F(IdxTest, LoadTestSplitReadsNoTrainingFile) {
  write_plain("t10k-images-idx3-ubyte", images_bytes(2, 2, 2, sample_pixels(8)));
  write_plain("t10k-labels-idx1-ubyte", labels_bytes(2, {9, 8}));
  const auto test = bnlab::data::load_test_split(dir_.string());
  EXPECT_EQ(test.count, 2);
  EXPECT_EQ(test.labels, (std::vector<int32_t>{9, 8}));
}

TEST(DataTest, DefaultDataDirIsDebiansFashionMnist) {
  EXPECT_EQ(bnlab::data::default_data_dir(), "/usr/share/datasets/fashion-mnist");
}

Dataset small_dataset(int64_t count) {
  Dataset d;
  d.count = count;
  d.rows = 2;
  d.cols = 3;
  for (int64_t i = 0; i < count * 6; ++i) d.images.push_back(static_cast<float>(i));
  for (int64_t i = 0; i < count; ++i) d.labels.push_back(static_cast<int32_t>(i % 10));
  return d;
}

TEST(DataTest, HeadKeepsTheFirstExamples) {
  const Dataset d = small_dataset(5);
  const Dataset first = bnlab::data::head(d, 2);
  EXPECT_EQ(first.count, 2);
  EXPECT_EQ(first.rows, 2);
  EXPECT_EQ(first.images, std::vector<float>(d.images.begin(), d.images.begin() + 12));
  EXPECT_EQ(first.labels, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(bnlab::data::head(d, 100).count, 5);
  EXPECT_THROW(bnlab::data::head(d, -1), Error);
}

TEST(DataTest, ShuffledIndicesArePermutationsFixedBySeed) {
  const auto a = bnlab::data::shuffled_indices(1000, 42);
  const auto b = bnlab::data::shuffled_indices(1000, 42);
  const auto c = bnlab::data::shuffled_indices(1000, 43);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) EXPECT_EQ(sorted[static_cast<size_t>(i)], i);
  EXPECT_TRUE(bnlab::data::shuffled_indices(0, 1).empty());
  EXPECT_EQ(bnlab::data::shuffled_indices(1, 1), (std::vector<int64_t>{0}));
  EXPECT_THROW(bnlab::data::shuffled_indices(-1, 1), Error);
}

// The documented algorithm written out again: splitmix64, rejection below
// 2^64 mod bound, Fisher-Yates from the last position down.
std::vector<int64_t> reference_shuffle(int64_t count, uint64_t seed) {
  std::vector<int64_t> order(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) order[static_cast<size_t>(i)] = i;
  uint64_t state = seed;
  auto next = [&state] {
    state += 0x9e3779b97f4a7c15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  for (int64_t i = count - 1; i >= 1; --i) {
    const uint64_t bound = static_cast<uint64_t>(i) + 1;
    const uint64_t threshold = (~bound + 1) % bound;
    uint64_t r = next();
    while (r < threshold) r = next();
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(r % bound)]);
  }
  return order;
}

TEST(DataTest, ShuffledIndicesFollowTheDocumentedAlgorithm) {
  EXPECT_EQ(bnlab::data::shuffled_indices(257, 7), reference_shuffle(257, 7));
  // Pinned from an independent Python port of the same algorithm (integers
  // masked to 64 bits), so a Python training script can draw the same batches.
  EXPECT_EQ(bnlab::data::shuffled_indices(8, 0), (std::vector<int64_t>{2, 5, 0, 3, 4, 6, 1, 7}));
}

TEST(DataTest, GatherBatchCopiesExamplesInOrder) {
  const Dataset d = small_dataset(4);
  const std::vector<int64_t> order = {3, 0, 2, 1};
  std::vector<float> images(2 * 6, -1.0f);
  std::vector<int32_t> labels(2, -1);
  bnlab::data::gather_batch(d, order, 1, 2, images.data(), labels.data());
  // order[1] = 0, order[2] = 2
  for (int k = 0; k < 6; ++k) {
    EXPECT_EQ(images[static_cast<size_t>(k)], static_cast<float>(0 * 6 + k));
    EXPECT_EQ(images[static_cast<size_t>(6 + k)], static_cast<float>(2 * 6 + k));
  }
  EXPECT_EQ(labels, (std::vector<int32_t>{0, 2}));
}

TEST(DataTest, GatherBatchChecksRanges) {
  const Dataset d = small_dataset(4);
  std::vector<float> images(4 * 6);
  std::vector<int32_t> labels(4);
  const std::vector<int64_t> order = {3, 0, 2, 1};
  EXPECT_THROW(bnlab::data::gather_batch(d, order, 3, 2, images.data(), labels.data()), Error);
  EXPECT_THROW(bnlab::data::gather_batch(d, order, -1, 1, images.data(), labels.data()), Error);
  const std::vector<int64_t> bad = {0, 4};
  EXPECT_THROW(bnlab::data::gather_batch(d, bad, 0, 2, images.data(), labels.data()), Error);
}

TEST(DataTest, ReadsFashionMnistWhenInstalled) {
  const std::string dir = bnlab::data::default_data_dir();
  if (!fs::exists(dir + "/train-images-idx3-ubyte.gz") &&
      !fs::exists(dir + "/train-images-idx3-ubyte"))
    GTEST_SKIP() << "Fashion-MNIST not installed in " << dir;
  const auto start = std::chrono::steady_clock::now();
  const auto split = bnlab::data::load_split(dir);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("load_split(%s): %.3f s (not asserted)\n", dir.c_str(), seconds);
  EXPECT_EQ(split.train.count, 60000);
  EXPECT_EQ(split.test.count, 10000);
  for (const Dataset* d : {&split.train, &split.test}) {
    EXPECT_EQ(d->rows, 28);
    EXPECT_EQ(d->cols, 28);
    EXPECT_EQ(d->pixels.size(), static_cast<size_t>(d->count * 784));
    std::vector<int64_t> per_class(10, 0);
    for (int32_t label : d->labels) {
      ASSERT_GE(label, 0);
      ASSERT_LT(label, 10);
      ++per_class[static_cast<size_t>(label)];
    }
    // Fashion-MNIST is balanced: 6000 / 1000 of each class.
    for (int64_t n : per_class) EXPECT_EQ(n, d->count / 10);
    const auto [lo, hi] = std::minmax_element(d->pixels.begin(), d->pixels.end());
    EXPECT_EQ(bnlab::data::pixel_value(*lo), 0.0f);
    EXPECT_EQ(bnlab::data::pixel_value(*hi), 1.0f);
  }
}

}  // namespace
