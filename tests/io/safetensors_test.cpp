// Safetensors read/write and atomic writes. The goldens in
// tests/golden/safetensors/ were written from PyTorch tensors by
// tests/golden/make_safetensors_goldens.py, with a JSON dump of their values;
// corrupt files are made here, byte by byte, in a temporary folder.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "bnlab/error.hpp"
#include "bnlab/io/atomic_file.hpp"
#include "bnlab/io/safetensors.hpp"

namespace fs = std::filesystem;
using bnlab::Error;
using bnlab::ErrorCode;
using bnlab::io::DType;
using bnlab::io::NamedTensor;
using bnlab::io::SafetensorsFile;

namespace {

const std::string kGoldenDir = BNLAB_GOLDEN_DIR;

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// ---- float64 decoders of the little-endian element formats ------------------

template <typename T>
T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // x86 is little-endian, like the format
  return v;
}

// IEEE half: 1 sign bit, 5 exponent bits (bias 15), 10 fraction bits.
double half_to_double(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exponent = (h >> 10) & 0x1f;
  const int fraction = h & 0x3ff;
  if (exponent == 0) return sign * std::ldexp(fraction, -24);
  if (exponent == 31) return fraction ? NAN : sign * INFINITY;
  return sign * std::ldexp(1024 + fraction, exponent - 25);
}

// bfloat16: the upper half of a float32.
double bf16_to_double(uint16_t b) {
  const uint32_t bits = uint32_t{b} << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::vector<double> decode(const NamedTensor& t) {
  const int64_t size = bnlab::io::dtype_size(t.dtype);
  std::vector<double> out;
  for (size_t i = 0; i + static_cast<size_t>(size) <= t.bytes.size();
       i += static_cast<size_t>(size)) {
    const uint8_t* p = t.bytes.data() + i;
    switch (t.dtype) {
      case DType::F32:
        out.push_back(load_le<float>(p));
        break;
      case DType::F64:
        out.push_back(load_le<double>(p));
        break;
      case DType::F16:
        out.push_back(half_to_double(load_le<uint16_t>(p)));
        break;
      case DType::BF16:
        out.push_back(bf16_to_double(load_le<uint16_t>(p)));
        break;
      case DType::I64:
        out.push_back(static_cast<double>(load_le<int64_t>(p)));
        break;
      case DType::I32:
        out.push_back(load_le<int32_t>(p));
        break;
      case DType::I16:
        out.push_back(load_le<int16_t>(p));
        break;
      case DType::I8:
        out.push_back(load_le<int8_t>(p));
        break;
      case DType::U8:
        out.push_back(load_le<uint8_t>(p));
        break;
      case DType::BOOL:
        out.push_back(p[0] ? 1.0 : 0.0);
        break;
    }
  }
  return out;
}

// Checks a file read by bnlab against the JSON dump PyTorch wrote beside it.
void expect_matches_dump(const SafetensorsFile& file, const std::string& dump_path) {
  const nlohmann::json dump = nlohmann::json::parse(read_bytes(dump_path));
  using Metadata = std::map<std::string, std::string>;
  EXPECT_EQ(file.metadata, dump["__metadata__"].get<Metadata>());
  EXPECT_EQ(file.tensors.size(), dump["tensors"].size());
  for (const auto& [name, expected] : dump["tensors"].items()) {
    const NamedTensor* t = file.find(name);
    ASSERT_NE(t, nullptr) << "tensor " << name << " missing";
    EXPECT_EQ(bnlab::io::dtype_name(t->dtype), expected["dtype"].get<std::string>()) << name;
    EXPECT_EQ(t->shape, expected["shape"].get<std::vector<int64_t>>()) << name;
    const auto values = decode(*t);
    const auto expected_values = expected["values"].get<std::vector<double>>();
    ASSERT_EQ(values.size(), expected_values.size()) << name;
    // Every value is exact: the dump holds the float64 of each element.
    for (size_t i = 0; i < values.size(); ++i)
      EXPECT_EQ(values[i], expected_values[i]) << "tensor " << name << " element " << i;
  }
}

TEST(SafetensorsGolden, ReadsPyTorchStateDictWithItsValues) {
  const auto file = bnlab::io::read_safetensors(kGoldenDir + "/mlp_bn_state.safetensors");
  expect_matches_dump(file, kGoldenDir + "/mlp_bn_state.json");
  const NamedTensor* tracked = file.find("2.num_batches_tracked");
  ASSERT_NE(tracked, nullptr);
  EXPECT_EQ(tracked->dtype, DType::I64);
  EXPECT_TRUE(tracked->shape.empty());
  EXPECT_EQ(load_le<int64_t>(tracked->bytes.data()), 3);
  // File (data) order: the reference layout puts the 8-byte I64 first.
  EXPECT_EQ(file.tensors.front().name, "2.num_batches_tracked");
  EXPECT_EQ(file.metadata.at("format"), "pt");
  EXPECT_EQ(file.find("no.such.tensor"), nullptr);
}

TEST(SafetensorsGolden, ReadsEveryDtypeScalarAndEmptyTensor) {
  const auto file = bnlab::io::read_safetensors(kGoldenDir + "/dtypes.safetensors");
  expect_matches_dump(file, kGoldenDir + "/dtypes.json");
  EXPECT_TRUE(file.find("scalar")->shape.empty());
  EXPECT_EQ(file.find("empty")->shape, (std::vector<int64_t>{0, 4}));
  EXPECT_TRUE(file.find("empty")->bytes.empty());
}

class SafetensorsFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("bnlab_io_test_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A file made of a little-endian header length (the real one unless given),
  // the header text and the data bytes.
  std::string make_file(const std::string& name, const std::string& header,
                        const std::string& data = "", int64_t claimed_length = -1) const {
    const uint64_t length =
        claimed_length >= 0 ? static_cast<uint64_t>(claimed_length) : header.size();
    std::string bytes;
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
    bytes += header + data;
    std::ofstream(path(name), std::ios::binary) << bytes;
    return path(name);
  }

  // Expects read_safetensors to throw Error(io) with every fragment in its message.
  static void expect_read_error(const std::string& file,
                                const std::vector<std::string>& fragments) {
    try {
      bnlab::io::read_safetensors(file);
      ADD_FAILURE() << "no error reading " << file;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::io) << e.what();
      for (const auto& fragment : fragments)
        EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
            << "message '" << e.what() << "' lacks '" << fragment << "'";
    }
  }

  bool only_file_in_dir_is(const std::string& name) const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename());
    return names == std::vector<std::string>{name};
  }

  fs::path dir_;
};

NamedTensor make_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                        uint8_t first_byte = 1) {
  NamedTensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  int64_t numel = 1;
  for (int64_t d : t.shape) numel *= d;
  t.bytes.resize(static_cast<size_t>(numel * bnlab::io::dtype_size(dtype)));
  for (size_t i = 0; i < t.bytes.size(); ++i) t.bytes[i] = static_cast<uint8_t>(first_byte + i * 7);
  return t;
}

TEST_F(SafetensorsFiles, RewritingAGoldenReproducesPyTorchsBytes) {
  // The goldens follow the reference writer's layout; bnlab's writer must give
  // the same bytes whatever order the tensors come in.
  for (const std::string name : {"mlp_bn_state", "dtypes"}) {
    const std::string golden = kGoldenDir + "/" + name + ".safetensors";
    SafetensorsFile file = bnlab::io::read_safetensors(golden);
    std::mt19937 shuffle_generator(5);
    std::shuffle(file.tensors.begin(), file.tensors.end(), shuffle_generator);
    bnlab::io::write_safetensors(path(name), file);
    EXPECT_EQ(read_bytes(path(name)), read_bytes(golden)) << name;
  }
}

// torch.save writes a zip archive ("PK\3\4") or, with
// _use_new_zipfile_serialization=False, a pickle (0x80, protocol 2..5): named
// as such, with the way to save safetensors instead.
TEST_F(SafetensorsFiles, ATorchSavePickleIsNamedAsOne) {
  const std::string zip = std::string("PK\x03\x04", 4) + std::string(200, '\0');
  const std::string legacy = std::string("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46", 8) +
                             std::string(200, '\0');
  for (const std::string& bytes : {zip, legacy}) {
    std::ofstream(path("model.pt"), std::ios::binary) << bytes;
    expect_read_error(path("model.pt"),
                      {"model.pt: is a PyTorch pickle (torch.save", "from safetensors.torch",
                       "save_file(model.state_dict(), \"net.safetensors\")", "docs/pytorch.md"});
  }
}

// A header of 640 bytes starts the file with 0x80 0x02, as a legacy pickle
// does; the length is valid, so it is read as the safetensors file it is.
TEST_F(SafetensorsFiles, AHeaderLengthThatLooksLikeAPickleIsStillRead) {
  std::string header = R"j({"__metadata__":{"arch":"Flatten()"}})j";
  header += std::string(640 - header.size(), ' ');
  const SafetensorsFile file = bnlab::io::read_safetensors(make_file("ok.safetensors", header));
  EXPECT_EQ(file.metadata.at("arch"), "Flatten()");
}

TEST_F(SafetensorsFiles, EmptyFilesMatchTheReferenceBytes) {
  // The reference implementation's own test vectors: no tensors, with and
  // without metadata; headers padded with spaces to a multiple of 8.
  bnlab::io::write_safetensors(path("empty"), SafetensorsFile{});
  EXPECT_EQ(read_bytes(path("empty")), std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
  SafetensorsFile with_metadata;
  with_metadata.metadata["framework"] = "pt";
  bnlab::io::write_safetensors(path("meta"), with_metadata);
  EXPECT_EQ(read_bytes(path("meta")), std::string("\x28\0\0\0\0\0\0\0", 8) +
                                          "{\"__metadata__\":{\"framework\":\"pt\"}}     ");
  EXPECT_TRUE(bnlab::io::read_safetensors(path("empty")).tensors.empty());
  EXPECT_EQ(bnlab::io::read_safetensors(path("meta")).metadata, with_metadata.metadata);
}

TEST_F(SafetensorsFiles, WriteThenReadRoundTrips) {
  SafetensorsFile file;
  file.tensors.push_back(make_tensor("layer.weight", DType::F32, {3, 5}));
  file.tensors.push_back(make_tensor("layer.count", DType::I64, {}));
  file.tensors.push_back(make_tensor("mask", DType::BOOL, {7}));
  file.tensors.push_back(make_tensor("half", DType::F16, {2, 1, 3}));
  file.tensors.push_back(make_tensor("nothing", DType::F64, {0}));
  file.metadata["arch"] = "Linear(5, 3), BatchNorm1d(3)";
  file.metadata["note"] = "ünïcode, \"quotes\" and \\ backslash";
  bnlab::io::write_safetensors(path("model.safetensors"), file);

  const auto back = bnlab::io::read_safetensors(path("model.safetensors"));
  EXPECT_EQ(back.metadata, file.metadata);
  ASSERT_EQ(back.tensors.size(), file.tensors.size());
  for (const NamedTensor& t : file.tensors) {
    const NamedTensor* r = back.find(t.name);
    ASSERT_NE(r, nullptr) << t.name;
    EXPECT_EQ(r->dtype, t.dtype) << t.name;
    EXPECT_EQ(r->shape, t.shape) << t.name;
    EXPECT_EQ(r->bytes, t.bytes) << t.name;
  }
  // The data area starts 8-aligned and each tensor is aligned for its dtype.
  const std::string bytes = read_bytes(path("model.safetensors"));
  const uint64_t header_length = load_le<uint64_t>(reinterpret_cast<const uint8_t*>(bytes.data()));
  EXPECT_EQ(header_length % 8, 0u);
  EXPECT_TRUE(only_file_in_dir_is("model.safetensors"));
}

TEST_F(SafetensorsFiles, WriterRefusesInconsistentTensors) {
  const auto expect_write_error = [&](const SafetensorsFile& file, const std::string& fragment) {
    try {
      bnlab::io::write_safetensors(path("bad"), file);
      ADD_FAILURE() << "no error for " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(path("bad")));
  };
  SafetensorsFile wrong_size;
  wrong_size.tensors.push_back(make_tensor("w", DType::F32, {2, 2}));
  wrong_size.tensors[0].bytes.pop_back();
  expect_write_error(wrong_size, "'w'");
  SafetensorsFile twice;
  twice.tensors = {make_tensor("w", DType::F32, {1}), make_tensor("w", DType::I64, {1})};
  expect_write_error(twice, "twice");
  SafetensorsFile reserved;
  reserved.tensors = {make_tensor("__metadata__", DType::F32, {1})};
  expect_write_error(reserved, "reserved");
  SafetensorsFile negative;
  negative.tensors = {make_tensor("n", DType::F32, {1})};
  negative.tensors[0].shape = {-1};
  expect_write_error(negative, "'n'");
}

const std::string kOneF32 = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

TEST_F(SafetensorsFiles, ReadsAHandMadeFile) {
  const auto file = bnlab::io::read_safetensors(make_file("ok", kOneF32, std::string(8, '\x01')));
  ASSERT_EQ(file.tensors.size(), 1u);
  EXPECT_EQ(file.tensors[0].bytes, std::vector<uint8_t>(8, 1));
}

TEST_F(SafetensorsFiles, MissingOrShortFilesAreErrors) {
  expect_read_error(path("absent.safetensors"), {"absent.safetensors", "cannot open"});
  std::ofstream(path("short"), std::ios::binary) << "abc";
  expect_read_error(path("short"), {"short", "3 bytes", "shorter than"});
}

TEST_F(SafetensorsFiles, HeaderLengthPastTheEndOrAbsurdIsAnError) {
  expect_read_error(make_file("past", kOneF32, std::string(8, '\0'), 1000),
                    {"past", "header length 1000", "past the end"});
  expect_read_error(make_file("absurd", kOneF32, std::string(8, '\0'), int64_t{1} << 40),
                    {"absurd", "absurd"});
  expect_read_error(make_file("negative", kOneF32, "", -2 + (int64_t{1} << 62)), {"absurd"});
}

TEST_F(SafetensorsFiles, BadJsonOrNonObjectHeaderIsAnError) {
  expect_read_error(make_file("json", R"({"w": {"dtype": "F32",)"), {"json", "bad JSON"});
  expect_read_error(make_file("array", "[1, 2]"), {"array", "not a JSON object"});
  expect_read_error(make_file("entry", R"({"w": 5})"), {"'w'", "not a JSON object"});
  expect_read_error(make_file("utf8", "{\"\xff\": 1}"), {"bad JSON"});
}

TEST_F(SafetensorsFiles, DeeplyNestedHeaderIsRefusedNotACrash) {
  // 70,000 nested arrays overflowed the stack inside the JSON parser (SIGSEGV).
  const std::string deep = "{\"w\":" + std::string(70'000, '[') + std::string(70'000, ']') + "}";
  expect_read_error(make_file("deep", deep), {"deep", "more than 64 levels", "limit is 64"});
  const std::string objects = [] {
    std::string text;
    for (int i = 0; i < 70'000; ++i) text += "{\"a\":";
    return text + "1" + std::string(70'000, '}');
  }();
  expect_read_error(make_file("objects", objects), {"objects", "more than 64 levels"});
  // Brackets inside strings do not count; 64 levels are still read.
  const std::string in_name = "{\"[[[\\\"[[\":" + std::string(62, '[') + std::string(62, ']') + "}";
  expect_read_error(make_file("in_name", in_name), {"'[[[\"[['", "not a JSON object"});
}

TEST_F(SafetensorsFiles, ByteOrderMarkOrNulPaddingIsRefused) {
  // nlohmann-json skips a BOM and stops at a NUL; the format allows neither.
  expect_read_error(make_file("bom", "\xEF\xBB\xBF" + kOneF32, std::string(8, '\1')),
                    {"bom", "byte order mark"});
  expect_read_error(make_file("nul", kOneF32 + std::string(6, '\0'), std::string(8, '\1')),
                    {"nul", "NUL byte at offset " + std::to_string(kOneF32.size()), "spaces"});
  expect_read_error(make_file("space", " " + kOneF32, std::string(8, '\1')),
                    {"space", "must start with '{'"});
  // Space padding, as the reference writer pads, is read.
  EXPECT_EQ(bnlab::io::read_safetensors(make_file("padded", kOneF32 + "      ",
                                                  std::string(8, '\1')))
                .tensors.size(),
            1u);
}

TEST_F(SafetensorsFiles, UnknownDtypeIsNamed) {
  expect_read_error(
      make_file("dtype", R"({"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})",
                std::string(16, '\0')),
      {"'w'", "unknown dtype 'F128'"});
  expect_read_error(make_file("dtype2", R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})",
                              std::string(4, '\0')),
                    {"'w'", "dtype"});
}

TEST_F(SafetensorsFiles, BadShapesAreNamed) {
  expect_read_error(make_file("neg", R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
                              std::string(8, '\0')),
                    {"'w'", "shape[0]", "negative"});
  expect_read_error(make_file("frac", R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}})",
                              std::string(8, '\0')),
                    {"'w'", "shape[0]"});
  expect_read_error(
      make_file("huge",
                R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})",
                std::string(8, '\0')),
      {"'w'", "int64"});
}

TEST_F(SafetensorsFiles, ByteCountMustMatchDtypeAndShape) {
  expect_read_error(make_file("count", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                              std::string(8, '\0')),
                    {"'w'", "span 8 bytes", "needs 12"});
}

TEST_F(SafetensorsFiles, MissingOrUnexpectedFieldsAreNamed) {
  expect_read_error(
      make_file("missing", R"({"w":{"dtype":"F32","shape":[2]}})", std::string(8, '\0')),
      {"'w'", "missing 'data_offsets'"});
  expect_read_error(
      make_file("extra", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"stride":[1]}})",
                std::string(8, '\0')),
      {"'w'", "unexpected field 'stride'"});
  expect_read_error(make_file("offsets", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})",
                              std::string(8, '\0')),
                    {"'w'", "data_offsets"});
  expect_read_error(
      make_file("backwards", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})",
                std::string(8, '\0')),
      {"'w'", "end before"});
}

TEST_F(SafetensorsFiles, OffsetsPastTheEndAreNamed) {
  expect_read_error(make_file("past", kOneF32, std::string(4, '\0')),
                    {"'w'", "past the end", "4-byte data area"});
}

TEST_F(SafetensorsFiles, OverlappingOffsetsAreNamed) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  expect_read_error(make_file("overlap", header, std::string(12, '\0')),
                    {"'b'", "overlaps", "'a'"});
}

TEST_F(SafetensorsFiles, GapsAndUncoveredBytesAreErrors) {
  const std::string gap = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  expect_read_error(make_file("gap", gap, std::string(12, '\0')),
                    {"bytes [4, 8)", "'a'", "'b'", "no tensor"});
  expect_read_error(make_file("late", R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                              std::string(8, '\0')),
                    {"bytes [0, 4)", "'b'"});
  expect_read_error(make_file("trailing", kOneF32, std::string(12, '\0')),
                    {"12 bytes", "cover only 8", "'w'"});
}

TEST_F(SafetensorsFiles, DuplicateKeysAreErrors) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expect_read_error(make_file("dup", header, std::string(8, '\0')), {"'w'", "twice"});
}

TEST_F(SafetensorsFiles, MetadataMustMapStringsToStrings) {
  expect_read_error(make_file("meta", R"({"__metadata__":{"epochs":10}})"),
                    {"__metadata__", "'epochs'", "not a string"});
  expect_read_error(make_file("meta2", R"({"__metadata__":["x"]})"),
                    {"__metadata__", "not a JSON object"});
  const auto ok =
      bnlab::io::read_safetensors(make_file("meta3", R"({"__metadata__":{"epochs":"10"}}  )"));
  EXPECT_EQ(ok.metadata.at("epochs"), "10");
}

TEST_F(SafetensorsFiles, MessagesQuoteOnlyAnExcerptOfLongNames) {
  // A 1 MB tensor name (or dtype, or number) is cut in the message, not echoed whole.
  const std::string name(1 << 20, 'n');
  const auto expect_short = [&](const std::string& file, const std::string& fragment) {
    try {
      bnlab::io::read_safetensors(file);
      ADD_FAILURE() << "no error for " << fragment;
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_LT(message.size(), 400u + file.size()) << message.substr(0, 400);
      EXPECT_NE(message.find(fragment), std::string::npos) << message.substr(0, 400);
    }
  };
  expect_short(make_file("name", "{\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[1]}}"),
               "(1048576 bytes)");
  expect_short(make_file("dtype", "{\"w\":{\"dtype\":\"" + name +
                                       "\",\"shape\":[1],\"data_offsets\":[0,4]}}"),
               "unknown dtype 'nnnn");
  expect_short(make_file("number", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-" +
                                        std::string(1 << 20, '9') + "],\"data_offsets\":[0,4]}}"),
               "number overflow");
  expect_short(make_file("string", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"" + name +
                                        "\"],\"data_offsets\":[0,4]}}"),
               "shape[0] must be a non-negative integer, got \"nnn");
  expect_short(make_file("json", "{\"w\": " + name + "}"), "bad JSON");
}

TEST(Dtypes, NamesAndSizesFollowTheFormat) {
  const std::vector<std::tuple<DType, std::string, int64_t>> table = {
      {DType::F32, "F32", 4},   {DType::F64, "F64", 8}, {DType::F16, "F16", 2},
      {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
      {DType::I16, "I16", 2},   {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
      {DType::BOOL, "BOOL", 1}};
  for (const auto& [dtype, name, size] : table) {
    EXPECT_EQ(bnlab::io::dtype_name(dtype), name);
    EXPECT_EQ(bnlab::io::dtype_size(dtype), size) << name;
  }
}

TEST_F(SafetensorsFiles, WriteFileAtomicReplacesTheFileAndLeavesNoTemporary) {
  bnlab::io::write_file_atomic(path("report.json"), "old");
  bnlab::io::write_file_atomic(path("report.json"), "{\"new\": true}\n");
  EXPECT_EQ(read_bytes(path("report.json")), "{\"new\": true}\n");
  EXPECT_TRUE(only_file_in_dir_is("report.json"));
  bnlab::io::write_file_atomic(path("empty"), "");
  EXPECT_EQ(fs::file_size(path("empty")), 0u);
}

TEST_F(SafetensorsFiles, FailedWriteNamesThePathAndKeepsThePreviousFile) {
  // The target is a folder: the temporary file is written, the rename fails,
  // the temporary is removed and the folder is untouched.
  fs::create_directories(path("target") + "/inside");
  try {
    bnlab::io::write_file_atomic(path("target"), "data");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
    EXPECT_NE(std::string(e.what()).find(path("target")), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_directory(path("target") + "/inside"));
  EXPECT_TRUE(only_file_in_dir_is("target"));
  // A folder that does not exist.
  try {
    bnlab::io::write_safetensors(path("no/such/folder/model.safetensors"), SafetensorsFile{});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io);
    EXPECT_NE(std::string(e.what()).find("no/such/folder/model.safetensors"), std::string::npos);
  }
}

// ---- special files and leftovers ---------------------------------------------

// Expects fn to throw Error(io) with every fragment in its message.
template <typename Fn>
void expect_io_error(Fn fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected " << fragments.front();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::io) << e.what();
    for (const auto& fragment : fragments)
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
          << "message '" << e.what() << "' lacks '" << fragment << "'";
  }
}

TEST_F(SafetensorsFiles, OutputsThatAreNotRegularFilesAreRefusedUntouched) {
  // rename() would replace a FIFO or a device node with a regular file.
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0644), 0);
  expect_io_error([&] { bnlab::io::write_file_atomic(path("fifo"), "data"); },
                  {path("fifo"), "is a FIFO", "regular files or new paths"});
  EXPECT_TRUE(fs::is_fifo(path("fifo")));
  expect_io_error([&] { bnlab::io::write_safetensors(path("fifo"), SafetensorsFile{}); },
                  {"is a FIFO"});
  // A device node: /dev/null itself only where a broken writer could not replace it.
  std::string device = "/dev/null";
  if (::geteuid() == 0) {
    device = path("null");
    ASSERT_EQ(::mknod(device.c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  }
  expect_io_error([&] { bnlab::io::write_file_atomic(device, "data"); },
                  {device, "is a character device"});
  EXPECT_TRUE(fs::is_character_file(device));
  fs::create_directory(path("folder"));
  expect_io_error([&] { bnlab::io::write_file_atomic(path("folder"), "data"); },
                  {path("folder"), "is a directory"});
  // A symbolic link to a device is the device.
  fs::create_symlink(device, path("link"));
  expect_io_error([&] { bnlab::io::write_file_atomic(path("link"), "data"); },
                  {"is a character device"});
  EXPECT_TRUE(fs::is_symlink(path("link")));
}

TEST_F(SafetensorsFiles, InputsThatAreNotRegularFilesAreRefusedAtOnce) {
  // open() of a FIFO without a writer blocked forever.
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0644), 0);
  const auto start = std::chrono::steady_clock::now();
  expect_read_error(path("fifo"), {path("fifo"), "is a FIFO, not a regular file"});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  fs::create_directory(path("folder"));
  expect_read_error(path("folder"), {"is a directory, not a regular file"});
  expect_read_error("/dev/null", {"is a character device"});
}

TEST_F(SafetensorsFiles, LongFileNamesCanBeSaved) {
  // 252 characters: the old ".tmp.<pid>" suffix passed NAME_MAX (255).
  const std::string name(252, 'm');
  SafetensorsFile file;
  file.tensors.push_back(make_tensor("w", DType::F32, {3}));
  bnlab::io::write_safetensors(path(name), file);
  EXPECT_EQ(bnlab::io::read_safetensors(path(name)).tensors[0].bytes, file.tensors[0].bytes);
  bnlab::io::write_safetensors(path(name), file);  // over an existing file too
  EXPECT_TRUE(only_file_in_dir_is(name));
}

TEST_F(SafetensorsFiles, FileSizeLimitIsAnErrorNotSigxfsz) {
  // Under ulimit -f the write used to kill the process with SIGXFSZ and leave
  // its partial temporary file. In a child, so the limit stays there.
  bnlab::io::write_file_atomic(path("model"), "old");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const rlimit limit{4096, 4096};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(3);
    try {
      bnlab::io::write_file_atomic(path("model"), std::string(1 << 20, 'x'));
    } catch (const Error& e) {
      const std::string message = e.what();
      const bool named = message.find(path("model")) != std::string::npos &&
                         message.find("File too large") != std::string::npos;
      ::_exit(named ? 0 : 2);
    }
    ::_exit(1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: no error, 2: message, 3: setrlimit";
  EXPECT_EQ(read_bytes(path("model")), "old");
  EXPECT_TRUE(only_file_in_dir_is("model"));
}

TEST_F(SafetensorsFiles, KillDuringASaveLeavesNothingOnceTheNextSaveRuns) {
  // A child saves 16 MB over and over until it is killed with SIGKILL.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::string contents(16 << 20, 'k');
    for (;;) bnlab::io::write_file_atomic(path("model"), contents);
  }
  for (int i = 0; i < 500 && !fs::exists(path("model")); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  // Unnamed temporaries vanish with the process; a named one can remain only
  // if the kill fell between naming and renaming. Left over by a process that
  // is gone, another's temporary is removed by the next write in the folder;
  // one of a live process (pid 1) and names not of this form stay.
  std::ofstream(path(".bnlab-" + std::to_string(child) + "-7.tmp")) << "stale";
  std::ofstream(path(".bnlab-1-0.tmp")) << "live";
  std::ofstream(path(".bnlab-x-0.tmp")) << "other";
  bnlab::io::write_file_atomic(path("report"), "new");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{".bnlab-1-0.tmp", ".bnlab-x-0.tmp", "model", "report"}));
  EXPECT_EQ(fs::file_size(path("model")), size_t{16} << 20);
}

}  // namespace
