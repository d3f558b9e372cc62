// Architectures as text in PyTorch's notation: a tokenizer, a small
// recursive-descent parser, argument binding with Python's rules, and the
// builders that turn each call into a module.
//
// Grammar (whitespace and newlines anywhere between tokens):
//   arch   := [prefix "Sequential" "("] list [")"] END
//   list   := [item {sep item} [","]]          sep := "," | a line break
//   item   := ["(" INT ")" ":"] prefix NAME "(" [arg {"," arg} [","]] ")"
//   prefix := ["torch" "."] ["nn" "."]
//   arg    := [NAME "="] value
//   value  := NUMBER | "True" | "False" | "None" | STRING | "(" value {"," value} [","] ")"
// The "(0): " item prefix and the line-break separator accept what
// print(model) shows for an nn.Sequential, so a PyTorch repr pastes as is.
//
// Binding follows Python: positional arguments fill the signature in order,
// keywords by name; an unknown keyword, a value given twice, a positional
// argument after a keyword, a missing required argument, or a value of the
// wrong type is an error. Signatures are PyTorch's, in PyTorch's order (e.g.
// Conv2d's sixth positional argument is dilation, not bias); arguments bnlab
// does not implement (dilation, groups, ceil_mode, ...) are accepted only at
// their default value.
#include "bnlab/nn/arch.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <string_view>

#include "bnlab/error.hpp"

namespace bnlab::nn {
namespace {

// ---------------------------------------------------------------- tokens

enum class TokenKind { Name, Int, Float, String, LParen, RParen, Comma, Equals, Colon, Dot, End };

struct Token {
  TokenKind kind = TokenKind::End;
  std::string text;  // the characters as written (a string's value without quotes)
  size_t pos = 0;    // byte offset of the first character in the arch text
  size_t end = 0;    // one past the last character
};

// A problem found at one place of the text; parse_arch adds the layer and the caret.
struct ArchProblem {
  size_t pos;
  std::string message;
};

bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_utf8_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// Characters, not bytes, so a caret lines up under text with UTF-8 in it.
size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += !is_utf8_continuation(c);
  return n;
}

std::vector<Token> tokenize(std::string_view text) {
  std::vector<Token> tokens;
  size_t i = 0;
  while (true) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    Token token;
    token.pos = i;
    if (i == text.size()) {
      token.end = i;
      tokens.push_back(token);
      return tokens;
    }
    const char c = text[i];
    if (is_name_start(c)) {
      while (i < text.size() && is_name_char(text[i])) ++i;
      token.kind = TokenKind::Name;
    } else if (is_digit(c) || ((c == '-' || c == '+' || c == '.') && i + 1 < text.size() &&
                               (is_digit(text[i + 1]) || text[i + 1] == '.'))) {
      // A number: [sign] digits [. digits] [e [sign] digits]. A sign belongs to
      // the number because the grammar has no arithmetic.
      bool is_float = false;
      if (c == '-' || c == '+') ++i;
      while (i < text.size() && is_digit(text[i])) ++i;
      if (i < text.size() && text[i] == '.') {
        is_float = true;
        ++i;
        while (i < text.size() && is_digit(text[i])) ++i;
      }
      if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
        size_t j = i + 1;
        if (j < text.size() && (text[j] == '-' || text[j] == '+')) ++j;
        if (j < text.size() && is_digit(text[j])) {
          is_float = true;
          i = j;
          while (i < text.size() && is_digit(text[i])) ++i;
        }
      }
      if (i < text.size() && is_name_char(text[i]))
        throw ArchProblem{
            token.pos,
            "malformed number '" + std::string(text.substr(token.pos, i + 1 - token.pos)) + "'"};
      token.kind = is_float ? TokenKind::Float : TokenKind::Int;
    } else if (c == '\'' || c == '"') {
      const size_t close = text.find(c, i + 1);
      if (close == std::string_view::npos) throw ArchProblem{i, "unterminated string"};
      token.kind = TokenKind::String;
      token.text = std::string(text.substr(i + 1, close - i - 1));
      i = close + 1;
      token.end = i;
      tokens.push_back(token);
      continue;
    } else {
      constexpr std::string_view kPunctuation = "(),=:.";
      constexpr TokenKind kPunctuationKinds[] = {TokenKind::LParen, TokenKind::RParen,
                                                 TokenKind::Comma,  TokenKind::Equals,
                                                 TokenKind::Colon,  TokenKind::Dot};
      const size_t which = kPunctuation.find(c);
      if (which == std::string_view::npos) {
        // Name the whole UTF-8 character (text pasted from a web page often
        // brings typographic quotes along).
        size_t next = i + 1;
        while (next < text.size() && is_utf8_continuation(text[next])) ++next;
        const std::string character(text.substr(i, next - i));
        const bool typographic_quote = character == "\u201c" || character == "\u201d" ||
                                       character == "\u2018" || character == "\u2019";
        throw ArchProblem{i, "unexpected character '" + character + "'" +
                                 (typographic_quote ? " (write ' or \" for a string)" : "")};
      }
      token.kind = kPunctuationKinds[which];
      ++i;
    }
    token.end = i;
    token.text = std::string(text.substr(token.pos, i - token.pos));
    tokens.push_back(token);
  }
}

// ---------------------------------------------------------------- syntax tree

struct Value {
  enum Kind { Int, Float, Bool, None, String, Tuple } kind = None;
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

// Thrown while parsing a layer, so the caller knows which layer it was in.
struct LayerProblem {
  size_t index;
  size_t layer_pos;
  ArchProblem problem;
};

class Parser {
 public:
  Parser(std::string_view text, std::vector<Token> tokens)
      : text_(text), tokens_(std::move(tokens)) {}

  std::vector<LayerCall> parse_arch() {
    // An optional nn.Sequential( ... ) around the list.
    bool wrapped = false;
    const size_t save = next_;
    if (peek().kind == TokenKind::Name) {
      try {
        wrapped = parse_qualified_name() == "Sequential" && peek().kind == TokenKind::LParen;
      } catch (const ArchProblem&) {
        // Not a wrapper; the list reports the problem with its layer.
      }
      if (wrapped) {
        take();
      } else {
        next_ = save;
      }
    }
    std::vector<LayerCall> layers = parse_list(wrapped);
    if (wrapped) expect(TokenKind::RParen, "')' closing Sequential(");
    if (peek().kind != TokenKind::End)
      throw ArchProblem{peek().pos, "unexpected '" + peek().text + "' after the last layer"};
    return layers;
  }

 private:
  const Token& peek(size_t ahead = 0) const {
    return tokens_[std::min(next_ + ahead, tokens_.size() - 1)];
  }
  const Token& take() { return tokens_[std::min(next_++, tokens_.size() - 1)]; }
  static std::string describe(const Token& token) {
    return token.kind == TokenKind::End ? "the end of the text" : "'" + token.text + "'";
  }
  const Token& expect(TokenKind kind, const std::string& what) {
    if (peek().kind != kind)
      throw ArchProblem{peek().pos, "expected " + what + ", found " + describe(peek())};
    return take();
  }
  bool on_new_line(size_t from, size_t to) const {
    return text_.substr(from, to - from).find('\n') != std::string_view::npos;
  }

  // [torch.][nn.]Name -> Name
  std::string parse_qualified_name() {
    const Token& first = expect(TokenKind::Name, "a layer name");
    std::vector<const Token*> parts{&first};
    while (peek().kind == TokenKind::Dot) {
      take();
      parts.push_back(&expect(TokenKind::Name, "a name after '.'"));
    }
    const std::string name = parts.back()->text;
    std::string prefix;
    for (size_t i = 0; i + 1 < parts.size(); ++i) prefix += parts[i]->text + ".";
    if (!prefix.empty() && prefix != "nn." && prefix != "torch.nn.")
      throw ArchProblem{first.pos, "unknown prefix '" + prefix + "' (write " + name + ", nn." +
                                       name + " or torch.nn." + name + ")"};
    return name;
  }

  std::vector<LayerCall> parse_list(bool wrapped) {
    std::vector<LayerCall> layers;
    auto at_list_end = [&] {
      return peek().kind == TokenKind::End || (wrapped && peek().kind == TokenKind::RParen);
    };
    while (!at_list_end()) {
      const size_t index = layers.size();
      const size_t layer_pos = peek().pos;
      try {
        layers.push_back(parse_item(index));
      } catch (const ArchProblem& problem) {
        throw LayerProblem{index, layer_pos, problem};
      }
      if (peek().kind == TokenKind::Comma) {
        take();
      } else if (peek().kind == TokenKind::RParen) {
        break;  // an unmatched ')': parse_arch names it
      } else if (!at_list_end() && !on_new_line(layers.back().end, peek().pos)) {
        throw ArchProblem{
            peek().pos, "expected ',' after layer " + std::to_string(index) + ", " +
                            std::string(text_.substr(layers.back().name_pos,
                                                     layers.back().end - layers.back().name_pos)) +
                            ", found " + describe(peek())};
      }
    }
    return layers;
  }

  LayerCall parse_item(size_t index) {
    LayerCall call;
    call.pos = peek().pos;
    // "(3): " as print(model) writes it: the index must be the layer's position.
    if (peek().kind == TokenKind::LParen) {
      take();
      const Token& number = peek();
      if (number.kind != TokenKind::Int) {
        const bool named_child = number.kind == TokenKind::Name &&
                                 peek(1).kind == TokenKind::RParen &&
                                 peek(2).kind == TokenKind::Colon;
        throw ArchProblem{number.pos, "expected a layer name or '(" + std::to_string(index) +
                                          "):', found " + describe(number) +
                                          (named_child ? " (named children are not supported: "
                                                         "state-dict keys are indices)"
                                                       : "")};
      }
      take();
      if (number.text != std::to_string(index))
        throw ArchProblem{number.pos, "index (" + number.text +
                                          ") does not match the layer's position " +
                                          std::to_string(index)};
      expect(TokenKind::RParen, "')'");
      expect(TokenKind::Colon, "':'");
    }
    call.name_pos = peek().pos;
    call.name = parse_qualified_name();
    expect(TokenKind::LParen, "'(' after " + call.name);
    bool seen_keyword = false;
    while (peek().kind != TokenKind::RParen) {
      Argument arg;
      if (peek().kind == TokenKind::Name && peek(1).kind == TokenKind::Equals) {
        arg.keyword = peek().text;
        arg.keyword_pos = peek().pos;
        take();
        take();
        seen_keyword = true;
      } else if (seen_keyword) {
        throw ArchProblem{peek().pos, "positional argument follows keyword argument"};
      }
      arg.value = parse_value();
      call.args.push_back(std::move(arg));
      if (peek().kind == TokenKind::Comma) {
        take();
      } else if (peek().kind != TokenKind::RParen) {
        throw ArchProblem{
            peek().pos, "expected ',' or ')' in " + call.name + "(...), found " + describe(peek())};
      }
    }
    call.end = take().end;
    return call;
  }

  Value parse_value() {
    const Token& token = take();
    Value value;
    value.pos = token.pos;
    switch (token.kind) {
      case TokenKind::Int: {
        value.kind = Value::Int;
        const char* first = token.text.data() + (token.text[0] == '+' ? 1 : 0);
        const auto [ptr, ec] =
            std::from_chars(first, token.text.data() + token.text.size(), value.int_value);
        if (ec != std::errc() || ptr != token.text.data() + token.text.size())
          throw ArchProblem{token.pos, "integer " + token.text + " is out of range"};
        break;
      }
      case TokenKind::Float: {
        value.kind = Value::Float;
        // strtod reads the C locale's decimal point; the tokenizer has checked the form.
        value.float_value = std::strtod(token.text.c_str(), nullptr);
        if (!std::isfinite(value.float_value))
          throw ArchProblem{token.pos, "number " + token.text + " is out of range"};
        break;
      }
      case TokenKind::String:
        value.kind = Value::String;
        value.string_value = token.text;
        break;
      case TokenKind::Name:
        if (token.text == "True" || token.text == "False") {
          value.kind = Value::Bool;
          value.bool_value = token.text == "True";
        } else if (token.text == "None") {
          value.kind = Value::None;
        } else {
          const bool lower_literal =
              token.text == "true" || token.text == "false" || token.text == "none";
          throw ArchProblem{token.pos, "'" + token.text + "' is not a value" +
                                           (lower_literal ? " (Python writes True, False, None)"
                                                          : " (expected a number, True, False, "
                                                            "None or a string)")};
        }
        break;
      case TokenKind::LParen: {
        // As in Python, "(3)" is the number 3 and "(3,)" a tuple of one.
        value.kind = Value::Tuple;
        bool saw_comma = false;
        while (peek().kind != TokenKind::RParen) {
          value.items.push_back(parse_value());
          if (peek().kind == TokenKind::Comma) {
            take();
            saw_comma = true;
          } else if (peek().kind != TokenKind::RParen) {
            throw ArchProblem{peek().pos,
                              "expected ',' or ')' in a tuple, found " + describe(peek())};
          }
        }
        take();
        if (value.items.size() == 1 && !saw_comma) {
          Value inner = std::move(value.items[0]);
          inner.pos = value.pos;
          value = std::move(inner);
        }
        break;
      }
      default:
        throw ArchProblem{token.pos, "expected a value, found " + describe(token)};
    }
    value.end = tokens_[next_ - 1].end;
    value.text = std::string(text_.substr(value.pos, value.end - value.pos));
    return value;
  }

  std::string_view text_;
  std::vector<Token> tokens_;
  size_t next_ = 0;
};

// ---------------------------------------------------------------- binding

struct Signature {
  std::vector<const char*> params;  // PyTorch's order
  size_t required;                  // the first `required` have no default
};

// The arguments of one call, bound to its signature by name.
class BoundArgs {
 public:
  BoundArgs(const LayerCall& call, const Signature& signature) : call_(call) {
    // The parameter names; device and dtype (accepted as None only) are left
    // out of the keyword hint.
    auto signature_text = [&](bool with_factory_args) {
      std::string s;
      for (const char* p : signature.params)
        if (with_factory_args ||
            (std::string_view(p) != "device" && std::string_view(p) != "dtype"))
          s += std::string(s.empty() ? "" : ", ") + p;
      return s;
    };
    size_t positional = 0;
    for (const Argument& arg : call.args) {
      if (arg.keyword.empty()) {
        if (positional >= signature.params.size())
          throw ArchProblem{
              arg.value.pos,
              call.name + "() takes " + (signature.params.empty() ? "" : "at most ") +
                  std::to_string(signature.params.size()) + " positional argument" +
                  (signature.params.size() == 1 ? "" : "s") +
                  (signature.params.empty() ? "" : " (" + signature_text(true) + ")") + " but " +
                  std::to_string(count_positional(call)) + " were given"};
        values_[signature.params[positional++]] = &arg.value;
        continue;
      }
      bool known = false;
      for (const char* p : signature.params) known = known || arg.keyword == p;
      if (!known)
        throw ArchProblem{arg.keyword_pos,
                          "unexpected keyword '" + arg.keyword + "'; " + call.name +
                              (signature.params.empty() ? " takes no arguments"
                                                        : " takes " + signature_text(false))};
      if (values_.count(arg.keyword))
        throw ArchProblem{arg.keyword_pos, "multiple values for argument '" + arg.keyword + "'"};
      values_[arg.keyword] = &arg.value;
    }
    for (size_t i = 0; i < signature.required; ++i)
      if (!values_.count(signature.params[i]))
        throw ArchProblem{call.end - 1,
                          call.name + "() missing required argument '" + signature.params[i] + "'"};
  }

  const Value* find(const char* name) const {
    const auto it = values_.find(name);
    return it == values_.end() ? nullptr : it->second;
  }

  // An integer >= min_value, or a 2-tuple of equal such integers for the
  // square kernels bnlab implements.
  int64_t size(const char* name, int64_t default_value, int64_t min_value,
               bool allow_pair = false) const {
    const Value* v = find(name);
    if (!v) return default_value;
    if (allow_pair && v->kind == Value::Tuple) {
      if (v->items.size() != 2 || v->items[0].kind != Value::Int || v->items[1].kind != Value::Int)
        throw ArchProblem{v->pos, std::string(name) +
                                      " must be an integer or a pair of integers, got " + v->text};
      if (v->items[0].int_value != v->items[1].int_value)
        throw ArchProblem{v->pos, "non-square " + std::string(name) + "=" + v->text +
                                      " is not supported (bnlab's " + call_.name +
                                      " takes one size for both dimensions)"};
      return check_min(name, v->items[0], min_value);
    }
    if (v->kind != Value::Int)
      throw ArchProblem{v->pos, std::string(name) + " must be an integer, got " + v->text};
    return check_min(name, *v, min_value);
  }

  bool flag(const char* name, bool default_value) const {
    const Value* v = find(name);
    if (!v) return default_value;
    if (v->kind != Value::Bool)
      throw ArchProblem{v->pos, std::string(name) + " must be True or False, got " + v->text};
    return v->bool_value;
  }

  double number(const char* name, double default_value) const {
    const Value* v = find(name);
    if (!v) return default_value;
    return number_value(name, *v);
  }

  std::optional<double> optional_number(const char* name,
                                        std::optional<double> default_value) const {
    const Value* v = find(name);
    if (!v) return default_value;
    if (v->kind == Value::None) return std::nullopt;
    return number_value(name, *v);
  }

  // An argument bnlab does not implement: accepted at PyTorch's default only.
  void require_default(const char* name, const std::string& default_text,
                       bool (*is_default)(const Value&)) const {
    const Value* v = find(name);
    if (v && !is_default(*v))
      throw ArchProblem{v->pos, std::string(name) + "=" + v->text + " is not supported (only " +
                                    name + "=" + default_text + ")"};
  }

  // Fails at the value's position with `message`.
  [[noreturn]] void fail(const char* name, const std::string& message) const {
    const Value* v = find(name);
    throw ArchProblem{v ? v->pos : call_.name_pos, message};
  }

 private:
  static size_t count_positional(const LayerCall& call) {
    size_t n = 0;
    for (const Argument& a : call.args) n += a.keyword.empty();
    return n;
  }
  static int64_t check_min(const char* name, const Value& v, int64_t min_value) {
    if (v.int_value < min_value)
      throw ArchProblem{
          v.pos, std::string(name) + " must be " +
                     (min_value == 0 ? "non-negative" : "at least " + std::to_string(min_value)) +
                     ", got " + std::to_string(v.int_value)};
    return v.int_value;
  }
  static double number_value(const char* name, const Value& v) {
    if (v.kind == Value::Int) return static_cast<double>(v.int_value);
    if (v.kind == Value::Float) return v.float_value;
    throw ArchProblem{v.pos, std::string(name) + " must be a number, got " + v.text};
  }

  const LayerCall& call_;
  std::map<std::string, const Value*> values_;
};

bool is_one(const Value& v) {
  if (v.kind == Value::Int) return v.int_value == 1;
  if (v.kind == Value::Tuple) {
    for (const Value& item : v.items)
      if (item.kind != Value::Int || item.int_value != 1) return false;
    return !v.items.empty();
  }
  return false;
}
bool is_false(const Value& v) { return v.kind == Value::Bool && !v.bool_value; }
bool is_zeros(const Value& v) { return v.kind == Value::String && v.string_value == "zeros"; }
bool is_none(const Value& v) { return v.kind == Value::None; }
bool is_start_dim_one(const Value& v) { return v.kind == Value::Int && v.int_value == 1; }
bool is_end_dim_last(const Value& v) { return v.kind == Value::Int && v.int_value == -1; }

// ---------------------------------------------------------------- builders

// The layers, their PyTorch signatures, and how each is built.
ModulePtr build_layer(const LayerCall& call, Generator& gen) {
  const std::string& name = call.name;
  auto bind = [&](Signature signature) { return BoundArgs(call, signature); };
  // device and dtype are accepted as None, as PyTorch's factory arguments.
  auto check_factory_args = [](const BoundArgs& args) {
    args.require_default("device", "None", is_none);
    args.require_default("dtype", "None", is_none);
  };

  if (name == "Linear") {
    const BoundArgs args = bind({{"in_features", "out_features", "bias", "device", "dtype"}, 2});
    check_factory_args(args);
    return std::make_unique<Linear>(args.size("in_features", 0, 1), args.size("out_features", 0, 1),
                                    args.flag("bias", true), gen);
  }
  if (name == "Conv2d") {
    const BoundArgs args = bind({{"in_channels", "out_channels", "kernel_size", "stride", "padding",
                                  "dilation", "groups", "bias", "padding_mode", "device", "dtype"},
                                 3});
    check_factory_args(args);
    args.require_default("dilation", "1", is_one);
    args.require_default("groups", "1", is_one);
    args.require_default("padding_mode", "'zeros'", is_zeros);
    const int64_t kernel_size = args.size("kernel_size", 0, 1, true);
    const int64_t stride = args.size("stride", 1, 1, true);
    int64_t padding = 0;
    const Value* padding_value = args.find("padding");
    if (padding_value && padding_value->kind == Value::String) {
      // PyTorch's padding='valid' (none) and padding='same' (output size = input size).
      if (padding_value->string_value == "valid") {
        padding = 0;
      } else if (padding_value->string_value == "same") {
        if (stride != 1) args.fail("padding", "padding='same' needs stride=1");
        if (kernel_size % 2 == 0)
          args.fail("padding", "padding='same' with an even kernel_size is not supported");
        padding = (kernel_size - 1) / 2;
      } else {
        args.fail("padding",
                  "padding must be an integer, 'same' or 'valid', got " + padding_value->text);
      }
    } else {
      padding = args.size("padding", 0, 0, true);
    }
    return std::make_unique<Conv2d>(args.size("in_channels", 0, 1), args.size("out_channels", 0, 1),
                                    kernel_size, stride, padding, args.flag("bias", true), gen);
  }
  if (name == "BatchNorm1d" || name == "BatchNorm2d" || name == "BatchNorm3d") {
    const BoundArgs args = bind(
        {{"num_features", "eps", "momentum", "affine", "track_running_stats", "device", "dtype"},
         1});
    check_factory_args(args);
    const double eps = args.number("eps", 1e-5);
    if (!(eps > 0.0)) args.fail("eps", "eps must be positive, got " + args.find("eps")->text);
    const std::optional<double> momentum = args.optional_number("momentum", 0.1);
    if (momentum && !(*momentum >= 0.0 && *momentum <= 1.0))
      args.fail("momentum",
                "momentum must be in [0, 1] or None, got " + args.find("momentum")->text);
    return std::make_unique<BatchNorm>(name[9] - '0', args.size("num_features", 0, 1), eps,
                                       momentum, args.flag("affine", true),
                                       args.flag("track_running_stats", true));
  }
  if (name == "ReLU") {
    const BoundArgs args = bind({{"inplace"}, 0});
    args.flag("inplace", false);  // in-place or not, the values are the same
    return std::make_unique<ReLU>();
  }
  if (name == "LeakyReLU") {
    const BoundArgs args = bind({{"negative_slope", "inplace"}, 0});
    args.flag("inplace", false);
    return std::make_unique<LeakyReLU>(args.number("negative_slope", 0.01));
  }
  if (name == "Sigmoid") {
    bind({{}, 0});
    return std::make_unique<Sigmoid>();
  }
  if (name == "Tanh") {
    bind({{}, 0});
    return std::make_unique<Tanh>();
  }
  if (name == "MaxPool2d") {
    const BoundArgs args =
        bind({{"kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"}, 1});
    args.require_default("dilation", "1", is_one);
    args.require_default("return_indices", "False", is_false);
    args.require_default("ceil_mode", "False", is_false);
    const int64_t kernel_size = args.size("kernel_size", 0, 1, true);
    std::optional<int64_t> stride;
    const Value* stride_value = args.find("stride");
    if (stride_value && stride_value->kind != Value::None) stride = args.size("stride", 0, 1, true);
    const int64_t padding = args.size("padding", 0, 0, true);
    // PyTorch's rule: each window must hold at least one input element.
    if (padding > kernel_size / 2)
      args.fail("padding", "padding should be at most half of kernel_size, got padding=" +
                               std::to_string(padding) +
                               " with kernel_size=" + std::to_string(kernel_size));
    return std::make_unique<MaxPool2d>(kernel_size, stride, padding);
  }
  if (name == "Dropout") {
    const BoundArgs args = bind({{"p", "inplace"}, 0});
    args.flag("inplace", false);
    const double p = args.number("p", 0.5);
    if (!(p >= 0.0 && p < 1.0)) args.fail("p", "p must be in [0, 1), got " + args.find("p")->text);
    return std::make_unique<Dropout>(p, gen);
  }
  if (name == "Flatten") {
    const BoundArgs args = bind({{"start_dim", "end_dim"}, 0});
    args.require_default("start_dim", "1", is_start_dim_one);
    args.require_default("end_dim", "-1", is_end_dim_last);
    return std::make_unique<Flatten>();
  }
  throw ArchProblem{call.name_pos,
                    "unknown layer '" + name +
                        "'; known layers: Linear, Conv2d, BatchNorm1d, BatchNorm2d, BatchNorm3d, "
                        "ReLU, LeakyReLU, Sigmoid, Tanh, MaxPool2d, Dropout, Flatten"};
}

// ---------------------------------------------------------------- messages

// "  <the line holding pos>\n  <spaces>^ column C" (plus "line L, " for
// multi-line text); long lines are cut to a window around pos.
std::string caret_excerpt(const std::string& text, size_t pos) {
  pos = std::min(pos, text.size());
  const size_t newline_before = pos == 0 ? std::string::npos : text.rfind('\n', pos - 1);
  const size_t line_start = newline_before == std::string::npos ? 0 : newline_before + 1;
  size_t line_end = text.find('\n', pos);
  if (line_end == std::string::npos) line_end = text.size();
  size_t line_number = 1;
  for (size_t i = 0; i < line_start; ++i) line_number += text[i] == '\n';
  const size_t column =
      utf8_length(std::string_view(text).substr(line_start, pos - line_start)) + 1;

  constexpr size_t kWindow = 90;
  size_t from = line_start, to = line_end;
  std::string lead, tail;
  if (to - from > kWindow) {
    from = pos > line_start + kWindow / 2 ? pos - kWindow / 2 : line_start;
    to = std::min(line_end, from + kWindow);
    while (from > line_start && is_utf8_continuation(text[from])) --from;
    while (to < line_end && is_utf8_continuation(text[to])) ++to;
    if (from > line_start) lead = "...";
    if (to < line_end) tail = "...";
  }
  std::string line = lead + text.substr(from, to - from) + tail;
  for (char& c : line)
    if (c == '\t' || c == '\r') c = ' ';
  const bool multi_line = text.find('\n') != std::string::npos;
  const size_t caret_at =
      lead.size() + utf8_length(std::string_view(text).substr(from, pos - from));
  return "\n  " + line + "\n  " + std::string(caret_at, ' ') + "^ " +
         (multi_line ? "line " + std::to_string(line_number) + ", " : "") + "column " +
         std::to_string(column);
}

// Where the layer starting at pos ends: after its balanced ')' or, when the
// parentheses never balance, at the end of the text.
size_t layer_end_guess(const std::string& text, size_t pos) {
  int depth = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    if (text[i] == '(') ++depth;
    if (text[i] == ')' && --depth <= 0) return i + 1;
  }
  return text.size();
}

std::string layer_excerpt(const std::string& text, size_t pos, size_t end) {
  std::string s = text.substr(pos, end - pos);
  for (char& c : s)
    if (std::isspace(static_cast<unsigned char>(c))) c = ' ';
  constexpr size_t kMax = 80;
  if (s.size() > kMax) s = s.substr(0, kMax - 3) + "...";
  return s;
}

[[noreturn]] void throw_arch_error(const std::string& text, size_t pos, const std::string& where,
                                   const std::string& message) {
  throw Error(ErrorCode::invalid_argument, "arch: " + where + message + caret_excerpt(text, pos));
}

const std::vector<std::pair<std::string, std::string>>& presets() {
  // Must equal PRESETS in bench/train_vs_pytorch.py. mlp and mlp-bn are the
  // tutorial's network; with BN the hidden linears lose their bias (BN's shift
  // replaces it) and BN sits between the layer and its activation.
  static const std::vector<std::pair<std::string, std::string>> kPresets = {
      {"mlp", "Flatten(), Linear(784, 512), ReLU(), Linear(512, 256), ReLU(), Linear(256, 10)"},
      {"mlp-bn",
       "Flatten(), Linear(784, 512, bias=False), BatchNorm1d(512), ReLU(), "
       "Linear(512, 256, bias=False), BatchNorm1d(256), ReLU(), Linear(256, 10)"},
      {"cnn",
       "Conv2d(1, 32, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(32, 64, 3, padding=1), "
       "ReLU(), MaxPool2d(2), Flatten(), Linear(3136, 128), ReLU(), Linear(128, 10)"},
      {"cnn-bn",
       "Conv2d(1, 32, 3, padding=1, bias=False), BatchNorm2d(32), ReLU(), MaxPool2d(2), "
       "Conv2d(32, 64, 3, padding=1, bias=False), BatchNorm2d(64), ReLU(), MaxPool2d(2), "
       "Flatten(), Linear(3136, 128, bias=False), BatchNorm1d(128), ReLU(), Linear(128, 10)"},
  };
  return kPresets;
}

}  // namespace

std::unique_ptr<Sequential> parse_arch(const std::string& text, Generator& gen) {
  auto layer_context = [&](const LayerProblem& layer) {
    return "layer " + std::to_string(layer.index) + ", " +
           layer_excerpt(text, layer.layer_pos, layer_end_guess(text, layer.layer_pos)) + ": ";
  };
  std::vector<LayerCall> calls;
  try {
    Parser parser(text, tokenize(text));
    calls = parser.parse_arch();
  } catch (const ArchProblem& problem) {
    // A bad character (found before parsing) still names its layer: the text
    // cut just before it ends inside that layer, which the parser reports.
    std::string context;
    try {
      const std::string before = text.substr(0, problem.pos);
      Parser(before, tokenize(before)).parse_arch();
    } catch (const LayerProblem& layer) {
      context = layer_context(layer);
    } catch (const ArchProblem&) {
      // Outside any layer: no context to add.
    }
    throw_arch_error(text, problem.pos, context, problem.message);
  } catch (const LayerProblem& layer) {
    throw_arch_error(text, layer.problem.pos, layer_context(layer), layer.problem.message);
  }
  if (calls.empty())
    throw_arch_error(text, 0, "",
                     "no layers (an architecture is e.g. "
                     "\"Flatten(), Linear(784, 10)\")");

  auto net = std::make_unique<Sequential>();
  for (size_t i = 0; i < calls.size(); ++i) {
    try {
      net->add(build_layer(calls[i], gen));
    } catch (const ArchProblem& problem) {
      throw_arch_error(text, problem.pos,
                       "layer " + std::to_string(i) + ", " +
                           layer_excerpt(text, calls[i].name_pos, calls[i].end) + ": ",
                       problem.message);
    } catch (const Error& e) {
      // A constructor's own check (bnlab::Error) still names the layer.
      throw_arch_error(text, calls[i].name_pos,
                       "layer " + std::to_string(i) + ", " +
                           layer_excerpt(text, calls[i].name_pos, calls[i].end) + ": ",
                       e.what());
    }
  }
  return net;
}

std::string preset_arch(const std::string& name) {
  for (const auto& [preset, arch] : presets())
    if (preset == name) return arch;
  std::string names;
  for (const std::string& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
  throw Error(ErrorCode::invalid_argument, "unknown preset '" + name + "'; presets: " + names);
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& entry : presets()) names.push_back(entry.first);
  return names;
}

/* Walks the network's shapes: shape_{i+1} = child_i.output_shape(shape_i).
   The first child that rejects its input is named with its index (the same
   index as in the state-dict keys), its repr, and the input it was given;
   where the module's own message already starts with its name
   ("BatchNorm1d(11): input has 10 channels ..."), only the index is added. */
Shape check_shapes(Sequential& net, const Shape& input) {
  for (int64_t d : input)
    if (d < 1)
      throw Error(ErrorCode::invalid_argument,
                  "input shape " + shape_string(input) + " has a size below 1");
  Shape shape = input;
  for (size_t i = 0; i < net.size(); ++i) {
    try {
      shape = net[i].output_shape(shape);
    } catch (const Error& e) {
      const std::string repr = net[i].repr();
      const std::string type_name = repr.substr(0, repr.find('('));
      const std::string message = e.what();
      if (message.rfind(type_name + "(", 0) == 0)
        throw Error(e.code(), "layer " + std::to_string(i) + ", " + message);
      throw Error(e.code(), "layer " + std::to_string(i) + ", " + repr + ": input " +
                                shape_string(shape) + ": " + message);
    }
  }
  return shape;
}

}  // namespace bnlab::nn
