// Module's defaults: plain tensors only, and no folding; Size2's repr.
#include "bnlab/nn/module.hpp"

#include "bnlab/error.hpp"

namespace bnlab::nn {

std::string Size2::repr() const {
  if (!pair) return std::to_string(h);
  auto one = [](int64_t v) { return v == 0 ? std::string("None") : std::to_string(v); };
  std::string out = "(";  // appended, not "(" + ...: GCC 12 warns falsely (-Wrestrict) on that
  out += one(h);
  out += ", ";
  out += one(w);
  out += ")";
  return out;
}

std::string format_name(MemoryFormat format) {
  switch (format) {
    case MemoryFormat::plain: return "plain";
    case MemoryFormat::blocked16: return "nChw16c";
    case MemoryFormat::plain_bf16: return "bf16";
    case MemoryFormat::blocked16_bf16: return "bf16 nChw16c";
  }
  return "unknown format";
}

const Tensor& Module::forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) {
  if (in != MemoryFormat::plain || out != MemoryFormat::plain)
    throw Error(repr() + ": takes and gives plain tensors only (no nChw16c)");
  return forward(input);
}

void Module::check_blocked16_input(const Shape& input, MemoryFormat in) const {
  if (is_blocked16(in) && !fits_blocked16(input))
    throw Error(repr() + ": nChw16c needs a 4-D input with channels a multiple of 16, got " +
                shape_string(input));
  if (is_bf16(in) && bf16_use(input) == ChainUse::no)
    throw Error(repr() + ": has no bf16 path for input " + shape_string(input));
}

void Module::check_kept_format(const Shape& input, MemoryFormat in, MemoryFormat out) const {
  if (in != out)
    throw Error(repr() + ": keeps its input's format, asked for " + format_name(in) + " in, " +
                format_name(out) + " out");
  check_blocked16_input(input, in);
}

void Module::check_grad_output(const Tensor& grad_output, const Tensor& output) const {
  if (grad_output.shape() != output.shape())
    throw Error(repr() + ": grad_output shape " + shape_string(grad_output.shape()) +
                " does not match the output " + shape_string(output.shape()));
}

ChannelAffine Module::eval_channel_affine() const {
  throw Error(repr() + ": is not a per-channel affine map");
}

ModulePtr Module::absorb_channel_affine(const ChannelAffine&, Generator&) const {
  throw Error(repr() + ": cannot absorb a per-channel affine map");
}

}  // namespace bnlab::nn
