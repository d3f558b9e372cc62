// Safetensors files (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, then the raw little-endian data. Written atomically
// (bnlab/io/atomic_file.hpp).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace bnlab::io {

enum class DType { F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL };
const char* dtype_name(DType dtype);  // "F32", ...
int64_t dtype_size(DType dtype);      // bytes per element

struct NamedTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // numel * dtype_size, little-endian
};

struct SafetensorsFile {
  std::vector<NamedTensor> tensors;            // in file order
  std::map<std::string, std::string> metadata; // the header's "__metadata__"
  const NamedTensor* find(const std::string& name) const;
};

// Throws bnlab::Error(io) naming the problem (and the key where there is
// one): header length past the end, bad JSON, unknown dtype, offsets past the
// end or overlapping, byte count that disagrees with dtype and shape.
SafetensorsFile read_safetensors(const std::string& path);

// Writes to a temporary file in the same folder, syncs it, then renames it
// over path: an interrupted write never destroys the previous file.
void write_safetensors(const std::string& path, const SafetensorsFile& file);

}  // namespace bnlab::io
