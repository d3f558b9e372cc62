// Safetensors read and write (format: https://github.com/huggingface/safetensors).
//
//   u64 (little-endian)  header length n
//   n bytes              JSON object: {"__metadata__": {str: str},
//                          "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
//   data area            raw little-endian tensors; [b, e) is relative to the area's start
//
// The reader checks everything the header claims against the file before it
// trusts it: the offsets must tile the data area exactly (no gap, no overlap,
// nothing past the end), as the reference implementation requires.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "bnlab/error.hpp"
#include "bnlab/io/safetensors.hpp"
#include "bnlab/io/atomic_file.hpp"
#include "bnlab/io/regular_file.hpp"

namespace bnlab::io {
namespace {

using Json = nlohmann::ordered_json;  // keeps the header's key order

// The reference implementation refuses headers over 100 MB.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

constexpr DType kAllDTypes[] = {DType::F32, DType::F64, DType::F16, DType::BF16, DType::I64,
                                DType::I32, DType::I16, DType::I8,  DType::U8,   DType::BOOL};

// The rank of each dtype in the reference implementation's Dtype enum, which
// is ordered by alignment; its writer lays tensors out by descending rank, then
// by name, so every tensor starts aligned for its dtype.
int reference_rank(DType dtype) {
  switch (dtype) {
    case DType::BOOL:
      return 0;
    case DType::U8:
      return 1;
    case DType::I8:
      return 2;
    case DType::I16:
      return 5;
    case DType::F16:
      return 7;
    case DType::BF16:
      return 8;
    case DType::I32:
      return 9;
    case DType::F32:
      return 11;
    case DType::F64:
      return 12;
    case DType::I64:
      return 13;
  }
  return 0;
}

Error io_error(const std::string& path, const std::string& what) {
  return Error(ErrorCode::io, path + ": " + what);
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// numel * element_size, or -1 if a dimension is negative or the product
// overflows int64.
int64_t checked_byte_count(const std::vector<int64_t>& shape, int64_t element_size) {
  int64_t count = element_size;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d != 0 && count > std::numeric_limits<int64_t>::max() / d) return -1;
    count *= d;
  }
  return count;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// A non-negative JSON integer that fits int64, or an error naming where it is.
int64_t non_negative_integer(const Json& value, const std::string& path, const std::string& where) {
  if (value.is_number_unsigned()) {
    const auto v = value.get<uint64_t>();
    if (v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return static_cast<int64_t>(v);
  } else if (value.is_number_integer()) {
    throw io_error(path, where + " is negative (" + excerpt(value.dump()) + ")");
  }
  throw io_error(path, where + " must be a non-negative integer, got " + excerpt(value.dump()));
}

struct TensorEntry {
  NamedTensor tensor;
  int64_t begin = 0, end = 0;  // data_offsets
};

TensorEntry parse_tensor_entry(const std::string& path, const std::string& name, const Json& info) {
  const std::string where = "tensor '" + excerpt(name) + "'";
  if (!info.is_object()) throw io_error(path, where + ": entry is not a JSON object");
  for (const auto& [field, value] : info.items()) {
    if (field != "dtype" && field != "shape" && field != "data_offsets")
      throw io_error(path, where + ": unexpected field '" + excerpt(field) + "'");
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!info.contains(field)) throw io_error(path, where + ": missing '" + field + "'");
  }
  TensorEntry entry;
  entry.tensor.name = name;

  const Json& dtype = info["dtype"];
  if (!dtype.is_string()) throw io_error(path, where + ": dtype is not a string");
  const std::string dtype_text = dtype.get<std::string>();
  const DType* found = std::find_if(std::begin(kAllDTypes), std::end(kAllDTypes),
                                    [&](DType d) { return dtype_text == dtype_name(d); });
  if (found == std::end(kAllDTypes))
    throw io_error(path, where + ": unknown dtype '" + excerpt(dtype_text) + "'");
  entry.tensor.dtype = *found;

  const Json& shape = info["shape"];
  if (!shape.is_array()) throw io_error(path, where + ": shape is not an array");
  for (size_t i = 0; i < shape.size(); ++i)
    entry.tensor.shape.push_back(
        non_negative_integer(shape[i], path, where + ": shape[" + std::to_string(i) + "]"));

  const Json& offsets = info["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2)
    throw io_error(path, where + ": data_offsets must be an array [begin, end]");
  entry.begin = non_negative_integer(offsets[0], path, where + ": data_offsets[0]");
  entry.end = non_negative_integer(offsets[1], path, where + ": data_offsets[1]");
  if (entry.end < entry.begin)
    throw io_error(path, where + ": data_offsets [" + std::to_string(entry.begin) + ", " +
                             std::to_string(entry.end) + "] end before they begin");

  const int64_t expected = checked_byte_count(entry.tensor.shape, dtype_size(entry.tensor.dtype));
  if (expected < 0)
    throw io_error(path, where + ": shape " + shape_text(entry.tensor.shape) +
                             " has more bytes than int64 can count");
  if (entry.end - entry.begin != expected)
    throw io_error(path, where + ": data_offsets span " + std::to_string(entry.end - entry.begin) +
                             " bytes but " + dtype_text + " " + shape_text(entry.tensor.shape) +
                             " needs " + std::to_string(expected));
  return entry;
}

// The deepest nesting of arrays and objects a header may have. A safetensors
// header needs 3 (header, tensor entry, shape); nlohmann-json parses by
// recursion, and about 70,000 levels overflow the stack.
constexpr int kMaxHeaderDepth = 64;

// Checks what nlohmann-json would accept but the format does not, before the
// parser sees the text: the header starts with '{' (so no byte order mark,
// which nlohmann skips), holds no NUL byte (nlohmann stops at one, so NUL
// padding passed; the format pads with spaces), and nests at most
// kMaxHeaderDepth deep (counted outside strings, in one pass).
void check_header_text(const std::string& path, const std::string& text) {
  if (text.rfind("\xEF\xBB\xBF", 0) == 0)
    throw io_error(path, "the header starts with a UTF-8 byte order mark; it must start with '{'");
  if (text.empty() || text[0] != '{')
    throw io_error(path, "header is not a JSON object: it must start with '{', got '" +
                             excerpt(text.substr(0, 1)) + "'");
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (ch == '\0')
      throw io_error(path, "the header holds a NUL byte at offset " + std::to_string(i) +
                               " (the format pads the header with spaces)");
    if (in_string) {
      if (escaped) escaped = false;
      else if (ch == '\\') escaped = true;
      else if (ch == '"') in_string = false;
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      if (++depth > kMaxHeaderDepth)
        throw io_error(path, "the header nests arrays and objects more than " +
                                 std::to_string(kMaxHeaderDepth) + " levels deep (at offset " +
                                 std::to_string(i) + "); the limit is " +
                                 std::to_string(kMaxHeaderDepth));
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
}

// Parses the header text, refusing a key repeated within one object (JSON
// parsers keep one of them silently; a tensor would vanish).
Json parse_header(const std::string& path, const std::string& text) {
  std::vector<std::set<std::string>> keys_by_depth;
  std::string duplicate;
  const Json::parser_callback_t refuse_duplicates = [&](int depth, Json::parse_event_t event,
                                                        Json& parsed) {
    if (event == Json::parse_event_t::object_start) {
      keys_by_depth.emplace_back();
    } else if (event == Json::parse_event_t::object_end) {
      if (!keys_by_depth.empty()) keys_by_depth.pop_back();
    } else if (event == Json::parse_event_t::key && !keys_by_depth.empty()) {
      const std::string key = parsed.get<std::string>();
      if (!keys_by_depth.back().insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  check_header_text(path, text);
  Json header;
  try {
    header = Json::parse(text, refuse_duplicates);
  } catch (const Json::exception& e) {
    throw io_error(path, "bad JSON header: " + excerpt(e.what(), 200));
  }
  if (!duplicate.empty())
    throw io_error(path, "key '" + excerpt(duplicate) + "' appears twice in the header");
  if (!header.is_object()) throw io_error(path, "header is not a JSON object");
  return header;
}

}  // namespace

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::I64:
      return "I64";
    case DType::I32:
      return "I32";
    case DType::I16:
      return "I16";
    case DType::I8:
      return "I8";
    case DType::U8:
      return "U8";
    case DType::BOOL:
      return "BOOL";
  }
  throw Error("dtype_name: unknown dtype value " + std::to_string(static_cast<int>(dtype)));
}

int64_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F64:
    case DType::I64:
      return 8;
    case DType::F32:
    case DType::I32:
      return 4;
    case DType::F16:
    case DType::BF16:
    case DType::I16:
      return 2;
    case DType::I8:
    case DType::U8:
    case DType::BOOL:
      return 1;
  }
  throw Error("dtype_size: unknown dtype value " + std::to_string(static_cast<int>(dtype)));
}

const NamedTensor* SafetensorsFile::find(const std::string& name) const {
  for (const NamedTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

namespace {

// torch.save's files: a zip archive ("PK\3\4", PyTorch >= 1.6) or a legacy
// pickle (0x80, then the protocol 2 to 5). Asked only when the first 8 bytes
// make no valid header length, so a safetensors file is never mistaken for one.
void check_not_pickle(const std::string& path, const uint8_t (&first)[8]) {
  const bool zip = first[0] == 'P' && first[1] == 'K' && first[2] == 3 && first[3] == 4;
  const bool pickle = first[0] == 0x80 && first[1] >= 2 && first[1] <= 5;
  if (!zip && !pickle) return;
  throw io_error(path, std::string("is a PyTorch pickle (torch.save, ") +
                           (zip ? "zip archive" : "legacy format") +
                           "), not a safetensors file; bnlab does not run pickles. Save the "
                           "state dict as safetensors instead: from safetensors.torch import "
                           "save_file; save_file(model.state_dict(), \"net.safetensors\") (or, "
                           "without the safetensors package, the plain-Python writer in "
                           "docs/pytorch.md)");
}

}  // namespace

/* Reads the header (length, JSON), validates every entry, checks that the
   sorted [begin, end) ranges tile [0, data_size) exactly, then reads each
   tensor's bytes in data order. Memory: the header plus the tensors. */
SafetensorsFile read_safetensors(const std::string& path) {
  // A FIFO is refused at once (a plain fopen would wait for a writer).
  const int fd = open_regular_file(path);
  std::unique_ptr<std::FILE, FileCloser> file(::fdopen(fd, "rb"));
  if (!file) {
    const int error_number = errno;
    ::close(fd);
    throw io_error(path, std::string("cannot open: ") + std::strerror(error_number));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw io_error(path, std::string("cannot stat: ") + std::strerror(errno));
  const auto file_bytes = static_cast<uint64_t>(st.st_size);
  if (file_bytes < 8)
    throw io_error(path, "file has " + std::to_string(file_bytes) +
                             " bytes, shorter than the 8-byte header length");

  uint8_t length_bytes[8];
  if (std::fread(length_bytes, 1, 8, file.get()) != 8) throw io_error(path, "read failed");
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | length_bytes[i];
  if (header_bytes > kMaxHeaderBytes || header_bytes > file_bytes - 8)
    check_not_pickle(path, length_bytes);
  if (header_bytes > kMaxHeaderBytes)
    throw io_error(
        path, "header length " + std::to_string(header_bytes) + " is absurd (the limit is 100 MB)");
  if (header_bytes > file_bytes - 8)
    throw io_error(path, "header length " + std::to_string(header_bytes) +
                             " runs past the end of the file (" + std::to_string(file_bytes) +
                             " bytes)");
  std::string header_text(header_bytes, '\0');
  if (std::fread(header_text.data(), 1, header_bytes, file.get()) != header_bytes)
    throw io_error(path, "read failed");
  const Json header = parse_header(path, header_text);
  const auto data_bytes = static_cast<int64_t>(file_bytes - 8 - header_bytes);

  SafetensorsFile result;
  std::vector<TensorEntry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      if (!value.is_object()) throw io_error(path, "'__metadata__' is not a JSON object");
      for (const auto& [name, text] : value.items()) {
        if (!text.is_string())
          throw io_error(path, "'__metadata__' value of key '" + excerpt(name) + "' is not a string");
        result.metadata[name] = text.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_tensor_entry(path, key, value));
  }

  // The ranges, in data order, must start at 0, follow one another without
  // gap or overlap, and end exactly at the end of the file.
  std::stable_sort(entries.begin(), entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  int64_t covered = 0;
  std::string previous = "the start of the data";
  for (const TensorEntry& e : entries) {
    const std::string where = "tensor '" + excerpt(e.tensor.name) + "'";
    if (e.end > data_bytes)
      throw io_error(path, where + ": data_offsets end at byte " + std::to_string(e.end) +
                               ", past the end of the " + std::to_string(data_bytes) +
                               "-byte data area");
    if (e.begin < covered)
      throw io_error(path, where + " overlaps " + previous + ": it starts at byte " +
                               std::to_string(e.begin) + ", before byte " +
                               std::to_string(covered));
    if (e.begin > covered)
      throw io_error(path, "bytes [" + std::to_string(covered) + ", " + std::to_string(e.begin) +
                               ") of the data between " + previous + " and " + where +
                               " belong to no tensor");
    covered = e.end;
    previous = where;
  }
  if (covered != data_bytes)
    throw io_error(path, "the data area has " + std::to_string(data_bytes) +
                             " bytes but the tensors cover only " + std::to_string(covered) +
                             " (after " + previous + ")");

  result.tensors.reserve(entries.size());
  for (TensorEntry& e : entries) {
    e.tensor.bytes.resize(static_cast<size_t>(e.end - e.begin));
    if (!e.tensor.bytes.empty() && std::fread(e.tensor.bytes.data(), 1, e.tensor.bytes.size(),
                                              file.get()) != e.tensor.bytes.size())
      throw io_error(path, "read failed in tensor '" + excerpt(e.tensor.name) + "'");
    result.tensors.push_back(std::move(e.tensor));
  }
  return result;
}

/* Lays the tensors out as the reference writer does (descending dtype
   alignment, then name), writes the compact JSON header padded with spaces to
   a multiple of 8 bytes (so the data area starts 8-aligned), and writes it all
   atomically. The same tensors and metadata give the same bytes as the
   reference implementation, apart from the order of metadata keys (sorted
   here, hash order there). */
void write_safetensors(const std::string& path, const SafetensorsFile& file) {
  std::set<std::string> names;
  for (const NamedTensor& t : file.tensors) {
    const std::string where = path + ": tensor '" + excerpt(t.name) + "'";
    if (t.name.empty()) throw Error(ErrorCode::io, path + ": a tensor has an empty name");
    if (t.name == kMetadataKey)
      throw Error(ErrorCode::io, where + ": the name is reserved for the metadata");
    if (!names.insert(t.name).second) throw Error(ErrorCode::io, where + " appears twice");
    const int64_t expected = checked_byte_count(t.shape, dtype_size(t.dtype));
    if (expected < 0)
      throw Error(ErrorCode::io, where + ": shape " + shape_text(t.shape) + " is invalid");
    if (static_cast<int64_t>(t.bytes.size()) != expected)
      throw Error(ErrorCode::io, where + ": holds " + std::to_string(t.bytes.size()) +
                                     " bytes but " + dtype_name(t.dtype) + " " +
                                     shape_text(t.shape) + " needs " + std::to_string(expected));
  }

  std::vector<const NamedTensor*> order;
  for (const NamedTensor& t : file.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const NamedTensor* a, const NamedTensor* b) {
    const int ra = reference_rank(a->dtype), rb = reference_rank(b->dtype);
    return ra != rb ? ra > rb : a->name < b->name;
  });

  Json header = Json::object();
  if (!file.metadata.empty()) {
    Json metadata = Json::object();
    for (const auto& [key, value] : file.metadata) metadata[key] = value;
    header[kMetadataKey] = metadata;
  }
  int64_t offset = 0;
  for (const NamedTensor* t : order) {
    Json info = Json::object();
    info["dtype"] = dtype_name(t->dtype);
    info["shape"] = t->shape;
    const int64_t end = offset + static_cast<int64_t>(t->bytes.size());
    info["data_offsets"] = {offset, end};
    header[t->name] = std::move(info);
    offset = end;
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const Json::exception& e) {
    throw Error(ErrorCode::io,
                path + ": a tensor name or metadata entry is not valid UTF-8 (" + e.what() + ")");
  }
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  uint8_t length_bytes[8];
  for (int i = 0; i < 8; ++i) length_bytes[i] = static_cast<uint8_t>(header_text.size() >> (8 * i));
  std::vector<ByteChunk> chunks = {
      {length_bytes, 8},
      {reinterpret_cast<const uint8_t*>(header_text.data()), header_text.size()}};
  for (const NamedTensor* t : order) chunks.push_back({t->bytes.data(), t->bytes.size()});
  write_chunks_atomic(path, chunks);
}

}  // namespace bnlab::io
