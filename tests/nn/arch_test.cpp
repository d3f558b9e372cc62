// The architecture text parser: PyTorch's notation in, the right modules out
// (checked through their PyTorch reprs), and every kind of bad text rejected
// with a message naming the layer, the problem and the column.
#include "bnlab/nn/arch.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "bnlab/error.hpp"

namespace bnlab::nn {
namespace {

std::unique_ptr<Sequential> parse(const std::string& text, uint64_t seed = 0) {
  Generator gen(seed);
  return parse_arch(text, gen);
}

std::vector<std::string> child_reprs(Sequential& net) {
  std::vector<std::string> reprs;
  for (size_t i = 0; i < net.size(); ++i) reprs.push_back(net[i].repr());
  return reprs;
}

// The message parse_arch throws for text, or "" when it parses.
std::string arch_error(const std::string& text) {
  try {
    parse(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

template <typename T>
T& child(Sequential& net, size_t i) {
  T* module = dynamic_cast<T*>(&net[i]);
  if (!module) throw std::runtime_error("child " + std::to_string(i) + " is " + net[i].repr());
  return *module;
}

TEST(Arch, ParsesTheTutorialNetwork) {
  auto net = parse(preset_arch("mlp-bn"));
  EXPECT_EQ(child_reprs(*net),
            (std::vector<std::string>{
                "Flatten(start_dim=1, end_dim=-1)",
                "Linear(in_features=784, out_features=512, bias=False)",
                "BatchNorm1d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)",
                "ReLU()",
                "Linear(in_features=512, out_features=256, bias=False)",
                "BatchNorm1d(256, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)",
                "ReLU()",
                "Linear(in_features=256, out_features=10, bias=True)",
            }));
}

TEST(Arch, AcceptsEveryKeywordOfTheIssue) {
  auto net = parse(
      "Linear(8, 6, bias=False), BatchNorm1d(6, momentum=0.3), BatchNorm1d(6, momentum=None), "
      "BatchNorm1d(6, affine=False), BatchNorm1d(6, track_running_stats=False), "
      "BatchNorm1d(6, eps=1e-3), Dropout(p=0.25), LeakyReLU(negative_slope=0.2), "
      "Conv2d(1, 4, kernel_size=3, stride=2, padding=1), MaxPool2d(kernel_size=3, stride=1, "
      "padding=1), Sigmoid(), Tanh(), Flatten(), ReLU()");
  ASSERT_EQ(net->size(), 14u);
  EXPECT_FALSE(child<Linear>(*net, 0).bias.has_value());
  EXPECT_EQ(child<BatchNorm>(*net, 1).momentum, 0.3);
  EXPECT_FALSE(child<BatchNorm>(*net, 2).momentum.has_value());
  EXPECT_FALSE(child<BatchNorm>(*net, 3).affine);
  EXPECT_TRUE(child<BatchNorm>(*net, 3).track_running_stats);
  EXPECT_FALSE(child<BatchNorm>(*net, 4).track_running_stats);
  EXPECT_EQ(child<BatchNorm>(*net, 5).eps, 1e-3);
  EXPECT_EQ(child<Dropout>(*net, 6).p, 0.25);
  EXPECT_EQ(child<LeakyReLU>(*net, 7).negative_slope, 0.2);
  const Conv2d& conv = child<Conv2d>(*net, 8);
  EXPECT_EQ(conv.in_channels, 1);
  EXPECT_EQ(conv.out_channels, 4);
  EXPECT_EQ(conv.kernel_size, 3);
  EXPECT_EQ(conv.stride, 2);
  EXPECT_EQ(conv.padding, 1);
  EXPECT_TRUE(conv.bias.has_value());
  const MaxPool2d& pool = child<MaxPool2d>(*net, 9);
  EXPECT_EQ(pool.kernel_size, 3);
  EXPECT_EQ(pool.stride, 1);
  EXPECT_EQ(pool.padding, 1);
  EXPECT_EQ((*net)[10].repr(), "Sigmoid()");
  EXPECT_EQ((*net)[11].repr(), "Tanh()");
  EXPECT_EQ((*net)[12].repr(), "Flatten(start_dim=1, end_dim=-1)");
  EXPECT_EQ((*net)[13].repr(), "ReLU()");
}

TEST(Arch, PositionalArgumentsFollowPyTorchsOrder) {
  // BatchNorm1d(num_features, eps, momentum, affine, track_running_stats).
  auto net = parse(
      "BatchNorm2d(4, 0.001, 0.2, False, False), Conv2d(2, 3, 5, 2, 1), "
      "MaxPool2d(2), MaxPool2d(3, 2, 1), Dropout(0.1), LeakyReLU(0.3), BatchNorm3d(5)");
  const BatchNorm& bn = child<BatchNorm>(*net, 0);
  EXPECT_EQ(bn.dims, 2);
  EXPECT_EQ(bn.num_features, 4);
  EXPECT_EQ(bn.eps, 0.001);
  EXPECT_EQ(bn.momentum, 0.2);
  EXPECT_FALSE(bn.affine);
  EXPECT_FALSE(bn.track_running_stats);
  const Conv2d& conv = child<Conv2d>(*net, 1);
  EXPECT_EQ(conv.kernel_size, 5);
  EXPECT_EQ(conv.stride, 2);
  EXPECT_EQ(conv.padding, 1);
  EXPECT_EQ(child<MaxPool2d>(*net, 2).stride, 2);  // stride=None means kernel_size
  EXPECT_EQ(child<MaxPool2d>(*net, 3).stride, 2);
  EXPECT_EQ(child<MaxPool2d>(*net, 3).padding, 1);
  EXPECT_EQ(child<Dropout>(*net, 4).p, 0.1);
  EXPECT_EQ(child<LeakyReLU>(*net, 5).negative_slope, 0.3);
  EXPECT_EQ(child<BatchNorm>(*net, 6).dims, 3);
  EXPECT_EQ(child<BatchNorm>(*net, 6).momentum, 0.1);
  EXPECT_EQ(child<BatchNorm>(*net, 6).eps, 1e-5);
}

TEST(Arch, DefaultsArePyTorchs) {
  auto net = parse("Linear(3, 2), Conv2d(1, 2, 3), Dropout(), LeakyReLU(), MaxPool2d(2, None)");
  EXPECT_TRUE(child<Linear>(*net, 0).bias.has_value());
  EXPECT_EQ(child<Conv2d>(*net, 1).stride, 1);
  EXPECT_EQ(child<Conv2d>(*net, 1).padding, 0);
  EXPECT_TRUE(child<Conv2d>(*net, 1).bias.has_value());
  EXPECT_EQ(child<Dropout>(*net, 2).p, 0.5);
  EXPECT_EQ(child<LeakyReLU>(*net, 3).negative_slope, 0.01);
  EXPECT_EQ(child<MaxPool2d>(*net, 4).stride, 2);
}

TEST(Arch, NumbersAreReadAsPythonReadsThem) {
  auto net = parse(
      "BatchNorm1d(2, eps=1e-3, momentum=.5), BatchNorm1d(2, eps=2.5E-4, momentum=1), "
      "LeakyReLU(-0.5), LeakyReLU(+1.)");
  EXPECT_EQ(child<BatchNorm>(*net, 0).eps, 1e-3);
  EXPECT_EQ(child<BatchNorm>(*net, 0).momentum, 0.5);
  EXPECT_EQ(child<BatchNorm>(*net, 1).eps, 2.5e-4);
  EXPECT_EQ(child<BatchNorm>(*net, 1).momentum, 1.0);  // an int where a float is expected
  EXPECT_EQ(child<LeakyReLU>(*net, 2).negative_slope, -0.5);
  EXPECT_EQ(child<LeakyReLU>(*net, 3).negative_slope, 1.0);
}

TEST(Arch, AcceptsPrefixesWrapperWhitespaceAndTrailingCommas) {
  const std::string plain = "Flatten(), Linear(4, 3, bias=False), ReLU()";
  auto expected = child_reprs(*parse(plain));
  for (const std::string& text : {
           std::string("nn.Flatten(), nn.Linear(4, 3, bias=False), nn.ReLU()"),
           std::string("torch.nn.Flatten(), torch.nn.Linear(4, 3, bias=False), torch.nn.ReLU()"),
           std::string("nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False), nn.ReLU())"),
           std::string("Sequential(Flatten(), Linear(4, 3, bias=False), ReLU(),)"),
           std::string("\n  Flatten( ),\n\tLinear( 4 ,3,\n bias = False , ),\n  ReLU()\n,\n"),
       }) {
    auto net = parse(text);
    EXPECT_EQ(child_reprs(*net), expected) << text;
  }
}

TEST(Arch, AcceptsWhatPrintModelShows) {
  // print(model) of an nn.Sequential in PyTorch 1.13, pasted as is.
  const std::string printed =
      "Sequential(\n"
      "  (0): Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)\n"
      "  (1): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
      "  (2): ReLU(inplace=True)\n"
      "  (3): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)\n"
      "  (4): Dropout(p=0.5, inplace=False)\n"
      "  (5): Flatten(start_dim=1, end_dim=-1)\n"
      "  (6): Linear(in_features=1568, out_features=10, bias=True)\n"
      ")";
  auto net = parse(printed);
  ASSERT_EQ(net->size(), 7u);
  EXPECT_EQ(child<Conv2d>(*net, 0).kernel_size, 3);
  EXPECT_EQ(child<Conv2d>(*net, 0).padding, 1);
  EXPECT_FALSE(child<Conv2d>(*net, 0).bias.has_value());
  EXPECT_EQ(child<MaxPool2d>(*net, 3).stride, 2);
  EXPECT_EQ(net->output_shape({2, 1, 28, 28}), (Shape{2, 10}));

  // And bnlab's own repr reads back into the same network.
  auto reparsed = parse(net->repr());
  EXPECT_EQ(reparsed->repr(), net->repr());
}

TEST(Arch, ParenthesesAroundANumberAreTheNumber) {
  auto net = parse("Conv2d(1, 2, kernel_size=(3)), MaxPool2d(((2)))");
  EXPECT_EQ(child<Conv2d>(*net, 0).kernel_size, 3);
  EXPECT_EQ(child<MaxPool2d>(*net, 1).kernel_size, 2);
}

TEST(Arch, ConvPaddingSameAndValid) {
  auto net = parse("Conv2d(1, 2, 5, padding='same'), Conv2d(2, 2, 3, padding=\"valid\")");
  EXPECT_EQ(child<Conv2d>(*net, 0).padding, 2);
  EXPECT_EQ(child<Conv2d>(*net, 1).padding, 0);
}

TEST(Arch, DrawsInitialWeightsInLayerOrderFromTheGenerator) {
  auto parsed = parse("Linear(5, 4), ReLU(), Linear(4, 3, bias=False)", 42);
  Generator gen(42);
  Linear first(5, 4, true, gen);
  Linear second(4, 3, false, gen);
  const Linear& a = child<Linear>(*parsed, 0);
  const Linear& b = child<Linear>(*parsed, 2);
  for (int64_t i = 0; i < first.weight.value.numel(); ++i)
    EXPECT_EQ(a.weight.value[i], first.weight.value[i]);
  for (int64_t i = 0; i < first.bias->value.numel(); ++i)
    EXPECT_EQ(a.bias->value[i], first.bias->value[i]);
  for (int64_t i = 0; i < second.weight.value.numel(); ++i)
    EXPECT_EQ(b.weight.value[i], second.weight.value[i]);
}

// ---------------------------------------------------------------- errors

struct BadArch {
  std::string text;
  std::vector<std::string> expected;  // substrings of the message
};

TEST(Arch, RejectsBadTextNamingLayerAndProblem) {
  const std::vector<BadArch> cases = {
      {"Linear(784, 10), BatchNorm1d(11, foo=2)",
       {"layer 1, BatchNorm1d(11, foo=2)", "unexpected keyword 'foo'", "num_features, eps"}},
      {"Linear(784)", {"layer 0", "missing required argument 'out_features'"}},
      {"Conv2d(1, 2)", {"missing required argument 'kernel_size'"}},
      {"Linear(784, 10, bias=True, bias=False)", {"multiple values for argument 'bias'"}},
      {"Linear(784, 10, True, bias=False)", {"multiple values for argument 'bias'"}},
      {"Linear(784, 10, bias=1)", {"bias must be True or False, got 1"}},
      {"Linear(784, 10, bias=false)", {"'false' is not a value", "Python writes True"}},
      {"Linear(-1, 10)", {"in_features must be at least 1, got -1"}},
      {"Linear(784, 0)", {"out_features must be at least 1, got 0"}},
      {"Linear(784.0, 10)", {"in_features must be an integer, got 784.0"}},
      {"Linear(99999999999999999999, 10)", {"out of range"}},
      {"Linear(784, 10, False, None, None, 1)",
       {"Linear() takes at most 5 positional arguments (in_features, out_features, bias, device, "
        "dtype) but 6 were given"}},
      {"Linear(784, 10, device='cuda')", {"device='cuda' is not supported (only device=None)"}},
      {"Sigmoid(1)", {"Sigmoid() takes 0 positional arguments but 1 were given"}},
      {"Tanh(inplace=True)", {"unexpected keyword 'inplace'", "Tanh takes no arguments"}},
      {"Linear(bias=False, 784, 10)", {"positional argument follows keyword argument"}},
      {"Dropout(p=1.0)", {"p must be in [0, 1), got 1.0"}},
      {"Dropout(-0.1)", {"p must be in [0, 1), got -0.1"}},
      {"Dropout(p='half')", {"p must be a number, got 'half'"}},
      {"BatchNorm1d(4, momentum=2)", {"momentum must be in [0, 1] or None, got 2"}},
      {"BatchNorm1d(4, eps=0)", {"eps must be positive, got 0"}},
      {"BatchNorm1d(4, eps=-1e-5)", {"eps must be positive"}},
      {"Conv2d(1, 2, 3, padding=-1)", {"padding must be non-negative, got -1"}},
      {"Conv2d(1, 2, 3, stride=0)", {"stride must be at least 1, got 0"}},
      {"Conv2d(1, 2, 3, dilation=2)", {"dilation=2 is not supported (only dilation=1)"}},
      {"Conv2d(1, 2, 3, groups=2)", {"groups=2 is not supported"}},
      {"Conv2d(1, 2, (3, 5))", {"non-square kernel_size=(3, 5) is not supported"}},
      {"Conv2d(1, 2, 4, padding='same')", {"even kernel_size"}},
      {"Conv2d(1, 2, 3, padding='full')", {"padding must be an integer, 'same' or 'valid'"}},
      {"MaxPool2d(2, padding=2)", {"padding should be at most half of kernel_size"}},
      {"MaxPool2d(2, ceil_mode=True)", {"ceil_mode=True is not supported"}},
      {"Flatten(0)", {"start_dim=0 is not supported (only start_dim=1)"}},
      {"Linaer(3, 4)", {"layer 0", "unknown layer 'Linaer'", "known layers: Linear"}},
      {"keras.Linear(3, 4)", {"unknown prefix 'keras.'"}},
      {"Linear(784, 10) ReLU()", {"expected ',' after layer 0, Linear(784, 10), found 'ReLU'"}},
      {"Linear(784, 10, bias=Flase), ReLU()",
       {"layer 0, Linear(784, 10, bias=Flase): 'Flase' is not a value"}},
      {"Linear(784, 10),, ReLU()", {"layer 1", "expected a layer name, found ','"}},
      {"Linear(784, 10), ReLU(", {"layer 1", "found the end of the text"}},
      {"Linear(784 10)", {"expected ',' or ')' in Linear(...), found '10'"}},
      {"Linear(3, 4); ReLU()", {"unexpected character ';'"}},
      {"Linear(3, 4x)", {"malformed number '4x'"}},
      {"Linear(3, 4, bias='False)", {"unterminated string"}},
      {"Sequential(Linear(3, 4)", {"expected ')' closing Sequential("}},
      {"Linear(3, 4))", {"unexpected ')' after the last layer"}},
      {"Sequential(\n  (1): Linear(3, 4)\n)", {"index (1) does not match the layer's position 0"}},
      {"Sequential(\n  (fc1): Linear(3, 4)\n)", {"named children are not supported"}},
      {"Conv2d(1, 2, 3, padding=(1,))", {"padding must be an integer or a pair of integers"}},
      {"", {"no layers"}},
      {"  \n ", {"no layers"}},
  };
  for (const BadArch& c : cases) {
    const std::string message = arch_error(c.text);
    ASSERT_FALSE(message.empty()) << "accepted: " << c.text;
    EXPECT_EQ(message.rfind("arch: ", 0), 0u) << message;
    EXPECT_NE(message.find("column"), std::string::npos) << message;
    for (const std::string& part : c.expected)
      EXPECT_NE(message.find(part), std::string::npos)
          << "text: " << c.text << "\nmessage: " << message << "\nmissing: " << part;
  }
}

TEST(Arch, CaretPointsAtTheProblem) {
  EXPECT_EQ(arch_error("Linear(784, 10), BatchNorm1d(11, foo=2)"),
            "arch: layer 1, BatchNorm1d(11, foo=2): unexpected keyword 'foo'; BatchNorm1d takes "
            "num_features, eps, momentum, affine, track_running_stats\n"
            "  Linear(784, 10), BatchNorm1d(11, foo=2)\n"
            "                                   ^ column 34");
  // Multi-line text: the message shows the line holding the problem.
  EXPECT_EQ(arch_error("Flatten(),\nLinear(784, -3)"),
            "arch: layer 1, Linear(784, -3): out_features must be at least 1, got -3\n"
            "  Linear(784, -3)\n"
            "              ^ line 2, column 13");
}

TEST(Arch, TypographicQuotesAreNamedAndTheCaretCountsCharacters) {
  // Pasted from a web page: padding=\u201csame\u201d, after a UTF-8 "\u00b5" in a string.
  EXPECT_EQ(arch_error("Dropout(p='\u00b5'), Conv2d(1, 2, 3, padding=\u201csame\u201d)"),
            "arch: layer 1, Conv2d(1, 2, 3, padding=\u201csame\u201d): unexpected character "
            "'\u201c' (write ' or \" for a string)\n"
            "  Dropout(p='\u00b5'), Conv2d(1, 2, 3, padding=\u201csame\u201d)\n"
            "                                          ^ column 41");
}

TEST(Arch, LongLinesAreCutAroundTheCaret) {
  std::string text;
  for (int i = 0; i < 20; ++i) text += "Linear(10, 10), ";
  text += "Linear(10, 10, bias=0)";
  const std::string message = arch_error(text);
  EXPECT_NE(message.find("layer 20, Linear(10, 10, bias=0): bias must be True or False, got 0"),
            std::string::npos)
      << message;
  // Each line of the excerpt stays short and the caret sits under "0)".
  std::istringstream lines(message);
  std::string line, excerpt, caret;
  std::getline(lines, line);
  std::getline(lines, excerpt);
  std::getline(lines, caret);
  EXPECT_LT(excerpt.size(), 110u) << excerpt;
  const size_t caret_at = caret.find('^');
  ASSERT_NE(caret_at, std::string::npos);
  EXPECT_EQ(excerpt.substr(caret_at, 2), "0)") << excerpt << "\n" << caret;
  EXPECT_NE(caret.find("column " + std::to_string(text.size() - 1)), std::string::npos) << caret;
}

// ---------------------------------------------------------------- presets, shapes

TEST(Arch, PresetsParseAndMapImagesToTenClasses) {
  EXPECT_EQ(preset_names(), (std::vector<std::string>{"mlp", "mlp-bn", "cnn", "cnn-bn"}));
  for (const std::string& name : preset_names()) {
    auto net = parse(preset_arch(name));
    EXPECT_EQ(net->output_shape({5, 1, 28, 28}), (Shape{5, 10})) << name;
  }
}

TEST(Arch, PresetsHavePyTorchsParameterCounts) {
  // sum(p.numel() for p in model.parameters()) of the same nn.Sequential.
  const std::vector<std::pair<std::string, int64_t>> counts = {
      {"mlp", 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10},
      {"mlp-bn", 784 * 512 + 2 * 512 + 512 * 256 + 2 * 256 + 256 * 10 + 10},
      {"cnn", 32 * 9 + 32 + 64 * 32 * 9 + 64 + 3136 * 128 + 128 + 128 * 10 + 10},
      {"cnn-bn", 32 * 9 + 2 * 32 + 64 * 32 * 9 + 2 * 64 + 3136 * 128 + 2 * 128 + 128 * 10 + 10},
  };
  for (const auto& [name, expected] : counts) {
    auto net = parse(preset_arch(name));
    int64_t total = 0;
    for (auto& [key, parameter] : net->parameters()) total += parameter->value.numel();
    EXPECT_EQ(total, expected) << name;
  }
}

TEST(Arch, PresetsEqualTheBenchmarkScripts) {
  // bench/train_vs_pytorch.py trains the same presets in PyTorch; its PRESETS
  // dict (adjacent string literals concatenated) must hold the same texts.
  std::ifstream file(std::string(BNLAB_GOLDEN_DIR) + "/../../bench/train_vs_pytorch.py");
  if (!file) GTEST_SKIP() << "bench/train_vs_pytorch.py not found";
  std::stringstream buffer;
  buffer << file.rdbuf();
  const std::string script = buffer.str();
  const size_t begin = script.find("PRESETS = {");
  ASSERT_NE(begin, std::string::npos);
  const size_t end = script.find("\n}", begin);
  std::map<std::string, std::string> found;
  std::string key, value;
  for (size_t i = begin; i < end; ++i) {
    if (script[i] == '"') {
      const size_t close = script.find('"', i + 1);
      const std::string literal = script.substr(i + 1, close - i - 1);
      i = close;
      size_t after = i + 1;
      while (after < end && script[after] == ' ') ++after;
      if (script[after] == ':') {
        if (!key.empty()) found[key] = value;
        key = literal;
        value.clear();
      } else {
        value += literal;
      }
    }
  }
  if (!key.empty()) found[key] = value;
  ASSERT_EQ(found.size(), preset_names().size());
  for (const std::string& name : preset_names()) EXPECT_EQ(found[name], preset_arch(name)) << name;
}

TEST(Arch, UnknownPresetListsTheNames) {
  try {
    preset_arch("resnet");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "unknown preset 'resnet'; presets: mlp, mlp-bn, cnn, cnn-bn");
  }
}

TEST(Arch, CheckShapesNamesTheFirstLayerThatDoesNotFit) {
  // The issue's example: Linear gives 10 features, BatchNorm1d expects 11.
  auto net = parse("Linear(784, 10), BatchNorm1d(11)");
  try {
    net->output_shape({64, 784});
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind("layer 1, BatchNorm1d(11", 0), 0u) << message;
    EXPECT_NE(message.find("(64, 10)"), std::string::npos) << message;
    EXPECT_EQ(message.find("layer 1, BatchNorm1d(11", 1), std::string::npos)  // named once
        << message;
  }
  // A Linear after Flatten that expects the wrong number of pixels.
  auto mlp = parse("Flatten(), Linear(700, 10)");
  try {
    mlp->output_shape({2, 1, 28, 28});
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind("layer 1, Linear(in_features=700", 0), 0u) << message;
    EXPECT_NE(message.find("(2, 784)"), std::string::npos) << message;
  }
  // A convolution that gets the wrong number of channels.
  auto cnn = parse("Conv2d(3, 8, 3), ReLU()");
  EXPECT_THROW(cnn->output_shape({2, 1, 28, 28}), Error);
  EXPECT_THROW(mlp->output_shape({0, 1, 28, 28}), Error);
}

TEST(Arch, DeepNestingIsRefusedNamingTheLimit) {
  // 30,000 parentheses crashed the recursive parser (issue 13).
  const std::string deep =
      "Linear(" + std::string(30000, '(') + "1" + std::string(30000, ')') + ", 2)";
  const std::string message = arch_error(deep);
  EXPECT_NE(message.find("nested deeper than 100"), std::string::npos) << message.substr(0, 300);
  EXPECT_LT(message.size(), 1000u);
  // The limit itself still parses.
  const std::string at_limit =
      "Linear(" + std::string(99, '(') + "1" + std::string(99, ')') + ", 2)";
  EXPECT_EQ(arch_error(at_limit), "");
}

TEST(Arch, IntegerArithmeticIsPythons) {
  auto net = parse(
      "Linear(64*7*7, 128), Linear(2 + 3*4, (1 + 1) * 5), Linear(7 // 2, -7 // 2 + 10), "
      "Linear(7 // -2 + 10, -(7 // 2) + 10), LeakyReLU(1/4), LeakyReLU(-7.0 // 2), "
      "Linear(10 - 2 - 3, 2 * -3 * -1)");
  const std::pair<int64_t, int64_t> sizes[] = {{3136, 128}, {14, 10}, {3, 6}, {6, 7}};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(child<Linear>(*net, i).in_features, sizes[i].first) << i;
    EXPECT_EQ(child<Linear>(*net, i).out_features, sizes[i].second) << i;
  }
  EXPECT_EQ(child<LeakyReLU>(*net, 4).negative_slope, 0.25);
  EXPECT_EQ(child<LeakyReLU>(*net, 5).negative_slope, -4.0);  // floor, as Python's -7.0 // 2
  EXPECT_EQ(child<Linear>(*net, 6).in_features, 5);           // left to right
  EXPECT_EQ(child<Linear>(*net, 6).out_features, 6);
}

TEST(Arch, ArithmeticErrorsAreNamed) {
  const std::pair<const char*, const char*> cases[] = {
      {"Linear(9223372036854775807 + 1, 2)", "overflows a 64-bit integer"},
      {"Linear(4611686018427387904 * 2, 2)", "overflows a 64-bit integer"},
      {"Linear((-9223372036854775807 - 1) // -1, 2)", "overflows a 64-bit integer"},
      {"Linear(1 // 0, 2)", "division by zero"},
      {"Linear(64 / 2, 2)", "in_features must be an integer, got 64 / 2"},
      {"Linear(True + 1, 2)", "True is not a number"},
      {"Linear(3 +, 2)", "expected a value"},
  };
  for (const auto& [text, expected] : cases) {
    const std::string message = arch_error(text);
    EXPECT_NE(message.find(expected), std::string::npos) << text << "\n" << message;
  }
}

TEST(Arch, MistypedNamesGetASuggestion) {
  const std::pair<const char*, const char*> cases[] = {
      {"Linaer(3, 4)", "unknown layer 'Linaer' (did you mean Linear?); known layers: Linear"},
      {"relu()", "(did you mean ReLU?)"},
      {"Conv2D(1, 2, 3)", "(did you mean Conv2d?)"},
      {"BatchNorm(4)", "(did you mean BatchNorm1d, BatchNorm2d or BatchNorm3d?)"},
      {"Dropuot(0.1)", "(did you mean Dropout?)"},
      {"Linear(3, 4, bais=False)", "unexpected keyword 'bais' (did you mean 'bias'?)"},
  };
  for (const auto& [text, expected] : cases) {
    const std::string message = arch_error(text);
    EXPECT_NE(message.find(expected), std::string::npos) << text << "\n" << message;
  }
  // Nothing close: no suggestion.
  EXPECT_EQ(arch_error("Transformer(4)").find("did you mean"), std::string::npos);
  EXPECT_EQ(arch_error("Linear(3, 4, foo=2)").find("did you mean"), std::string::npos);
}

TEST(Arch, MessagesQuoteAtMostAnExcerptOfLongInput) {
  const std::string huge_name(100000, 'x');
  std::string long_tuple = "(";
  for (int i = 0; i < 50000; ++i) long_tuple += "1, ";
  long_tuple += ")";
  const std::string cases[] = {
      "Linear(" + huge_name + ", 2)",                  // not a value
      std::string(100000, 'A') + "(3)",                // unknown layer
      "Linear(" + std::string(100000, '1') + ", 2)",   // integer out of range
      "Linear(3, 4, " + huge_name + "=1)",             // unexpected keyword
      "Linear(" + long_tuple + ", 2)",                 // wrong type, quoted value
      "Linear(3, 4) " + huge_name,                     // unexpected token after a layer
      "Linear(" + std::string(100000, '9') + "a, 2)",  // malformed number
  };
  for (const std::string& text : cases) {
    const std::string message = arch_error(text);
    ASSERT_FALSE(message.empty()) << text.substr(0, 80);
    EXPECT_LT(message.size(), 600u) << message.substr(0, 800);
    EXPECT_NE(message.find("..."), std::string::npos) << message;
  }
  try {
    preset_arch(huge_name);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_LT(std::string(e.what()).size(), 200u);
  }
}

TEST(Arch, ShapesAndMemoryAreCheckedBeforeAllocating) {
  // 6.3 PB of weights and gradients: refused with the figure, not std::bad_alloc.
  const std::string message = arch_error("Flatten(), Linear(784, 1000000000000)");
  EXPECT_NE(message.find("need 6280000.0 GB"), std::string::npos) << message;
  EXPECT_NE(message.find("this machine has"), std::string::npos) << message;
  EXPECT_NE(message.find("layer 1, Linear(in_features=784"), std::string::npos) << message;
  // With an input shape the shape walk comes first: the 80 GB layer that does
  // not fit its input is named without a byte allocated.
  Generator gen(0);
  try {
    parse_arch("Flatten(), Linear(10000000000, 1)", gen, {1, 1, 28, 28});
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string shape_message = e.what();
    EXPECT_EQ(shape_message.rfind("layer 1, Linear(in_features=10000000000", 0), 0u)
        << shape_message;
    EXPECT_NE(shape_message.find("(1, 784)"), std::string::npos) << shape_message;
  }
}

TEST(Arch, StateBytesCountValuesGradientsAndBuffers) {
  auto net = parse("Linear(3, 4), BatchNorm1d(4), Conv2d(2, 5, 3, bias=False)");
  // Linear: 2 x (12 + 4) floats; BatchNorm: (6 affine + 2 running + 2 saved) x 4;
  // Conv2d: 2 x 5 * 2 * 3 * 3.
  EXPECT_EQ(net->state_bytes(), 4.0 * (2 * 16 + 10 * 4 + 2 * 90));
}

}  // namespace
}  // namespace bnlab::nn
