// The two guards for text from outside: a JSON parse that refuses deep nesting
// before building anything, and quoting that keeps an error message short.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "ripen/untrusted.h"

namespace ripen {
namespace {

using ::testing::HasSubstr;

TEST(ParseJsonBounded, DepthLimitHoldsAtItsEdge) {
  EXPECT_TRUE(parse_json_bounded(std::string(64, '[') + std::string(64, ']')).ok());
  auto over = parse_json_bounded(std::string(65, '[') + std::string(65, ']'));
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code, Errc::invalid);
  EXPECT_EQ(over.error().message, "nested deeper than 64 levels (level 65 opens at byte 64)");
}

TEST(ParseJsonBounded, ScalarsAreDepthZero) {
  EXPECT_TRUE(parse_json_bounded("42", 0).ok());
  EXPECT_TRUE(parse_json_bounded("\"[[[\"", 0).ok());
  EXPECT_FALSE(parse_json_bounded("[]", 0).ok());
}

TEST(ParseJsonBounded, SiblingsDoNotAddUp) {
  std::string many;
  for (int i = 0; i < 1000; ++i) many += (i ? "," : "") + std::string("[[1]]");
  EXPECT_TRUE(parse_json_bounded("[" + many + "]", 3).ok());
}

TEST(ParseJsonBounded, BracketsAndEscapedQuotesInStringsDoNotCount) {
  // Brackets inside strings, and a string holding \" and \\ before its closing quote.
  const std::string text = R"([{"a[{[{":"]}]}\"[[[[","b":"\\","c":["\u0022[[["]}])";
  auto doc = parse_json_bounded(text, 3);
  ASSERT_TRUE(doc.ok()) << doc.error().message;
  EXPECT_EQ((*doc)[0]["a[{[{"], "]}]}\"[[[[");
  EXPECT_EQ((*doc)[0]["b"], "\\");
  EXPECT_FALSE(parse_json_bounded(R"([{"b":"\\","c":[[1]]}])", 3).ok()) << "a string ending in \\\\ ends there";
}

TEST(ParseJsonBounded, InvalidJsonIsRefused) {
  for (const std::string text : {"", "{", "[1,]", "{\"a\":1}x", "[]]]]", "\"\\"}) {
    auto doc = parse_json_bounded(text);
    ASSERT_FALSE(doc.ok()) << text;
    EXPECT_EQ(doc.error().message, "not valid JSON") << text;
  }
}

TEST(ParseJsonBounded, HundredThousandLevelsAreRefusedWithoutBuildingThem) {
  const std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
  auto doc = parse_json_bounded(deep);
  ASSERT_FALSE(doc.ok());
  EXPECT_THAT(doc.error().message, HasSubstr("nested deeper than 64 levels"));
}

TEST(QuoteShort, ShortTextIsQuotedWhole) {
  EXPECT_EQ(quote_short("queue"), "'queue'");
  EXPECT_EQ(quote_short(""), "''");
  EXPECT_EQ(quote_short(std::string(64, 'a')), "'" + std::string(64, 'a') + "'");
}

TEST(QuoteShort, LongTextIsCutAndSaysItsSize) {
  EXPECT_EQ(quote_short(std::string(65, 'a')), "'" + std::string(64, 'a') + "\xE2\x80\xA6' (65 bytes)");
  EXPECT_EQ(quote_short("abcdef", 3), "'abc\xE2\x80\xA6' (6 bytes)");
  EXPECT_LT(quote_short(std::string(1 << 20, 'x')).size(), 100u);
}

TEST(QuoteShort, CutNeverSplitsAUtf8Sequence) {
  // "é" is two bytes; a cut at 3 would split the second one.
  EXPECT_EQ(quote_short("a\xc3\xa9\xc3\xa9", 2), "'a\xE2\x80\xA6' (5 bytes)");
  EXPECT_EQ(quote_short("a\xc3\xa9\xc3\xa9", 3), "'a\xc3\xa9\xE2\x80\xA6' (5 bytes)");
}

TEST(QuoteShort, ControlCharactersQuotesAndBackslashesAreEscaped) {
  EXPECT_EQ(quote_short("a\nb\r\x01\x7f"), "'a\\x0ab\\x0d\\x01\\x7f'");
  EXPECT_EQ(quote_short(std::string("nul\0", 4)), "'nul\\x00'");
  EXPECT_EQ(quote_short(R"(it's a\b)"), R"('it\'s a\\b')");
}

}  // namespace
}  // namespace ripen
