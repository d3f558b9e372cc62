// The shared helpers of include/bnlab/error.hpp.
#include <gtest/gtest.h>

#include <string>

#include "bnlab/error.hpp"

namespace {

using bnlab::excerpt;

TEST(Excerpt, ShortTextIsReturnedWhole) {
  EXPECT_EQ(excerpt("Linear(784, 10)"), "Linear(784, 10)");
  EXPECT_EQ(excerpt(""), "");
  EXPECT_EQ(excerpt(std::string(60, 'a')), std::string(60, 'a'));
}

TEST(Excerpt, LongTextIsCutAndGivesItsSize) {
  const std::string token(1 << 20, 'x');
  const std::string e = excerpt(token);
  EXPECT_EQ(e, std::string(60, 'x') + "... (1048576 bytes)");
  EXPECT_EQ(excerpt("abcdefgh", 3), "abc... (8 bytes)");
}

TEST(Excerpt, ControlBytesAreEscapedAndCounted) {
  EXPECT_EQ(excerpt(std::string("a\0b\n", 4)), "a\\x00b\\x0a");
  // Escapes count towards the limit: 4 bytes each.
  EXPECT_EQ(excerpt(std::string(10, '\0'), 9), "\\x00\\x00... (10 bytes)");
}

TEST(Excerpt, NeverCutsInsideAUtf8Character) {
  // "é" is 2 bytes, "€" is 3: a cut after 4 bytes falls inside the second "€".
  EXPECT_EQ(excerpt("a\xc3\xa9\xe2\x82\xac\xe2\x82\xac", 4), "a\xc3\xa9... (9 bytes)");
  EXPECT_EQ(excerpt("\xe2\x82\xac\xe2\x82\xac", 3), "\xe2\x82\xac... (6 bytes)");
  EXPECT_EQ(excerpt("\xe2\x82\xac\xe2\x82\xac", 2), "... (6 bytes)");
}

}  // namespace
