// Numbers and flags written the way Python's repr() writes them, so module
// reprs match PyTorch's strings character for character.
#pragma once

#include <string>

namespace bnlab::nn {

// Python's repr(float): the shortest digits that round-trip; positional
// notation for exponents in [-4, 16) with at least one decimal ("0.1", "1.0"),
// scientific otherwise with a signed two-digit exponent ("1e-05", "1e+16").
std::string python_float(double value);
inline std::string python_bool(bool value) { return value ? "True" : "False"; }

}  // namespace bnlab::nn
