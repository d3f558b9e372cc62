// Module's defaults: plain tensors only, and no folding.
#include "bnlab/nn/module.hpp"

#include "bnlab/error.hpp"

namespace bnlab::nn {

const Tensor& Module::forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) {
  if (in != MemoryFormat::plain || out != MemoryFormat::plain)
    throw Error(repr() + ": takes and gives plain tensors only (no nChw16c)");
  return forward(input);
}

void Module::check_blocked16_input(const Shape& input, MemoryFormat in) const {
  if (in == MemoryFormat::blocked16 && !fits_blocked16(input))
    throw Error(repr() + ": nChw16c needs a 4-D input with channels a multiple of 16, got " +
                shape_string(input));
}

void Module::check_kept_format(const Shape& input, MemoryFormat in, MemoryFormat out) const {
  if (in != out)
    throw Error(repr() + ": keeps its input's format, asked for " +
                (in == MemoryFormat::plain ? "plain in, nChw16c out" : "nChw16c in, plain out"));
  check_blocked16_input(input, in);
}

ChannelAffine Module::eval_channel_affine() const {
  throw Error(repr() + ": is not a per-channel affine map");
}

ModulePtr Module::absorb_channel_affine(const ChannelAffine&, Generator&) const {
  throw Error(repr() + ": cannot absorb a per-channel affine map");
}

}  // namespace bnlab::nn
