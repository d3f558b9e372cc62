// The one exception type of the C++ API. Its message names the argument and
// the value; the C API turns it into a bnlab_status and bnlab_last_error().
#pragma once

#include <stdexcept>
#include <string>

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

}  // namespace bnlab
