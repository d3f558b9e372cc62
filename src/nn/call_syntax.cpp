// The reader of PyTorch's call syntax (grammar and binding rules in call_syntax.hpp).
#include "nn/call_syntax.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>

namespace bnlab::nn::call_syntax {
namespace {

enum class TokenKind {
  name,
  integer,
  real,
  string,
  lparen,
  rparen,
  lbracket,
  rbracket,
  comma,
  equals,
  colon,
  dot,
  plus,
  minus,
  times,
  divide,
  floor_divide,
  end
};

struct Token {
  TokenKind kind = TokenKind::end;
  std::string text;  // the characters as written (a string's value without quotes)
  size_t pos = 0;    // byte offset of the first character in the arch text
  size_t end = 0;    // one past the last character
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
      token.kind = TokenKind::name;
    } else if (is_digit(c) || (c == '.' && i + 1 < text.size() && is_digit(text[i + 1]))) {
      // A number: digits [. digits] [e [sign] digits]; a sign before it is
      // the parser's unary operator, as in Python.
      bool is_float = false;
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
        throw ArchProblem{token.pos, "malformed number '" +
                                         excerpt(text.substr(token.pos, i + 1 - token.pos)) + "'"};
      token.kind = is_float ? TokenKind::real : TokenKind::integer;
    } else if (c == '\'' || c == '"') {
      const size_t close = text.find(c, i + 1);
      if (close == std::string_view::npos) throw ArchProblem{i, "unterminated string"};
      token.kind = TokenKind::string;
      token.text = std::string(text.substr(i + 1, close - i - 1));
      i = close + 1;
      token.end = i;
      tokens.push_back(token);
      continue;
    } else if (c == '/' && i + 1 < text.size() && text[i + 1] == '/') {
      token.kind = TokenKind::floor_divide;
      i += 2;
    } else {
      constexpr std::string_view kPunctuation = "(),=:.+-*/[]";
      constexpr TokenKind kPunctuationKinds[] = {
          TokenKind::lparen, TokenKind::rparen, TokenKind::comma,    TokenKind::equals,
          TokenKind::colon,  TokenKind::dot,    TokenKind::plus,     TokenKind::minus,
          TokenKind::times,  TokenKind::divide, TokenKind::lbracket, TokenKind::rbracket};
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

class Parser {
 public:
  Parser(std::string_view text, std::vector<Token> tokens)
      : text_(text), tokens_(std::move(tokens)) {}

  std::vector<LayerCall> parse() {
    // An optional nn.Sequential( ... ) around the list.
    bool wrapped = false;
    const size_t save = next_;
    if (peek().kind == TokenKind::name) {
      try {
        wrapped = parse_qualified_name() == "Sequential" && peek().kind == TokenKind::lparen;
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
    if (wrapped) expect(TokenKind::rparen, "')' closing Sequential(");
    if (peek().kind != TokenKind::end)
      throw ArchProblem{peek().pos,
                        "unexpected '" + excerpt(peek().text) + "' after the last layer"};
    return layers;
  }

 private:
  const Token& peek(size_t ahead = 0) const {
    return tokens_[std::min(next_ + ahead, tokens_.size() - 1)];
  }
  const Token& take() { return tokens_[std::min(next_++, tokens_.size() - 1)]; }
  static std::string describe(const Token& token) {
    return token.kind == TokenKind::end ? "the end of the text" : "'" + excerpt(token.text) + "'";
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
    const Token& first = expect(TokenKind::name, "a layer name");
    std::vector<const Token*> parts{&first};
    while (peek().kind == TokenKind::dot) {
      take();
      parts.push_back(&expect(TokenKind::name, "a name after '.'"));
    }
    const std::string name = parts.back()->text;
    std::string prefix;
    for (size_t i = 0; i + 1 < parts.size(); ++i) prefix += parts[i]->text + ".";
    if (!prefix.empty() && prefix != "nn." && prefix != "torch.nn.")
      throw ArchProblem{first.pos, "unknown prefix '" + excerpt(prefix) + "' (write " +
                                       excerpt(name) + ", nn." + excerpt(name) + " or torch.nn." +
                                       excerpt(name) + ")"};
    return name;
  }

  std::vector<LayerCall> parse_list(bool wrapped) {
    std::vector<LayerCall> layers;
    auto at_list_end = [&] {
      return peek().kind == TokenKind::end || (wrapped && peek().kind == TokenKind::rparen);
    };
    while (!at_list_end()) {
      const size_t index = layers.size();
      const size_t layer_pos = peek().pos;
      try {
        layers.push_back(parse_item(index));
      } catch (const ArchProblem& problem) {
        throw LayerProblem{index, layer_pos, problem};
      }
      if (peek().kind == TokenKind::comma) {
        take();
      } else if (peek().kind == TokenKind::rparen) {
        break;  // an unmatched ')': parse() names it
      } else if (!at_list_end() && !on_new_line(layers.back().end, peek().pos)) {
        throw ArchProblem{peek().pos,
                          "expected ',' after layer " + std::to_string(index) + ", " +
                              excerpt(text_.substr(layers.back().name_pos,
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
    if (peek().kind == TokenKind::lparen) {
      take();
      const Token& number = peek();
      if (number.kind != TokenKind::integer) {
        const bool named_child = number.kind == TokenKind::name &&
                                 peek(1).kind == TokenKind::rparen &&
                                 peek(2).kind == TokenKind::colon;
        throw ArchProblem{number.pos, "expected a layer name or '(" + std::to_string(index) +
                                          "):', found " + describe(number) +
                                          (named_child ? " (named children are not supported: "
                                                         "state-dict keys are indices)"
                                                       : "")};
      }
      take();
      if (number.text != std::to_string(index))
        throw ArchProblem{number.pos, "index (" + excerpt(number.text) +
                                          ") does not match the layer's position " +
                                          std::to_string(index)};
      expect(TokenKind::rparen, "')'");
      expect(TokenKind::colon, "':'");
    }
    call.name_pos = peek().pos;
    call.name = parse_qualified_name();
    expect(TokenKind::lparen, "'(' after " + excerpt(call.name));
    bool seen_keyword = false;
    while (peek().kind != TokenKind::rparen) {
      Argument arg;
      if (peek().kind == TokenKind::name && peek(1).kind == TokenKind::equals) {
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
      if (peek().kind == TokenKind::comma) {
        take();
      } else if (peek().kind != TokenKind::rparen) {
        throw ArchProblem{peek().pos, "expected ',' or ')' in " + excerpt(call.name) +
                                          "(...), found " + describe(peek())};
      }
    }
    call.end = take().end;
    return call;
  }

  // Each nested value costs a stack frame: deep nesting is refused, not a crash.
  class NestingGuard {
   public:
    NestingGuard(size_t& depth, size_t pos) : depth_(depth) {
      if (++depth_ > kMaxNesting) {
        --depth_;
        throw ArchProblem{pos, "values nested deeper than " + std::to_string(kMaxNesting) +
                                   " levels (the limit)"};
      }
    }
    ~NestingGuard() { --depth_; }
    NestingGuard(const NestingGuard&) = delete;
    NestingGuard& operator=(const NestingGuard&) = delete;

   private:
    size_t& depth_;
  };

  // value := sum; sum := product {("+" | "-") product};
  // product := unary {("*" | "/" | "//") unary}; unary := ("+" | "-") unary | atom.
  // Python's precedence: -7 // 2 is (-7) // 2.
  Value parse_value() {
    Value left = parse_product();
    while (peek().kind == TokenKind::plus || peek().kind == TokenKind::minus) {
      const Token& op = take();
      left = arithmetic(left, op, parse_product());
    }
    return left;
  }

  Value parse_product() {
    Value left = parse_unary();
    while (peek().kind == TokenKind::times || peek().kind == TokenKind::divide ||
           peek().kind == TokenKind::floor_divide) {
      const Token& op = take();
      left = arithmetic(left, op, parse_unary());
    }
    return left;
  }

  Value parse_unary() {
    const NestingGuard guard(depth_, peek().pos);
    if (peek().kind != TokenKind::plus && peek().kind != TokenKind::minus) return parse_atom();
    const Token& op = take();
    Value value = parse_unary();
    require_number(value, op);
    if (op.kind == TokenKind::minus) {
      if (value.kind == ValueKind::real) {
        value.float_value = -value.float_value;
      } else if (value.int_value == INT64_MIN) {
        throw_overflow(op.pos, value.end);
      } else {
        value.int_value = -value.int_value;
      }
    }
    value.pos = op.pos;
    value.text = excerpt(text_.substr(value.pos, value.end - value.pos));
    return value;
  }

  void require_number(const Value& value, const Token& op) const {
    if (value.kind != ValueKind::integer && value.kind != ValueKind::real)
      throw ArchProblem{value.pos, "unsupported operand for '" + op.text + "': " + value.text +
                                       " is not a number"};
  }

  [[noreturn]] void throw_overflow(size_t pos, size_t end) const {
    throw ArchProblem{pos, excerpt(text_.substr(pos, end - pos)) + " overflows a 64-bit integer"};
  }

  // left op right as Python computes it: integers stay integers (floor
  // division rounds toward minus infinity), a float operand or "/" gives a float.
  Value arithmetic(const Value& left, const Token& op, const Value& right) const {
    require_number(left, op);
    require_number(right, op);
    Value result;
    result.pos = left.pos;
    result.end = right.end;
    result.text = excerpt(text_.substr(result.pos, result.end - result.pos));
    const bool divides = op.kind == TokenKind::divide || op.kind == TokenKind::floor_divide;
    if (divides &&
        (right.kind == ValueKind::integer ? right.int_value == 0 : right.float_value == 0.0))
      throw ArchProblem{right.pos, "division by zero in " + result.text};
    if (left.kind == ValueKind::integer && right.kind == ValueKind::integer &&
        op.kind != TokenKind::divide) {
      const int64_t a = left.int_value, b = right.int_value;
      int64_t r = 0;
      bool overflow = false;
      switch (op.kind) {
        case TokenKind::plus:
          overflow = __builtin_add_overflow(a, b, &r);
          break;
        case TokenKind::minus:
          overflow = __builtin_sub_overflow(a, b, &r);
          break;
        case TokenKind::times:
          overflow = __builtin_mul_overflow(a, b, &r);
          break;
        default:
          overflow = a == INT64_MIN && b == -1;
          if (!overflow) r = a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0);
      }
      if (overflow) throw_overflow(result.pos, result.end);
      result.kind = ValueKind::integer;
      result.int_value = r;
      return result;
    }
    const double a =
        left.kind == ValueKind::integer ? static_cast<double>(left.int_value) : left.float_value;
    const double b =
        right.kind == ValueKind::integer ? static_cast<double>(right.int_value) : right.float_value;
    double r = 0.0;
    switch (op.kind) {
      case TokenKind::plus:
        r = a + b;
        break;
      case TokenKind::minus:
        r = a - b;
        break;
      case TokenKind::times:
        r = a * b;
        break;
      case TokenKind::divide:
        r = a / b;
        break;
      default:
        r = std::floor(a / b);
    }
    if (!std::isfinite(r))
      throw ArchProblem{result.pos, "number " + result.text + " is out of range"};
    result.kind = ValueKind::real;
    result.float_value = r;
    return result;
  }

  Value parse_atom() {
    const Token& token = take();
    Value value;
    value.pos = token.pos;
    switch (token.kind) {
      case TokenKind::integer: {
        value.kind = ValueKind::integer;
        const auto [ptr, ec] = std::from_chars(
            token.text.data(), token.text.data() + token.text.size(), value.int_value);
        if (ec != std::errc() || ptr != token.text.data() + token.text.size())
          throw ArchProblem{token.pos, "integer " + excerpt(token.text) + " is out of range"};
        break;
      }
      case TokenKind::real: {
        value.kind = ValueKind::real;
        // strtod reads the C locale's decimal point; the tokenizer has checked the form.
        value.float_value = std::strtod(token.text.c_str(), nullptr);
        if (!std::isfinite(value.float_value))
          throw ArchProblem{token.pos, "number " + excerpt(token.text) + " is out of range"};
        break;
      }
      case TokenKind::string:
        value.kind = ValueKind::string;
        value.string_value = token.text;
        break;
      case TokenKind::name:
        if (token.text == "True" || token.text == "False") {
          value.kind = ValueKind::boolean;
          value.bool_value = token.text == "True";
        } else if (token.text == "None") {
          value.kind = ValueKind::none;
        } else {
          const bool lower_literal =
              token.text == "true" || token.text == "false" || token.text == "none";
          throw ArchProblem{token.pos, "'" + excerpt(token.text) + "' is not a value" +
                                           (lower_literal ? " (Python writes True, False, None)"
                                                          : " (expected a number, True, False, "
                                                            "None or a string)")};
        }
        break;
      case TokenKind::lparen:
      case TokenKind::lbracket: {
        // As in Python, "(3)" is the number 3 and "(3,)" a tuple of one; a
        // list "[3]" is read as a tuple (LayerNorm([6, 6]) as LayerNorm((6, 6))).
        const bool list = token.kind == TokenKind::lbracket;
        const TokenKind close = list ? TokenKind::rbracket : TokenKind::rparen;
        value.kind = ValueKind::tuple;
        bool saw_comma = false;
        while (peek().kind != close) {
          value.items.push_back(parse_value());
          if (peek().kind == TokenKind::comma) {
            take();
            saw_comma = true;
          } else if (peek().kind != close) {
            throw ArchProblem{peek().pos,
                              list ? "expected ',' or ']' in a list, found " + describe(peek())
                                   : "expected ',' or ')' in a tuple, found " + describe(peek())};
          }
        }
        take();
        if (!list && value.items.size() == 1 && !saw_comma) {
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
    value.text = excerpt(text_.substr(value.pos, value.end - value.pos));
    return value;
  }

  std::string_view text_;
  std::vector<Token> tokens_;
  size_t next_ = 0;
  size_t depth_ = 0;  // values being parsed, one inside the other
};

size_t count_positional(const LayerCall& call) {
  size_t n = 0;
  for (const Argument& a : call.args) n += a.keyword.empty();
  return n;
}

int64_t check_min(const char* name, const Value& v, int64_t min_value) {
  if (v.int_value < min_value)
    throw ArchProblem{
        v.pos, std::string(name) + " must be " +
                   (min_value == 0 ? "non-negative" : "at least " + std::to_string(min_value)) +
                   ", got " + std::to_string(v.int_value)};
  return v.int_value;
}

double number_value(const char* name, const Value& v) {
  if (v.kind == ValueKind::integer) return static_cast<double>(v.int_value);
  if (v.kind == ValueKind::real) return v.float_value;
  throw ArchProblem{v.pos, std::string(name) + " must be a number, got " + v.text};
}

}  // namespace

std::vector<LayerCall> parse_calls(std::string_view text) {
  return Parser(text, tokenize(text)).parse();
}

BoundArgs::BoundArgs(const LayerCall& call, const Signature& signature) : call_(call) {
  if (signature.any_arguments) return;
  // The parameter names; device and dtype (accepted as None only) are left
  // out of the keyword hint.
  auto signature_text = [&](bool with_factory_args) {
    std::string s;
    for (const char* p : signature.params)
      if (with_factory_args || (std::string_view(p) != "device" && std::string_view(p) != "dtype"))
        s += std::string(s.empty() ? "" : ", ") + p;
    return s;
  };
  size_t positional = 0;
  for (const Argument& arg : call.args) {
    if (arg.keyword.empty()) {
      if (positional >= signature.params.size())
        throw ArchProblem{arg.value.pos,
                          excerpt(call.name) + "() takes " +
                              (signature.params.empty() ? "" : "at most ") +
                              std::to_string(signature.params.size()) + " positional argument" +
                              (signature.params.size() == 1 ? "" : "s") +
                              (signature.params.empty() ? "" : " (" + signature_text(true) + ")") +
                              " but " + std::to_string(count_positional(call)) + " were given"};
      values_[signature.params[positional++]] = &arg.value;
      continue;
    }
    bool known = false;
    for (const char* p : signature.params) known = known || arg.keyword == p;
    if (!known)
      throw ArchProblem{
          arg.keyword_pos,
          "unexpected keyword '" + excerpt(arg.keyword) + "'" +
              did_you_mean(
                  arg.keyword,
                  std::vector<std::string>(signature.params.begin(), signature.params.end()), "'") +
              "; " + excerpt(call.name) +
              (signature.params.empty() ? " takes no arguments"
                                        : " takes " + signature_text(false))};
    if (values_.count(arg.keyword))
      throw ArchProblem{arg.keyword_pos,
                        "multiple values for argument '" + excerpt(arg.keyword) + "'"};
    values_[arg.keyword] = &arg.value;
  }
  for (size_t i = 0; i < signature.required; ++i)
    if (!values_.count(signature.params[i]))
      throw ArchProblem{call.end - 1, excerpt(call.name) + "() missing required argument '" +
                                          signature.params[i] + "'"};
}

const Value* BoundArgs::find(const char* name) const {
  const auto it = values_.find(name);
  return it == values_.end() ? nullptr : it->second;
}

int64_t BoundArgs::size(const char* name, int64_t default_value, int64_t min_value,
                        bool allow_pair) const {
  const Value* v = find(name);
  if (!v) return default_value;
  if (allow_pair && v->kind == ValueKind::tuple) {
    if (v->items.size() != 2 || v->items[0].kind != ValueKind::integer ||
        v->items[1].kind != ValueKind::integer)
      throw ArchProblem{
          v->pos, std::string(name) + " must be an integer or a pair of integers, got " + v->text};
    if (v->items[0].int_value != v->items[1].int_value)
      throw ArchProblem{v->pos, "non-square " + std::string(name) + "=" + v->text +
                                    " is not supported (bnlab's " + excerpt(call_.name) +
                                    " takes one size for both dimensions)"};
    return check_min(name, v->items[0], min_value);
  }
  if (v->kind != ValueKind::integer)
    throw ArchProblem{v->pos, std::string(name) + " must be an integer, got " + v->text};
  return check_min(name, *v, min_value);
}

Size2 BoundArgs::size_pair(const char* name, Size2 default_value, int64_t min_value,
                              bool allow_none) const {
  const Value* v = find(name);
  if (!v) return default_value;
  if (v->kind == ValueKind::integer) {
    const int64_t size = check_min(name, *v, min_value);
    return {size, size, false};
  }
  auto item = [&](const Value& item) -> int64_t {
    if (allow_none && item.kind == ValueKind::none) return 0;
    if (item.kind != ValueKind::integer)
      throw ArchProblem{v->pos, std::string(name) + " must be an integer or a pair of integers" +
                                    (allow_none ? " (or None)" : "") + ", got " + v->text};
    return check_min(name, item, min_value);
  };
  if (v->kind != ValueKind::tuple || v->items.size() != 2)
    throw ArchProblem{v->pos,
                      std::string(name) + " must be an integer or a pair of integers, got " + v->text};
  return {item(v->items[0]), item(v->items[1]), true};
}

std::optional<int64_t> BoundArgs::optional_integer(const char* name,
                                                   std::optional<int64_t> default_value) const {
  const Value* v = find(name);
  if (!v) return default_value;
  if (v->kind == ValueKind::none) return std::nullopt;
  if (v->kind != ValueKind::integer)
    throw ArchProblem{v->pos, std::string(name) + " must be an integer or None, got " + v->text};
  return v->int_value;
}

bool BoundArgs::flag(const char* name, bool default_value) const {
  const Value* v = find(name);
  if (!v) return default_value;
  if (v->kind != ValueKind::boolean)
    throw ArchProblem{v->pos, std::string(name) + " must be True or False, got " + v->text};
  return v->bool_value;
}

double BoundArgs::number(const char* name, double default_value) const {
  const Value* v = find(name);
  if (!v) return default_value;
  return number_value(name, *v);
}

std::optional<double> BoundArgs::optional_number(const char* name,
                                                 std::optional<double> default_value) const {
  const Value* v = find(name);
  if (!v) return default_value;
  if (v->kind == ValueKind::none) return std::nullopt;
  return number_value(name, *v);
}

void BoundArgs::require_default(const char* name, const std::string& default_text,
                                bool (*is_default)(const Value&)) const {
  const Value* v = find(name);
  if (v && !is_default(*v))
    throw ArchProblem{v->pos, std::string(name) + "=" + v->text + " is not supported (only " +
                                  name + "=" + default_text + ")"};
}

void BoundArgs::fail(const char* name, const std::string& message) const {
  const Value* v = find(name);
  throw ArchProblem{v ? v->pos : call_.name_pos, message};
}

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

std::string layer_excerpt(const std::string& text, size_t pos, size_t end) {
  std::string s = text.substr(pos, end - pos);
  for (char& c : s)
    if (std::isspace(static_cast<unsigned char>(c))) c = ' ';
  constexpr size_t kMax = 80;
  if (s.size() > kMax) s = s.substr(0, kMax - 3) + "...";
  return s;
}

std::string layer_excerpt(const std::string& text, size_t pos) {
  // The layer ends after its balanced ')' or, when the parentheses never
  // balance, at the end of the text.
  int64_t depth = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    if (text[i] == '(') ++depth;
    if (text[i] == ')' && --depth <= 0) return layer_excerpt(text, pos, i + 1);
  }
  return layer_excerpt(text, pos, text.size());
}

}  // namespace bnlab::nn::call_syntax
