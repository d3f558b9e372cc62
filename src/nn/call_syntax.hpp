// The reader of PyTorch's call syntax for architecture text: a tokenizer, a
// recursive-descent parser into layer calls, Python's argument binding, and the
// excerpts that errors quote. It knows no layer: nn/layer_registry.hpp does.
//
// Grammar (whitespace and newlines anywhere between tokens):
//   arch   := [prefix "Sequential" "("] list [")"] END
//   list   := [item {sep item} [","]]          sep := "," | a line break
//   item   := ["(" INT ")" ":"] prefix NAME "(" [arg {"," arg} [","]] ")"
//   prefix := ["torch" "."] ["nn" "."]
//   arg    := [NAME "="] value
//   value  := atom | value ("+" | "-" | "*" | "/" | "//") value | ("+" | "-") value
//   atom   := NUMBER | "True" | "False" | "None" | STRING | "(" value {"," value} [","] ")"
//           | "[" [value {"," value} [","]] "]"      (a list, read as a tuple)
// Arithmetic is Python's: its precedence, integers of 64 bits (overflow is an
// error), floor division toward minus infinity, "/" and float operands give floats.
// The "(0): " item prefix and the line-break separator accept what
// print(model) shows for an nn.Sequential, so a PyTorch repr pastes as is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bnlab/did_you_mean.hpp"
#include "bnlab/error.hpp"
#include "bnlab/nn/module.hpp"

namespace bnlab::nn::call_syntax {

// How deep values may nest (a tuple in a tuple, parentheses around a number):
// PyTorch's arguments need two levels; Python's own parser stops at 200.
inline constexpr size_t kMaxNesting = 100;

// A problem found at one place of the text; parse_arch adds the layer and the caret.
struct ArchProblem {
  size_t pos;
  std::string message;
};

// Thrown while parsing a layer, so the caller knows which layer it was in.
struct LayerProblem {
  size_t index;
  size_t layer_pos;
  ArchProblem problem;
};

enum class ValueKind { integer, real, boolean, none, string, tuple };

struct Value {
  ValueKind kind = ValueKind::none;
  int64_t int_value = 0;
  double float_value = 0.0;
  bool bool_value = false;
  std::string string_value;
  std::vector<Value> items;
  size_t pos = 0, end = 0;
  std::string text;  // as written, for messages
};

struct Argument {
  std::string keyword;  // "" for a positional argument
  size_t keyword_pos = 0;
  Value value;
};

struct LayerCall {
  std::string name;  // without the nn. prefix
  size_t name_pos = 0;
  size_t pos = 0, end = 0;  // the call's extent in the text, prefix included
  std::vector<Argument> args;
};

// The layer calls of an architecture text; throws ArchProblem (outside any
// layer) or LayerProblem.
std::vector<LayerCall> parse_calls(std::string_view text);

// A PyTorch signature: parameter names in PyTorch's order, the first
// `required` without a default.
struct Signature {
  std::vector<const char*> params;
  size_t required;
  // PyTorch's (*args, **kwargs) (nn.Identity): any arguments, all ignored.
  bool any_arguments = false;
};



// The arguments of one call, bound to its signature by name as Python binds
// them: positional arguments fill the signature in order, keywords by name;
// an unknown keyword, a value given twice, a missing required argument, or a
// value of the wrong type is an ArchProblem.
class BoundArgs {
 public:
  BoundArgs(const LayerCall& call, const Signature& signature);

  const Value* find(const char* name) const;
  // An integer >= min_value, or a 2-tuple of equal such integers for the
  // square kernels bnlab implements.
  int64_t size(const char* name, int64_t default_value, int64_t min_value,
               bool allow_pair = false) const;
  // An integer >= min_value, or a pair of them (height, width), of any two
  // values; with allow_none a None in the pair is read as 0.
  Size2 size_pair(const char* name, Size2 default_value, int64_t min_value,
                     bool allow_none = false) const;
  // An integer, or None (nullopt), or absent (default_value).
  std::optional<int64_t> optional_integer(const char* name,
                                          std::optional<int64_t> default_value) const;
  bool flag(const char* name, bool default_value) const;
  double number(const char* name, double default_value) const;
  std::optional<double> optional_number(const char* name,
                                        std::optional<double> default_value) const;
  // An argument bnlab does not implement: accepted at PyTorch's default only.
  void require_default(const char* name, const std::string& default_text,
                       bool (*is_default)(const Value&)) const;
  // Fails at the value's position with `message`.
  [[noreturn]] void fail(const char* name, const std::string& message) const;
  const LayerCall& call() const { return call_; }

 private:
  const LayerCall& call_;
  std::map<std::string, const Value*> values_;
};

// did_you_mean (bnlab/did_you_mean.hpp), for layer and keyword names.
using bnlab::did_you_mean;

// Error excerpts: bnlab::excerpt (error.hpp), so a message never echoes
// unbounded input.
using bnlab::excerpt;
// "  <the line holding pos>\n  <spaces>^ column C" (plus
// "line L, " for multi-line text); long lines are cut to a window around pos.
std::string caret_excerpt(const std::string& text, size_t pos);
// The layer's text from pos to its balanced ')' (or the end), on one line, cut short.
std::string layer_excerpt(const std::string& text, size_t pos);
std::string layer_excerpt(const std::string& text, size_t pos, size_t end);

}  // namespace bnlab::nn::call_syntax
