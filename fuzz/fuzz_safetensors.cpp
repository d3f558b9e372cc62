// libFuzzer target: bnlab::io::read_safetensors on any bytes. A file it reads
// must survive write_safetensors and read back the same (tensors and
// metadata); anything else must be a bnlab::Error.
#include <cstdint>
#include <cstdlib>

#include "bnlab/error.hpp"
#include "bnlab/io/safetensors.hpp"
#include "fuzz_scratch.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using bnlab::io::SafetensorsFile;
  const std::string path = bnlab::fuzz::write_scratch("in.safetensors", data, size);
  SafetensorsFile file;
  try {
    file = bnlab::io::read_safetensors(path);
  } catch (const bnlab::Error&) {
    return 0;
  }
  const std::string out = bnlab::fuzz::scratch_dir() + "/out.safetensors";
  try {
    bnlab::io::write_safetensors(out, file);
  } catch (const bnlab::Error&) {
    return 0;  // e.g. a name that is not valid UTF-8: refused by the writer, by name
  }
  const SafetensorsFile back = bnlab::io::read_safetensors(out);
  if (back.metadata != file.metadata || back.tensors.size() != file.tensors.size()) std::abort();
  for (const auto& t : file.tensors) {
    const auto* r = back.find(t.name);
    if (r == nullptr || r->dtype != t.dtype || r->shape != t.shape || r->bytes != t.bytes)
      std::abort();
  }
  return 0;
}
