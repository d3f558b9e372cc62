// State dicts with PyTorch's nn.Sequential names, and checkpoints as
// safetensors files that PyTorch's load_state_dict(strict=True) accepts.
//
// Keys are "<child index>.<name>", in the order PyTorch's state_dict() lists
// them: child by child, each child's parameters (weight, bias) and then its
// buffers (running_mean, running_var, num_batches_tracked). Float entries are
// F32; num_batches_tracked is an I64 scalar of shape [] as torch.long has it.
#include "bnlab/nn/state_dict.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <tuple>

#include "bnlab/error.hpp"

namespace bnlab::nn {
namespace {

// Safetensors data is little-endian; bnlab copies bytes as they are in memory.
static_assert(std::endian::native == std::endian::little,
              "bnlab's state dicts assume a little-endian host");

// One entry of the state dict: a float tensor or the int64 counter.
struct Entry {
  std::string key;
  Tensor* tensor = nullptr;
  int64_t* counter = nullptr;
};

// Every entry of the network, in PyTorch's order. An empty tensor is an entry
// PyTorch does not have (a BatchNorm's weight with affine=False).
std::vector<Entry> collect_entries(Sequential& net) {
  std::vector<Entry> entries;
  for (size_t i = 0; i < net.size(); ++i) {
    const std::string prefix = std::to_string(i) + ".";
    for (auto& [name, parameter] : net[i].parameters())
      if (parameter && parameter->value.numel() > 0)
        entries.push_back({prefix + name, &parameter->value, nullptr});
    for (Buffer& buffer : net[i].buffers()) {
      if (buffer.counter)
        entries.push_back({prefix + buffer.name, nullptr, buffer.counter});
      else if (buffer.tensor && buffer.tensor->numel() > 0)
        entries.push_back({prefix + buffer.name, buffer.tensor, nullptr});
    }
  }
  return entries;
}

/* IEEE half (1 sign, 5 exponent, 10 mantissa bits) to float, exactly:
   normal: (-1)^s 2^(e-15) (1 + m/1024); subnormal (e = 0): (-1)^s 2^-14 m/1024;
   e = 31: inf (m = 0) or nan. */
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h >> 15) << 31;
  const uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {
    // Subnormal: shift the mantissa up until its leading 1 is the implicit bit.
    int32_t e = 127 - 15 + 1;
    while ((mantissa & 0x400) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (static_cast<uint32_t>(e) << 23) | ((mantissa & 0x3ff) << 13);
  }
  return std::bit_cast<float>(bits);
}

// bfloat16 is the top half of a float.
float bfloat16_to_float(uint16_t b) { return std::bit_cast<float>(uint32_t{b} << 16); }

template <typename T>
T load_le(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

std::string key_error_prefix(const std::string& key) { return "state dict key '" + key + "': "; }

// The names of one kind of key, quoted, at most a handful.
std::string quoted_list(const std::vector<std::string>& keys) {
  constexpr size_t kShown = 8;
  std::string s;
  for (size_t i = 0; i < keys.size() && i < kShown; ++i) s += (i ? ", '" : "'") + keys[i] + "'";
  if (keys.size() > kShown) s += " and " + std::to_string(keys.size() - kShown) + " more";
  return s;
}

// Keys in state_dict() order for a message: by layer index (as a number), then
// weight, bias, running_mean, running_var, num_batches_tracked, then by text.
bool state_dict_order(const std::string& a, const std::string& b) {
  auto split = [](const std::string& key) {
    const size_t dot = key.find('.');
    const std::string head = key.substr(0, dot);
    const bool numeric = !head.empty() && head.find_first_not_of("0123456789") == std::string::npos;
    const int64_t index = numeric && head.size() < 18 ? std::stoll(head) : INT64_MAX;
    const std::string name = dot == std::string::npos ? "" : key.substr(dot + 1);
    static const std::vector<std::string> kNames = {"weight", "bias", "running_mean", "running_var",
                                                    "num_batches_tracked"};
    const int64_t rank = std::find(kNames.begin(), kNames.end(), name) - kNames.begin();
    return std::make_tuple(index, rank, key);
  };
  return split(a) < split(b);
}

void check_entry(const Entry& entry, const io::NamedTensor& stored) {
  using io::DType;
  const int64_t numel = shape_numel(stored.shape);
  if (static_cast<int64_t>(stored.bytes.size()) != numel * io::dtype_size(stored.dtype))
    throw Error(ErrorCode::io, key_error_prefix(entry.key) + std::to_string(stored.bytes.size()) +
                                   " bytes for shape " + shape_string(stored.shape) + " of " +
                                   io::dtype_name(stored.dtype));
  if (entry.counter) {
    if (stored.dtype != DType::I64 && stored.dtype != DType::I32)
      throw Error(ErrorCode::io, key_error_prefix(entry.key) + "dtype " +
                                     io::dtype_name(stored.dtype) + ", expected I64 (or I32)");
    // PyTorch also accepts shape [1] for a 0-dim entry (old checkpoints).
    if (!(stored.shape.empty() || stored.shape == Shape{1}))
      throw Error(ErrorCode::io, key_error_prefix(entry.key) + "shape " +
                                     shape_string(stored.shape) + ", expected () (a scalar)");
    return;
  }
  if (stored.dtype != DType::F32 && stored.dtype != DType::F64 && stored.dtype != DType::F16 &&
      stored.dtype != DType::BF16)
    throw Error(ErrorCode::io, key_error_prefix(entry.key) + "dtype " +
                                   io::dtype_name(stored.dtype) +
                                   ", expected F32 (or F64, F16, BF16, converted)");
  if (stored.shape != entry.tensor->shape())
    throw Error(ErrorCode::io, key_error_prefix(entry.key) + "shape " + shape_string(stored.shape) +
                                   " in the file, the network expects " +
                                   shape_string(entry.tensor->shape()));
}

void copy_entry(const Entry& entry, const io::NamedTensor& stored) {
  using io::DType;
  const uint8_t* bytes = stored.bytes.data();
  if (entry.counter) {
    *entry.counter =
        stored.dtype == DType::I64 ? load_le<int64_t>(bytes) : int64_t{load_le<int32_t>(bytes)};
    return;
  }
  float* out = entry.tensor->data();
  const int64_t n = entry.tensor->numel();
  switch (stored.dtype) {
    case DType::F32:
      std::memcpy(out, bytes, static_cast<size_t>(n) * sizeof(float));
      break;
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(load_le<double>(bytes + 8 * i));
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = half_to_float(load_le<uint16_t>(bytes + 2 * i));
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bfloat16_to_float(load_le<uint16_t>(bytes + 2 * i));
      break;
    default:
      break;  // check_entry admits no other dtype
  }
}

}  // namespace

io::SafetensorsFile state_dict(Sequential& net) {
  io::SafetensorsFile file;
  file.metadata["format"] = "pt";
  for (const Entry& entry : collect_entries(net)) {
    io::NamedTensor named;
    named.name = entry.key;
    if (entry.counter) {
      named.dtype = io::DType::I64;  // shape [] : torch.tensor(0, dtype=torch.long)
      named.bytes.resize(sizeof(int64_t));
      std::memcpy(named.bytes.data(), entry.counter, sizeof(int64_t));
    } else {
      named.dtype = io::DType::F32;
      named.shape = entry.tensor->shape();
      named.bytes.resize(static_cast<size_t>(entry.tensor->numel()) * sizeof(float));
      std::memcpy(named.bytes.data(), entry.tensor->data(), named.bytes.size());
    }
    file.tensors.push_back(std::move(named));
  }
  return file;
}

/* Two passes, so a file that does not fit leaves the network untouched:
   first the key sets must be equal and every entry's dtype and shape must
   fit, then the values are copied (converted to float where needed). */
void load_state_dict(Sequential& net, const io::SafetensorsFile& file) {
  const std::vector<Entry> entries = collect_entries(net);
  std::map<std::string, const io::NamedTensor*> stored;
  const auto training_state = [](const io::NamedTensor& tensor) {
    return tensor.name.rfind(kOptimizerStatePrefix, 0) == 0;
  };
  for (const io::NamedTensor& tensor : file.tensors)
    if (!training_state(tensor) && !stored.emplace(tensor.name, &tensor).second)
      throw Error(ErrorCode::io, key_error_prefix(tensor.name) + "appears twice in the file");

  std::vector<std::string> missing, unexpected;
  std::set<std::string> expected;
  for (const Entry& entry : entries) {
    expected.insert(entry.key);
    if (!stored.count(entry.key)) missing.push_back(entry.key);
  }
  for (const io::NamedTensor& tensor : file.tensors)
    if (!training_state(tensor) && !expected.count(tensor.name)) unexpected.push_back(tensor.name);
  std::sort(unexpected.begin(), unexpected.end(), state_dict_order);  // files list by dtype
  if (!missing.empty() || !unexpected.empty()) {
    std::string message = "state dict does not match the network:";
    if (!missing.empty())
      message += std::string(" missing key") + (missing.size() > 1 ? "s " : " ") +
                 quoted_list(missing) + (unexpected.empty() ? "" : ";");
    if (!unexpected.empty())
      message += std::string(" unexpected key") + (unexpected.size() > 1 ? "s " : " ") +
                 quoted_list(unexpected);
    const std::string arch = checkpoint_arch(file);
    if (!arch.empty()) message += " (the file was saved for --arch \"" + arch + "\")";
    throw Error(ErrorCode::io, message);
  }

  for (const Entry& entry : entries) check_entry(entry, *stored.at(entry.key));
  for (const Entry& entry : entries) copy_entry(entry, *stored.at(entry.key));
}

void save_checkpoint(const std::string& path, Sequential& net, const std::string& arch) {
  io::SafetensorsFile file = state_dict(net);
  file.metadata["arch"] = arch;
  io::write_safetensors(path, file);
}

namespace {
// The shortest text that reads back as `value` ("-0.5", not "-0.500000").
std::string shortest_text(float value) {
  char text[32];
  const auto result = std::to_chars(text, text + sizeof text, value);
  return std::string(text, result.ptr);
}
}  // namespace

void check_state_values(Sequential& net) {
  for (const Entry& entry : collect_entries(net)) {
    if (!entry.tensor) continue;
    const bool variance =
        entry.key.size() >= 12 && entry.key.compare(entry.key.size() - 12, 12, ".running_var") == 0;
    const Tensor& t = *entry.tensor;
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (!std::isfinite(t[i]))
        throw Error(key_error_prefix(entry.key) + "value [" + std::to_string(i) + "] is " +
                    (std::isnan(t[i]) ? "nan"
                     : t[i] > 0       ? "inf"
                                      : "-inf") +
                    ": a checkpoint with non-finite values gives meaningless outputs");
      if (variance && t[i] < 0.0f)
        throw Error(key_error_prefix(entry.key) + "value [" + std::to_string(i) + "] is " +
                    shortest_text(t[i]) + ": a running variance cannot be negative");
    }
  }
}

std::string checkpoint_arch(const io::SafetensorsFile& file) {
  const auto it = file.metadata.find("arch");
  return it == file.metadata.end() ? std::string() : it->second;
}

}  // namespace bnlab::nn
