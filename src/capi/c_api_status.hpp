// What the C API's files share: this thread's bnlab_last_error() slot (defined
// in bnlab_c_api.cpp, beside bnlab_last_error), the try/catch that turns
// a C++ exception into a status and a message, and reading a C enum's bits.
#pragma once

#include <cstring>
#include <exception>

#include "bnlab/batch_norm.hpp"
#include "bnlab/bnlab.h"
#include "bnlab/error.hpp"

namespace bnlab::capi {

// Stores message as the calling thread's bnlab_last_error() and returns status.
bnlab_status fail(bnlab_status status, const char* message);
void clear_last_error();

// Runs body, turning exceptions into statuses (no exception crosses the C boundary).
template <class Body>
bnlab_status guarded(Body&& body) {
  clear_last_error();
  try {
    return body();
  } catch (const Error& e) {
    switch (e.code()) {
      case ErrorCode::too_few_values:
        return fail(BNLAB_TOO_FEW_VALUES, e.what());
      default:
        return fail(BNLAB_INVALID_ARGUMENT, e.what());
    }
  } catch (const std::exception& e) {
    return fail(BNLAB_INVALID_ARGUMENT, e.what());
  } catch (...) {
    return fail(BNLAB_INVALID_ARGUMENT, "unknown error");
  }
}

// A C caller may pass any int as an enum; a value outside the enum's range must
// not be loaded as the enum type in C++, so its bytes are read as an int.
template <class Enum>
int enum_bits(const Enum& value) {
  static_assert(sizeof(Enum) == sizeof(int));
  int bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

inline BatchNormShape make_shape(int64_t n, int64_t c, int64_t s, const bnlab_layout& layout) {
  return {n, c, s, static_cast<Layout>(enum_bits(layout))};
}

inline constexpr const char* kNonFinite =
    "the batch's statistics are not finite (NaN or Inf in x); the running statistics were left "
    "unchanged";

}  // namespace bnlab::capi
