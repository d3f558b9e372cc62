// The IDX reader (MNIST's format: http://yann.lecun.com/exdb/mnist/), plain or
// gzip. The pixels stay u8; batches.cpp converts them to floats exactly like
// torchvision's ToTensor().
//
// An IDX file is a big-endian header followed by the raw items:
//   images: u32 magic 0x00000803, u32 N, u32 rows, u32 cols, then N*rows*cols u8
//   labels: u32 magic 0x00000801, u32 N, then N u8
// The reader never sizes a buffer from the header alone: a plain file's size is
// checked against the header first, and a gzip file is inflated (its header in
// chunks through zlib, then the whole through libdeflate) never past the
// header's size plus one byte, into a buffer no larger than what its
// compressed size can possibly expand to.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <libdeflate.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bnlab/data/idx.hpp"
#include "bnlab/error.hpp"
#include "bnlab/io/regular_file.hpp"

namespace bnlab::data {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // u8 items, 3 dimensions (N, rows, cols)
constexpr uint32_t kLabelsMagic = 0x00000801;  // u8 items, 1 dimension (N)
constexpr int64_t kImagesHeaderBytes = 16;
constexpr int64_t kLabelsHeaderBytes = 8;
// Deflate cannot expand data by more than about 1032:1 (RFC 1951, a 258-byte
// match per 2-bit code at best), so compressed_size * 1032 bounds the output.
constexpr int64_t kMaxDeflateRatio = 1032;
constexpr size_t kGzipChunkBytes = size_t{1} << 20;
// Reads of at least this much gzip content go through libdeflate in one call.
constexpr int64_t kWholeInflateBytes = 4096;

Error io_error(const std::string& path, const std::string& what) {
  return Error(ErrorCode::io, path + ": " + what);
}

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

// Reserves n elements and asks Linux to back the untouched allocation with
// 2 MiB pages, so a large data set faults in a few pages instead of many. Only
// advice: where it is refused nothing changes.
template <typename T>
void reserve_with_huge_pages(std::vector<T>& v, size_t n) {
  v.reserve(n);
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t kHugePage = uintptr_t{1} << 21;
  const auto begin = reinterpret_cast<uintptr_t>(v.data());
  const uintptr_t end = begin + n * sizeof(T);
  const uintptr_t aligned_begin = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t aligned_end = end & ~(kHugePage - 1);
  if (v.empty() && aligned_end > aligned_begin)
    ::madvise(reinterpret_cast<void*>(aligned_begin), aligned_end - aligned_begin, MADV_HUGEPAGE);
#endif
}

bool is_gzip_file(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) throw io_error(path, std::string("cannot open: ") + std::strerror(errno));
  unsigned char magic[2] = {0, 0};
  const size_t got = std::fread(magic, 1, 2, file.get());
  return got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

int64_t file_size(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw io_error(path, std::string("cannot open: ") + std::strerror(errno));
  // stat, not open: a FIFO is refused without waiting for a writer.
  if (!S_ISREG(st.st_mode))
    throw io_error(path, std::string("is ") + io::file_kind(st.st_mode) + ", not a regular file");
  return static_cast<int64_t>(st.st_size);
}

// A whole file mapped read-only (the page cache's pages, nothing copied). A
// file cut short by another process while mapped would fault on access; data
// sets are not written while they are read.
class MappedFile {
 public:
  MappedFile(const std::string& path, int64_t size) : size_(static_cast<size_t>(size)) {
    if (size_ == 0) return;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw io_error(path, std::string("cannot open: ") + std::strerror(errno));
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) throw io_error(path, std::string("cannot map: ") + std::strerror(errno));
    data_ = static_cast<const uint8_t*>(p);
  }
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// The gzip file's whole content in one call of libdeflate (about 3x zlib's
// speed: docs/toolkit.md, Data loading), into a buffer of at most `bound`
// bytes. Concatenated members are read one after another, as gzip does; bytes after the last member that do not
// start another are ignored, as zlib's gzread ignores them. A stream that
// overflows the buffer returns false when bound is the caller's limit plus one
// (too long, or truncated: libdeflate decodes past a cut end as if zeros
// followed, so the caller asks zlib which); past the deflate ratio's bound it
// is corrupt.
bool inflate_whole(const std::string& path, int64_t stored_bytes, int64_t bound,
                   bool bound_is_limit, std::vector<uint8_t>& content) {
  // The compressed bytes are mapped, not read: no buffer to fault in and fill.
  const MappedFile compressed(path, stored_bytes);
  content.clear();
  reserve_with_huge_pages(content, static_cast<size_t>(bound));
  content.resize(static_cast<size_t>(bound));
  std::unique_ptr<libdeflate_decompressor, void (*)(libdeflate_decompressor*)> inflater(
      libdeflate_alloc_decompressor(), libdeflate_free_decompressor);
  if (!inflater) throw io_error(path, "out of memory for the gzip decompressor");
  size_t in_at = 0, out_at = 0;
  const uint8_t* in = compressed.data();
  const size_t in_size = compressed.size();
  while (in_at + 1 < in_size && in[in_at] == 0x1f && in[in_at + 1] == 0x8b) {
    size_t in_used = 0, out_written = 0;
    const libdeflate_result r = libdeflate_gzip_decompress_ex(
        inflater.get(), in + in_at, in_size - in_at,
        content.data() + out_at, content.size() - out_at, &in_used, &out_written);
    if (r == LIBDEFLATE_INSUFFICIENT_SPACE && bound_is_limit) return false;  // too long or cut
    if (r != LIBDEFLATE_SUCCESS) throw io_error(path, "corrupt or truncated gzip data");
    in_at += in_used;
    out_at += out_written;
  }
  content.resize(out_at);
  return true;
}

// The whole (decompressed) content of a file, but never more than max_bytes + 1
// bytes: one byte past the limit is enough to tell that the file is too long.
// A gzip file is inflated in chunks through zlib when only a little is wanted
// (the header), else whole through libdeflate, and through zlib again when
// libdeflate finds more than max_bytes (to tell too long from cut short).
std::vector<uint8_t> read_content(const std::string& path, int64_t max_bytes) {
  const int64_t stored_bytes = file_size(path);
  std::vector<uint8_t> content;
  const bool gzip = is_gzip_file(path);
  if (gzip && max_bytes >= kWholeInflateBytes) {
    // Deflate expands nothing by more than a fraction of a percent, so a
    // compressed file much larger than the content wanted holds more than
    // that (or is not worth reading into memory to find out).
    if (stored_bytes > max_bytes + max_bytes / 64 + (int64_t{1} << 20))
      throw io_error(path, "the gzip file (" + std::to_string(stored_bytes) +
                               " bytes) is larger than the " + std::to_string(max_bytes) +
                               " bytes of content expected could compress to");
    const int64_t bound = std::min(max_bytes + 1, stored_bytes * kMaxDeflateRatio);
    if (inflate_whole(path, stored_bytes, bound, bound == max_bytes + 1, content)) return content;
    // Past the limit: zlib, which stops at a cut end, tells a stream that is
    // really too long from one that is truncated (the rare, failing case).
    content = std::vector<uint8_t>();
  }
  if (!gzip) {
    // Plain: one read of the whole file, whose real size is known.
    const int64_t want = std::min(stored_bytes, max_bytes + 1);
    reserve_with_huge_pages(content, static_cast<size_t>(want));
    content.resize(static_cast<size_t>(want));
    std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
    if (!file) throw io_error(path, std::string("cannot open: ") + std::strerror(errno));
    const size_t got = std::fread(content.data(), 1, content.size(), file.get());
    if (got != content.size()) throw io_error(path, "read failed");
    return content;
  }
  // Gzip: inflate in chunks into a buffer reserved up to what the compressed
  // size allows (so a lying header cannot make it allocate more).
  const int64_t bound = std::min(max_bytes + 1, stored_bytes * kMaxDeflateRatio);
  reserve_with_huge_pages(content, static_cast<size_t>(bound));
  std::unique_ptr<gzFile_s, GzCloser> gz(gzopen(path.c_str(), "rb"));
  if (!gz) throw io_error(path, "cannot open");
  gzbuffer(gz.get(), 256 * 1024);
  while (static_cast<int64_t>(content.size()) < max_bytes + 1) {
    const size_t offset = content.size();
    const size_t want =
        std::min<size_t>(kGzipChunkBytes, static_cast<size_t>(max_bytes + 1 - offset));
    content.resize(offset + want);
    const int got = gzread(gz.get(), content.data() + offset, static_cast<unsigned>(want));
    if (got < 0) {
      int code = 0;
      const char* message = gzerror(gz.get(), &code);
      throw io_error(path, std::string("corrupt or truncated gzip data: ") + message);
    }
    content.resize(offset + static_cast<size_t>(got));
    if (static_cast<size_t>(got) < want) {
      // gzread returns short at the end of the stream and also when the
      // compressed data stops early; only the former leaves no error behind.
      int code = 0;
      const char* message = gzerror(gz.get(), &code);
      if (code != Z_OK && code != Z_STREAM_END)
        throw io_error(path, std::string("corrupt or truncated gzip data: ") + message);
      if (!gzeof(gz.get()))
        throw io_error(path, "corrupt or truncated gzip data (stream ended early)");
      break;
    }
  }
  return content;
}

// The largest IDX content read at all (1 GiB of pixels: 20 times Fashion-MNIST's
// training set); a header that claims more is refused before anything is read.
constexpr int64_t kMaxContentBytes = int64_t{1} << 30;

// Reads an IDX file and checks its header against what the file really holds.
// dims receives the header's dimension sizes (after the magic).
std::vector<uint8_t> read_idx_file(const std::string& path, uint32_t magic, int num_dims,
                                   std::vector<int64_t>& dims) {
  const int64_t header_bytes = 4 + 4 * int64_t{num_dims};
  // Read the header first (a few bytes) to learn how much data should follow.
  std::vector<uint8_t> header = read_content(path, header_bytes);
  const auto truncated_header = [&] {
    return io_error(path, "truncated: " + std::to_string(header.size()) +
                              " bytes, shorter than the " + std::to_string(header_bytes) +
                              "-byte IDX header");
  };
  if (header.size() < 4) throw truncated_header();
  // The magic first: a labels file passed as images is named as such.
  const uint32_t found_magic = read_be32(header.data());
  if (found_magic != magic) {
    char text[96];
    std::snprintf(text, sizeof text, "wrong magic number 0x%08x (expected 0x%08x for %s)",
                  found_magic, magic, magic == kImagesMagic ? "u8 images" : "u8 labels");
    throw io_error(path, text);
  }
  if (static_cast<int64_t>(header.size()) < header_bytes) throw truncated_header();
  dims.assign(static_cast<size_t>(num_dims), 0);
  int64_t items = 1;
  for (int d = 0; d < num_dims; ++d) {
    dims[static_cast<size_t>(d)] = read_be32(header.data() + 4 + 4 * d);
    if (dims[static_cast<size_t>(d)] == 0)
      throw io_error(path, "dimension " + std::to_string(d) + " of the header is zero");
    items *= dims[static_cast<size_t>(d)];  // at most 3 * 32 bits: check before it can overflow
    if (items > kMaxContentBytes)
      throw io_error(path, "header claims " + std::to_string(items) +
                               "+ bytes of items, more than the reader's limit of " +
                               std::to_string(kMaxContentBytes));
  }
  const int64_t expected_bytes = header_bytes + items;
  std::vector<uint8_t> content = read_content(path, expected_bytes);
  const int64_t found_bytes = static_cast<int64_t>(content.size());
  if (found_bytes < expected_bytes)
    throw io_error(path, "truncated: the header claims " + std::to_string(dims[0]) + " items (" +
                             std::to_string(expected_bytes) + " bytes) but the data holds " +
                             std::to_string(found_bytes) + " bytes");
  if (found_bytes > expected_bytes)
    throw io_error(path, "more data than the header's " + std::to_string(dims[0]) +
                             " items account for (" + std::to_string(expected_bytes) +
                             " bytes expected)");
  return content;
}

}  // namespace

std::string default_data_dir() { return "/usr/share/datasets/fashion-mnist"; }

/* pixels = the image bytes, labels[i] = label byte, checked < 10.
   Each file is read once into memory (inflated if gzip). */
Dataset read_idx(const std::string& images_path, const std::string& labels_path) {
  std::vector<int64_t> image_dims, label_dims;
  std::vector<uint8_t> image_bytes = read_idx_file(images_path, kImagesMagic, 3, image_dims);
  const std::vector<uint8_t> label_bytes = read_idx_file(labels_path, kLabelsMagic, 1, label_dims);
  if (image_dims[0] != label_dims[0])
    throw Error(ErrorCode::io, images_path + " holds " + std::to_string(image_dims[0]) +
                                   " images but " + labels_path + " holds " +
                                   std::to_string(label_dims[0]) + " labels");
  Dataset d;
  d.count = image_dims[0];
  d.channels = 1;
  d.rows = image_dims[1];
  d.cols = image_dims[2];
  d.num_classes = 10;

  d.labels.resize(static_cast<size_t>(d.count));
  const uint8_t* label_data = label_bytes.data() + kLabelsHeaderBytes;
  for (int64_t i = 0; i < d.count; ++i) {
    if (label_data[i] >= d.num_classes)
      throw io_error(labels_path, "label " + std::to_string(label_data[i]) + " of item " +
                                      std::to_string(i) + " is out of range [0, " +
                                      std::to_string(d.num_classes) + ")");
    d.labels[static_cast<size_t>(i)] = label_data[i];
  }

  // The pixels stay u8; batches convert them (Dataset's comment says why).
  // The file's buffer becomes the pixels: the header shifted out in place.
  image_bytes.erase(image_bytes.begin(), image_bytes.begin() + kImagesHeaderBytes);
  d.pixels = std::move(image_bytes);
  return d;
}

}  // namespace bnlab::data
