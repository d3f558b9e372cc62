// The one exception type of the C++ API. Its message names the argument and
// the value; the C API turns it into a bnlab_status and bnlab_last_error().
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace bnlab {

// Non-finite statistics are not an error: the kernels report them as
// BatchNormStatus::non_finite, so no code 3 is thrown.
enum class ErrorCode { invalid_argument = 1, too_few_values = 2, io = 4 };

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  explicit Error(const std::string& message) : Error(ErrorCode::invalid_argument, message) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

// At most about `max` bytes of untrusted text for an error message, control
// bytes written as \xNN, cut on a UTF-8 boundary and marked with its full size
// ("Linear(7, ... (1048576 bytes)"), so that a message never echoes a whole
// megabyte of input. Header-only so that every layer can use it.
inline std::string excerpt(std::string_view text, size_t max = 60) {
  constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  size_t used = 0;
  for (; used < text.size(); ++used) {
    const auto byte = static_cast<unsigned char>(text[used]);
    const bool control = byte < 0x20 || byte == 0x7f;
    if (out.size() + (control ? 4 : 1) > max) break;
    if (control) {
      // Characters one by one: GCC 12 warns falsely (-Wrestrict) on += "\\x".
      for (const char c : {'\\', 'x', kHex[byte >> 4], kHex[byte & 0xf]}) out.push_back(c);
    } else {
      out += static_cast<char>(byte);
    }
  }
  if (used == text.size()) return out;
  // A cut inside a multi-byte character drops its leading bytes too.
  if ((static_cast<unsigned char>(text[used]) & 0xc0) == 0x80) {
    while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xc0) == 0x80) out.pop_back();
    if (!out.empty() && static_cast<unsigned char>(out.back()) >= 0xc0) out.pop_back();
  }
  return out + "... (" + std::to_string(text.size()) + " bytes)";
}

}  // namespace bnlab
