// libFuzzer target: bnlab::data::read_idx on an images file and a labels
// file cut from the input, each plain, gzip-compressed here, or gzip with its
// last bytes cut. Layout of the input:
//   byte 0: bit 0 gzip the images, bit 1 gzip the labels, bits 4-7 bytes cut
//           from the end of the compressed images
//   byte 1: the labels file's length (the first bytes after byte 1)
//   rest:   labels, then images
// A data set it reads must be consistent; anything else must be a bnlab::Error.
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "bnlab/data/idx.hpp"
#include "bnlab/error.hpp"
#include "fuzz_scratch.hpp"

namespace {

std::vector<uint8_t> gzip(const uint8_t* data, size_t size) {
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::vector<uint8_t> out(deflateBound(&z, size) + 32);
  z.next_in = const_cast<uint8_t*>(data);
  z.avail_in = static_cast<uInt>(size);
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  const size_t labels_size = std::min<size_t>(data[1], size - 2);
  const uint8_t* labels = data + 2;
  const uint8_t* images = labels + labels_size;
  const size_t images_size = size - 2 - labels_size;

  std::vector<uint8_t> images_file(images, images + images_size);
  if (mode & 1) {
    images_file = gzip(images, images_size);
    const size_t cut = std::min<size_t>(mode >> 4, images_file.size());
    images_file.resize(images_file.size() - cut);
  }
  std::vector<uint8_t> labels_file(labels, labels + labels_size);
  if (mode & 2) labels_file = gzip(labels, labels_size);

  const std::string images_path =
      bnlab::fuzz::write_scratch("images", images_file.data(), images_file.size());
  const std::string labels_path =
      bnlab::fuzz::write_scratch("labels", labels_file.data(), labels_file.size());
  try {
    const bnlab::data::Dataset d = bnlab::data::read_idx(images_path, labels_path);
    if (d.count <= 0 || d.rows <= 0 || d.cols <= 0 ||
        d.pixels.size() != static_cast<size_t>(d.count * d.example_size()) ||
        d.labels.size() != static_cast<size_t>(d.count))
      std::abort();
    for (const int32_t label : d.labels)
      if (label < 0 || label >= d.num_classes) std::abort();
  } catch (const bnlab::Error&) {
  }
  return 0;
}
