// Durations and timestamps come from people (CLI flags, config files), so a wrong
// reading fires a task at the wrong time. Every expected epoch value below was
// computed outside this code (GNU `date -u -d ... +%s` and Python's datetime) and
// hard-coded, so a shared mistake in the algorithm cannot hide.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <ostream>
#include <string>

#include "ripen/duration.h"

namespace ripen {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

// ---- parse_duration_ms ----------------------------------------------------

struct GoodDuration {
  std::string text;
  int64_t ms;
};

void PrintTo(const GoodDuration& c, std::ostream* os) { *os << c.text; }

class DurationParses : public ::testing::TestWithParam<GoodDuration> {};

TEST_P(DurationParses, ToExactMilliseconds) {
  Result<int64_t> ms = parse_duration_ms(GetParam().text);
  ASSERT_TRUE(ms.ok()) << GetParam().text << ": " << ms.error().describe();
  EXPECT_EQ(*ms, GetParam().ms) << GetParam().text;
}

INSTANTIATE_TEST_SUITE_P(Duration, DurationParses,
                         ::testing::Values(GoodDuration{"250ms", 250}, GoodDuration{"30s", 30'000},
                                           GoodDuration{"5m", 300'000}, GoodDuration{"2h", 7'200'000},
                                           GoodDuration{"1d", 86'400'000}, GoodDuration{"1h30m", 5'400'000},
                                           GoodDuration{"0s", 0}, GoodDuration{"0ms", 0}, GoodDuration{"1ms", 1},
                                           GoodDuration{"90s", 90'000}, GoodDuration{"1500ms", 1'500},
                                           GoodDuration{"007s", 7'000}, GoodDuration{"1d2h3m4s5ms", 93'784'005},
                                           GoodDuration{"30m1h", 5'400'000},
                                           // The largest values, exactly at the int64 edge.
                                           GoodDuration{"9223372036854775807ms", kInt64Max},
                                           GoodDuration{"9223372036854775s", 9'223'372'036'854'775'000},
                                           GoodDuration{"9223372036854775s807ms", kInt64Max},
                                           GoodDuration{"807ms9223372036854775s", kInt64Max},
                                           GoodDuration{"106751991167d", 106'751'991'167LL * 86'400'000}));

struct BadDuration {
  std::string name;
  std::string text;
};

void PrintTo(const BadDuration& c, std::ostream* os) { *os << c.name; }

class DurationRefuses : public ::testing::TestWithParam<BadDuration> {};

TEST_P(DurationRefuses, AsInvalidQuotingTheText) {
  Result<int64_t> ms = parse_duration_ms(GetParam().text);
  ASSERT_FALSE(ms.ok()) << "'" << GetParam().text << "' gave " << *ms;
  EXPECT_EQ(ms.error().code, Errc::invalid);
  EXPECT_THAT(ms.error().message, HasSubstr("'" + GetParam().text + "' is not a duration"));
}

INSTANTIATE_TEST_SUITE_P(Duration, DurationRefuses,
                         ::testing::Values(BadDuration{"Empty", ""}, BadDuration{"BareNumber", "30"},
                                           BadDuration{"UnitOnly", "s"}, BadDuration{"UnknownUnit", "5x"},
                                           BadDuration{"Negative", "-5s"}, BadDuration{"PlusSign", "+5s"},
                                           BadDuration{"Fraction", "1.5s"}, BadDuration{"SpaceBeforeUnit", "5 s"},
                                           BadDuration{"LeadingSpace", " 5s"}, BadDuration{"TrailingSpace", "5s "},
                                           BadDuration{"UpperCaseUnit", "5S"}, BadDuration{"SpelledUnit", "5sec"},
                                           BadDuration{"TrailingBareNumber", "5m30"},
                                           BadDuration{"NegativePart", "1h-30m"}, BadDuration{"Word", "thirty"},
                                           BadDuration{"DigitsBeyondInt64", "99999999999999999999s"},
                                           BadDuration{"OneMsOverInt64", "9223372036854775808ms"},
                                           BadDuration{"OneSecondTooMany", "9223372036854776s"},
                                           BadDuration{"OneDayTooMany", "106751991168d"},
                                           BadDuration{"SumOneMsOverInt64", "9223372036854775s808ms"},
                                           // The same sum in the other order must be refused too.
                                           BadDuration{"SumOneMsOverInt64SmallPartFirst", "808ms9223372036854775s"},
                                           BadDuration{"SumFarOverInt64SmallPartFirst", "999ms9223372036854775s"}),
                         [](const ::testing::TestParamInfo<BadDuration>& p) { return p.param.name; });

TEST(ParseDuration, MessageShowsExamples) {
  Result<int64_t> ms = parse_duration_ms("30");
  ASSERT_FALSE(ms.ok());
  EXPECT_THAT(ms.error().message, HasSubstr("missing unit after 30; units are ms, s, m, h, d"));
  EXPECT_THAT(ms.error().message, HasSubstr("30s"));
}

// Each refusal names its real problem, and says what to write when the text
// has a plain meaning (not for a bare number: its unit would be a guess).
struct Explained {
  std::string name;
  std::string text;
  std::string message;
};

void PrintTo(const Explained& c, std::ostream* os) { *os << c.name; }

class DurationExplains : public ::testing::TestWithParam<Explained> {};

TEST_P(DurationExplains, TheProblemAndWhatToWrite) {
  Result<int64_t> ms = parse_duration_ms(GetParam().text);
  ASSERT_FALSE(ms.ok()) << GetParam().text << " gave " << *ms;
  EXPECT_EQ(ms.error().message, GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(
    Duration, DurationExplains,
    ::testing::Values(
        Explained{"Fraction", "1.5s",
                  "'1.5s' is not a duration (fractions are not accepted: use a smaller unit); write 1500ms"},
        Explained{"FractionOfAnHour", "1.5h",
                  "'1.5h' is not a duration (fractions are not accepted: use a smaller unit); write 90m"},
        Explained{"CommaFraction", "2,5m",
                  "'2,5m' is not a duration (fractions are not accepted: use a smaller unit); write 150s"},
        Explained{"FractionFinerThanAMillisecond", "1.0005s",
                  "'1.0005s' is not a duration (fractions are not accepted: use a smaller unit); use e.g. 250ms, "
                  "30s, 5m, 2h, 1d or 1h30m"},
        Explained{"SpelledUnitWithSpace", "1 second",
                  "'1 second' is not a duration (spaces are not allowed; unknown unit 'second'; units are ms, s, m, "
                  "h, d); write 1s"},
        Explained{"SpelledParts", "1 hour 30 minutes",
                  "'1 hour 30 minutes' is not a duration (spaces are not allowed; unknown unit 'hour'; units are ms, "
                  "s, m, h, d); write 90m"},
        Explained{"SpaceBeforeUnit", "5 s", "'5 s' is not a duration (spaces are not allowed); write 5s"},
        Explained{"TrailingSpace", "5s ", "'5s ' is not a duration (spaces are not allowed); write 5s"},
        Explained{"SpelledUnit", "5sec",
                  "'5sec' is not a duration (unknown unit 'sec'; units are ms, s, m, h, d); write 5s"},
        Explained{"UpperCaseUnit", "5S",
                  "'5S' is not a duration (unknown unit 'S'; units are ms, s, m, h, d); write 5s"},
        Explained{"UnknownWord", "5x",
                  "'5x' is not a duration (unknown unit 'x'; units are ms, s, m, h, d); use e.g. 250ms, 30s, 5m, 2h, "
                  "1d or 1h30m"},
        Explained{"BareNumberAfterAPart", "5m30",
                  "'5m30' is not a duration (missing unit after 30; units are ms, s, m, h, d); use e.g. 250ms, 30s, "
                  "5m, 2h, 1d or 1h30m"},
        Explained{"HugeSpelledParts", "106751991167 days 106751991167 days",
                  "'106751991167 days 106751991167 days' is not a duration (spaces are not allowed; unknown unit "
                  "'days'; units are ms, s, m, h, d); use e.g. 250ms, 30s, 5m, 2h, 1d or 1h30m"},
        Explained{"Negative", "-5s",
                  "'-5s' is not a duration (expected a number); use e.g. 250ms, 30s, 5m, 2h, 1d or 1h30m"}),
    [](const ::testing::TestParamInfo<Explained>& p) { return p.param.name; });

TEST(FormatDuration, LargestWholeUnitAndParsesBack) {
  EXPECT_EQ(format_duration_ms(0), "0s");
  EXPECT_EQ(format_duration_ms(86'400'000), "1d");
  EXPECT_EQ(format_duration_ms(5'400'000), "90m");
  EXPECT_EQ(format_duration_ms(1'500), "1500ms");
  EXPECT_EQ(format_duration_ms(59'999), "59999ms");
  EXPECT_EQ(format_duration_ms(60'000), "1m");
  for (int64_t ms : {int64_t{1}, int64_t{999}, int64_t{1000}, int64_t{3'600'001}, int64_t{172'800'000}}) {
    Result<int64_t> back = parse_duration_ms(format_duration_ms(ms));
    ASSERT_TRUE(back.ok()) << format_duration_ms(ms);
    EXPECT_EQ(*back, ms);
  }
}

TEST(ApproxDuration, TwoLargestUnitsRoundedDown) {
  EXPECT_EQ(approx_duration_ms(0), "0ms");
  EXPECT_EQ(approx_duration_ms(999), "999ms");
  EXPECT_EQ(approx_duration_ms(1000), "1s");
  EXPECT_EQ(approx_duration_ms(125'999), "2m 5s");
  EXPECT_EQ(approx_duration_ms(3'600'000 + 59'999), "1h");  // the minutes are 0: nothing finer is shown
  EXPECT_EQ(approx_duration_ms(93'784'005), "1d 2h");
  EXPECT_EQ(approx_duration_ms(86'400'000 * 400LL + 3'600'000), "400d 1h");
}

// ---- parse_timestamp_ms ---------------------------------------------------

struct GoodTimestamp {
  std::string name;
  std::string text;
  int64_t epoch_ms;
};

void PrintTo(const GoodTimestamp& c, std::ostream* os) { *os << c.name; }

class TimestampParses : public ::testing::TestWithParam<GoodTimestamp> {};

TEST_P(TimestampParses, ToExactEpochMs) {
  Result<int64_t> ms = parse_timestamp_ms(GetParam().text);
  ASSERT_TRUE(ms.ok()) << GetParam().text << ": " << ms.error().describe();
  EXPECT_EQ(*ms, GetParam().epoch_ms) << GetParam().text;
}

INSTANTIATE_TEST_SUITE_P(
    Timestamp, TimestampParses,
    ::testing::Values(GoodTimestamp{"Utc", "2026-11-22T10:00:00Z", 1'795'341'600'000},
                      GoodTimestamp{"LowerCaseZ", "2026-11-22T10:00:00z", 1'795'341'600'000},
                      GoodTimestamp{"LowerCaseT", "2026-11-22t10:00:00Z", 1'795'341'600'000},
                      GoodTimestamp{"SpaceSeparator", "2026-11-22 10:00:00Z", 1'795'341'600'000},
                      GoodTimestamp{"ZeroOffset", "2026-11-22T10:00:00+00:00", 1'795'341'600'000},
                      GoodTimestamp{"NegativeZeroOffset", "2026-11-22T10:00:00-00:00", 1'795'341'600'000},
                      GoodTimestamp{"PlusOneHour", "2026-11-22T10:00:00+01:00", 1'795'338'000'000},
                      GoodTimestamp{"MinusFiveThirty", "2026-11-22T10:00:00-05:30", 1'795'361'400'000},
                      GoodTimestamp{"LargestOffset", "2026-11-22T10:00:00+23:59", 1'795'255'260'000},
                      GoodTimestamp{"HalfSecond", "2026-11-22T10:00:00.5Z", 1'795'341'600'500},
                      GoodTimestamp{"Milliseconds", "2026-11-22T10:00:00.250Z", 1'795'341'600'250},
                      GoodTimestamp{"MicrosecondsTruncate", "2026-11-22T10:00:00.123456Z", 1'795'341'600'123},
                      GoodTimestamp{"NanosecondsTruncate", "2026-11-22T10:00:00.999999999Z", 1'795'341'600'999},
                      GoodTimestamp{"FractionWithOffset", "2026-11-22T10:00:00.250+01:00", 1'795'338'000'250},
                      GoodTimestamp{"LeapDay2024", "2024-02-29T12:00:00Z", 1'709'208'000'000},
                      GoodTimestamp{"LeapDay2000", "2000-02-29T00:00:00Z", 951'782'400'000},
                      GoodTimestamp{"LastSecondOfFeb2100", "2100-02-28T23:59:59Z", 4'107'542'399'000},
                      GoodTimestamp{"Epoch", "1970-01-01T00:00:00Z", 0},
                      GoodTimestamp{"FirstOf2026", "2026-01-01T00:00:00Z", 1'767'225'600'000},
                      GoodTimestamp{"LastSecondOf2026", "2026-12-31T23:59:59Z", 1'798'761'599'000},
                      GoodTimestamp{"LastMsOfYear9999", "9999-12-31T23:59:59.999Z", 253'402'300'799'999}),
    [](const ::testing::TestParamInfo<GoodTimestamp>& p) { return p.param.name; });

struct BadTimestamp {
  std::string name;
  std::string text;
};

void PrintTo(const BadTimestamp& c, std::ostream* os) { *os << c.name; }

class TimestampRefuses : public ::testing::TestWithParam<BadTimestamp> {};

TEST_P(TimestampRefuses, AsInvalidQuotingTheText) {
  Result<int64_t> ms = parse_timestamp_ms(GetParam().text);
  ASSERT_FALSE(ms.ok()) << "'" << GetParam().text << "' gave " << *ms;
  EXPECT_EQ(ms.error().code, Errc::invalid);
  EXPECT_THAT(ms.error().message, HasSubstr("'" + GetParam().text + "' is not a timestamp"));
}

INSTANTIATE_TEST_SUITE_P(
    Timestamp, TimestampRefuses,
    ::testing::Values(
        BadTimestamp{"Empty", ""}, BadTimestamp{"DateOnly", "2026-11-22"},
        BadTimestamp{"MissingZone", "2026-11-22T10:00:00"},
        BadTimestamp{"MissingZoneAfterFraction", "2026-11-22T10:00:00.250"},
        BadTimestamp{"NoSeconds", "2026-11-22T10:00Z"}, BadTimestamp{"Month13", "2026-13-01T00:00:00Z"},
        BadTimestamp{"Month0", "2026-00-10T00:00:00Z"}, BadTimestamp{"Feb29NonLeapYear", "2023-02-29T00:00:00Z"},
        BadTimestamp{"Feb29Century", "2100-02-29T00:00:00Z"}, BadTimestamp{"April31", "2026-04-31T00:00:00Z"},
        BadTimestamp{"Day0", "2026-01-00T00:00:00Z"}, BadTimestamp{"Day32", "2026-01-32T00:00:00Z"},
        BadTimestamp{"Hour24", "2026-11-22T24:00:00Z"}, BadTimestamp{"Minute60", "2026-11-22T10:60:00Z"},
        BadTimestamp{"Second61", "2026-11-22T10:00:61Z"}, BadTimestamp{"TrailingZ", "2026-11-22T10:00:00ZZ"},
        BadTimestamp{"TrailingSpace", "2026-11-22T10:00:00Z "},
        BadTimestamp{"TrailingJunkAfterOffset", "2026-11-22T10:00:00+01:00x"},
        BadTimestamp{"OffsetWithoutColon", "2026-11-22T10:00:00+0100"},
        BadTimestamp{"OffsetHoursOnly", "2026-11-22T10:00:00+01"},
        BadTimestamp{"OffsetHour24", "2026-11-22T10:00:00+24:00"},
        BadTimestamp{"OffsetMinute60", "2026-11-22T10:00:00+01:60"},
        BadTimestamp{"EmptyFraction", "2026-11-22T10:00:00.Z"}, BadTimestamp{"CommaFraction", "2026-11-22T10:00:00,5Z"},
        BadTimestamp{"BadSeparator", "2026-11-22X10:00:00Z"}, BadTimestamp{"Slashes", "2026/11/22T10:00:00Z"},
        BadTimestamp{"TwoDigitYear", "26-11-22T10:00:00Z"}, BadTimestamp{"LetterInMonth", "2026-1a-22T10:00:00Z"},
        BadTimestamp{"SingleDigitMonth", "2026-1-22T10:00:00Z"}, BadTimestamp{"LeadingSpace", " 2026-11-22T10:00:00Z"},
        BadTimestamp{"Before1970", "1969-12-31T23:59:59Z"}, BadTimestamp{"EpochSeconds", "1795341600"}),
    [](const ::testing::TestParamInfo<BadTimestamp>& p) { return p.param.name; });

TEST(ParseTimestamp, MissingZoneMessageSaysHowToFixIt) {
  Result<int64_t> ms = parse_timestamp_ms("2026-11-22T10:00:00");
  ASSERT_FALSE(ms.ok());
  EXPECT_THAT(ms.error().message, HasSubstr("missing time zone"));
}

TEST(ParseTimestamp, OffsetsNameTheSameInstant) {
  const Result<int64_t> utc = parse_timestamp_ms("2026-11-22T10:00:00Z");
  const Result<int64_t> paris = parse_timestamp_ms("2026-11-22T11:00:00+01:00");
  const Result<int64_t> delhi = parse_timestamp_ms("2026-11-22T15:30:00+05:30");
  const Result<int64_t> new_york = parse_timestamp_ms("2026-11-22T05:00:00-05:00");
  ASSERT_TRUE(utc.ok() && paris.ok() && delhi.ok() && new_york.ok());
  EXPECT_EQ(*paris, *utc);
  EXPECT_EQ(*delhi, *utc);
  EXPECT_EQ(*new_york, *utc);
}

TEST(ParseTimestamp, OffsetCrossesMidnightAndYearEnd) {
  // 2027-01-01T00:30+01:00 is 2026-12-31T23:30Z.
  const Result<int64_t> ms = parse_timestamp_ms("2027-01-01T00:30:00+01:00");
  ASSERT_TRUE(ms.ok()) << ms.error().describe();
  EXPECT_EQ(*ms, 1'798'759'800'000);
}

TEST(ParseTimestamp, LeapDayEdgesBothWays) {
  // 2024-02-29 is the last day of February 2024; 2024-02-30 is not a day.
  const Result<int64_t> last = parse_timestamp_ms("2024-02-29T23:59:59Z");
  ASSERT_TRUE(last.ok()) << last.error().describe();
  EXPECT_EQ(*last, 1'709'251'199'000);
  EXPECT_FALSE(parse_timestamp_ms("2024-02-30T00:00:00Z").ok());
  const Result<int64_t> next = parse_timestamp_ms("2024-03-01T00:00:00Z");
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(*next - *last, 1000);
}

TEST(ParseTimestamp, LeapSecondIsHeldAtTheLastMillisecondOfTheMinute) {
  // duration.cc: "a leap second is held at :59.999 rather than refused", which
  // keeps :60 after every instant of :59.
  const Result<int64_t> leap = parse_timestamp_ms("2026-12-31T23:59:60Z");
  ASSERT_TRUE(leap.ok()) << leap.error().describe();
  EXPECT_EQ(*leap, 1'798'761'599'999);
  const Result<int64_t> late59 = parse_timestamp_ms("2026-12-31T23:59:59.500Z");
  ASSERT_TRUE(late59.ok());
  EXPECT_GE(*leap, *late59);
}

TEST(ParseTimestamp, OffsetThatPutsTheInstantBefore1970IsRefused) {
  // 1970-01-01T00:30+01:00 is 1969-12-31T23:30Z: before the epoch, like
  // "1969-12-31T23:59:59Z" which is refused; never a negative epoch value.
  const Result<int64_t> ms = parse_timestamp_ms("1970-01-01T00:30:00+01:00");
  EXPECT_FALSE(ms.ok()) << "gave " << *ms;
}

TEST(ParseTimestamp, EarliestInstantWithOffsetIsAccepted) {
  // 1970-01-01T01:00+01:00 is exactly the epoch.
  const Result<int64_t> ms = parse_timestamp_ms("1970-01-01T01:00:00+01:00");
  ASSERT_TRUE(ms.ok()) << ms.error().describe();
  EXPECT_EQ(*ms, 0);
}

}  // namespace
}  // namespace ripen
