// A schedule that fires at the wrong instant, twice, or not at all is a silent
// failure nobody sees until a report is missing. These tests hold the parser to
// its grammar (every refusal names the field) and next_after() to instants
// worked out by hand: each expected time is written as local wall time with its
// UTC offset, and every one was checked against the real tz database with
// `TZ=<zone> date -d <instant> '+%FT%T%:z'` (GNU date, glibc's own tz code), so
// a shared mistake between this code and its tests cannot hide. DST days are
// walked end to end in Berlin, New York, Sydney and Lord Howe (a 30-minute
// shift), both directions, with restricted and unrestricted hour fields.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "ripen/cron.h"
#include "ripen/duration.h"

namespace ripen {
namespace {

using ::testing::HasSubstr;

int64_t at(const std::string& rfc3339) {
  auto ms = parse_timestamp_ms(rfc3339);
  if (!ms) ADD_FAILURE() << rfc3339 << ": " << ms.error().describe();
  return ms ? *ms : 0;
}

// An instant as UTC text, so a failure shows two readable times.
std::string utc(std::optional<int64_t> ms) {
  if (!ms) return "never";
  using namespace std::chrono;
  const sys_time<milliseconds> t{milliseconds{*ms}};
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss<milliseconds> hms{t - day};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02ld:%02ld:%02ld.%03ldZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<long>(hms.hours().count()), static_cast<long>(hms.minutes().count()),
                static_cast<long>(hms.seconds().count()), static_cast<long>(hms.subseconds().count()));
  return buf;
}

TimeZone zone(const std::string& name) {
  auto z = TimeZone::named(name);
  if (!z) {
    ADD_FAILURE() << z.error().describe();
    return TimeZone::utc();
  }
  return *z;
}

CronExpr cron(const std::string& text) {
  auto e = CronExpr::parse(text);
  if (!e) {
    ADD_FAILURE() << e.error().describe();
    return *CronExpr::parse("* * * * *");
  }
  return *e;
}

// ---- parsing ----------------------------------------------------------------

struct Accepted {
  std::string text;
};

void PrintTo(const Accepted& c, std::ostream* os) { *os << "'" << c.text << "'"; }

class CronAccepts : public ::testing::TestWithParam<Accepted> {};

TEST_P(CronAccepts, AndKeepsTheTextWithoutSurroundingBlanks) {
  auto e = CronExpr::parse(GetParam().text);
  ASSERT_TRUE(e.ok()) << e.error().describe();
  const std::string& t = GetParam().text;
  EXPECT_EQ(e->text(),
            t.substr(t.find_first_not_of(" \t"), t.find_last_not_of(" \t") - t.find_first_not_of(" \t") + 1));
  EXPECT_TRUE(e->next_after(at("2026-01-01T00:00:00Z"), TimeZone::utc()).has_value());
}

INSTANTIATE_TEST_SUITE_P(
    Cron, CronAccepts,
    ::testing::Values(Accepted{"* * * * *"}, Accepted{"*/15 * * * *"}, Accepted{"0 9-17 * * MON-FRI"},
                      Accepted{"1-30/5 * * * *"}, Accepted{"5/10 * * * *"}, Accepted{"0 0 1,15,31 * *"},
                      Accepted{"0 0 * JAN-DEC SUN-SAT"}, Accepted{"0 0 * jan,Feb,MAR * "}, Accepted{"0 0 * * 0-7"},
                      Accepted{"0 0 * * 7"}, Accepted{"0 0 ? * MON"}, Accepted{"0 0 1 * ?"}, Accepted{"0 0 1 1 0/2"},
                      Accepted{"*/60 * * * *"}, Accepted{"0 0 */31 * *"}, Accepted{"0 0 * * */8"},
                      Accepted{"30 */5 * * * *"}, Accepted{"0-59/20 0 0 1 1 *"}, Accepted{"  0\t2  * * *\t"},
                      Accepted{"@yearly"}, Accepted{"@annually"}, Accepted{"@monthly"}, Accepted{"@weekly"},
                      Accepted{"@daily"}, Accepted{"@midnight"}, Accepted{"@hourly"}, Accepted{"@Daily"},
                      Accepted{"0 0 30 2 MON"}));

struct Refused {
  std::string name;
  std::string text;
  std::string message;  // the whole message after "cron '<text>': "
};

void PrintTo(const Refused& c, std::ostream* os) { *os << c.name; }

class CronRefuses : public ::testing::TestWithParam<Refused> {};

TEST_P(CronRefuses, AsInvalidNamingTheFieldAndTheReason) {
  auto e = CronExpr::parse(GetParam().text);
  ASSERT_FALSE(e.ok()) << "'" << GetParam().text << "' parsed";
  EXPECT_EQ(e.error().code, Errc::invalid);
  EXPECT_EQ(e.error().message, "cron '" + GetParam().text + "': " + GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(
    Cron, CronRefuses,
    ::testing::Values(
        Refused{"Empty", "", "expected 5 or 6 fields, got 0"},
        Refused{"FourFields", "* * * *", "expected 5 or 6 fields, got 4"},
        Refused{"SevenFields", "* * * * * * *", "expected 5 or 6 fields, got 7"},
        Refused{"UnknownMacro", "@often", "unknown macro '@often'"},
        Refused{"Reboot", "@reboot", "unknown macro '@reboot'"},
        Refused{"MacroWithFields", "@daily 5", "macro '@daily' takes no fields"},
        Refused{"MinuteTooBig", "61 * * * *", "minute: 61 is out of range 0-59"},
        Refused{"MinuteHuge", "99999 * * * *", "minute: 99999 is out of range 0-59"},
        Refused{"SecondTooBig", "60 * * * * *", "second: 60 is out of range 0-59"},
        Refused{"HourTooBig", "0 24 * * *", "hour: 24 is out of range 0-23"},
        Refused{"DayZero", "0 0 0 * *", "day-of-month: 0 is out of range 1-31"},
        Refused{"DayTooBig", "0 0 32 * *", "day-of-month: 32 is out of range 1-31"},
        Refused{"MonthZero", "0 0 * 0 *", "month: 0 is out of range 1-12"},
        Refused{"MonthTooBig", "0 0 * 13 *", "month: 13 is out of range 1-12"},
        Refused{"WeekdayTooBig", "0 0 * * 8", "day-of-week: 8 is out of range 0-7"},
        Refused{"StepZero", "*/0 * * * *", "minute: step 0 is out of range 1-60"},
        Refused{"StepTooBig", "0 */25 * * *", "hour: step 25 is out of range 1-24"},
        Refused{"StepNotANumber", "*/x * * * *", "minute: step 'x' is not a number"},
        Refused{"StepEmpty", "5/ * * * *", "minute: step '' is not a number"},
        Refused{"TwoSlashes", "1/2/3 * * * *", "minute: step '2/3' is not a number"},
        Refused{"Backwards", "30-10 * * * *", "minute: range 30-10 runs backwards"},
        Refused{"BackwardsNames", "0 0 * * FRI-MON", "day-of-week: range FRI-MON runs backwards"},
        Refused{"ThreePartRange", "1-2-3 * * * *", "minute: '2-3' is not a number"},
        Refused{"Negative", "-5 * * * *", "minute: a value is missing"},
        Refused{"EmptyListItem", "1,,2 * * * *", "minute: empty item in the list"},
        Refused{"TrailingComma", "0 0 1, * *", "day-of-month: empty item in the list"},
        Refused{"QuestionMarkInMinute", "? * * * *", "minute: '?' is allowed only in day-of-month and day-of-week"},
        Refused{"QuestionMarkInMonth", "0 0 * ? *", "month: '?' is allowed only in day-of-month and day-of-week"},
        Refused{"UnknownMonth", "0 0 * FOO *", "month: 'FOO' is not a month name (JAN-DEC)"},
        Refused{"FullMonthName", "0 0 * January *", "month: 'January' is not a month name (JAN-DEC)"},
        Refused{"UnknownWeekday", "0 0 * * FUN", "day-of-week: 'FUN' is not a day-of-week name (SUN-SAT)"},
        Refused{"NameInMinute", "JAN * * * *", "minute: 'JAN' is not a number"},
        Refused{"QuartzLast", "0 0 L * *", "day-of-month: 'L' is not a number"},
        Refused{"QuartzNth", "0 0 * * 5#3", "day-of-week: '5#3' is not a number"},
        Refused{"Decimal", "1.5 * * * *", "minute: '1.5' is not a number"}));

// Spellings of one schedule must fire at the same instants, DST included.
struct Same {
  std::string a;
  std::string b;
};

void PrintTo(const Same& c, std::ostream* os) { *os << "'" << c.a << "' = '" << c.b << "'"; }

class CronSpellings : public ::testing::TestWithParam<Same> {};

TEST_P(CronSpellings, FireAtTheSameInstants) {
  const CronExpr a = cron(GetParam().a);
  const CronExpr b = cron(GetParam().b);
  const TimeZone berlin = zone("Europe/Berlin");
  std::optional<int64_t> ta = at("2026-03-20T00:00:00Z");
  std::optional<int64_t> tb = ta;
  for (int i = 0; i < 40 && ta && tb; ++i) {
    ta = a.next_after(*ta, berlin);
    tb = b.next_after(*tb, berlin);
    ASSERT_EQ(utc(ta), utc(tb)) << "firing #" << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Cron, CronSpellings,
                         ::testing::Values(Same{"0 0 * * 0", "0 0 * * 7"}, Same{"0 0 * * SUN", "0 0 * * sun"},
                                           Same{"0 0 * * 5-7", "0 0 * * 0,5,6"}, Same{"0 0 * * MON-FRI", "0 0 * * 1-5"},
                                           Same{"0 0 1 JAN-MAR *", "0 0 1 1,2,3 *"}, Same{"*/1 * * * *", "* * * * *"},
                                           Same{"0-59 * * * *", "* * * * *"}, Same{"5-7 * * * *", "5,6,7 * * * *"},
                                           Same{"5/20 * * * *", "5,25,45 * * * *"}, Same{"* * ? * *", "* * * * *"},
                                           Same{"0 * * * * *", "* * * * *"}, Same{"@daily", "0 0 * * *"},
                                           Same{"@midnight", "0 0 0 * * *"}, Same{"@hourly", "0 * * * *"},
                                           Same{"@weekly", "0 0 * * 0"}, Same{"@monthly", "0 0 1 * *"},
                                           Same{"@yearly", "0 0 1 1 *"}, Same{"@annually", "@yearly"},
                                           Same{"\t0  2 * * *  ", "0 2 * * *"}));

// ---- next_after: known answers -------------------------------------------------

struct Sequence {
  std::string name;
  std::string cron;
  std::string zone;
  std::string after;
  std::vector<std::string> fires;  // the next firings, in order
  std::string quiet_until;         // when set: nothing more fires before this instant
};

void PrintTo(const Sequence& c, std::ostream* os) { *os << c.name; }

class CronFires : public ::testing::TestWithParam<Sequence> {};

TEST_P(CronFires, AtExactlyTheseInstantsInOrder) {
  const Sequence& s = GetParam();
  const CronExpr e = cron(s.cron);
  const TimeZone z = zone(s.zone);
  int64_t t = at(s.after);
  for (const std::string& want : s.fires) {
    const std::optional<int64_t> got = e.next_after(t, z);
    ASSERT_EQ(utc(got), utc(at(want))) << "'" << s.cron << "' in " << s.zone << " after " << utc(t) << ", expected "
                                       << want;
    t = *got;
  }
  if (!s.quiet_until.empty()) {
    const std::optional<int64_t> got = e.next_after(t, z);
    ASSERT_TRUE(got.has_value());
    EXPECT_GE(*got, at(s.quiet_until)) << "an extra firing at " << utc(got);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Basics, CronFires,
    ::testing::Values(
        Sequence{"EveryMinute",
                 "* * * * *",
                 "UTC",
                 "2026-01-01T00:00:00Z",
                 {"2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z", "2026-01-01T00:03:00Z"}},
        Sequence{"EveryMinuteFromMidSecond", "* * * * *", "UTC", "2026-01-01T00:00:30.500Z", {"2026-01-01T00:01:00Z"}},
        Sequence{"EveryQuarterHour",
                 "*/15 * * * *",
                 "UTC",
                 "2026-01-01T00:07:00Z",
                 {"2026-01-01T00:15:00Z", "2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z", "2026-01-01T01:00:00Z"}},
        Sequence{"FiveSlashTenIsFiveToMax",
                 "5/10 * * * *",
                 "UTC",
                 "2026-01-01T00:00:00Z",
                 {"2026-01-01T00:05:00Z", "2026-01-01T00:15:00Z", "2026-01-01T00:25:00Z", "2026-01-01T00:35:00Z",
                  "2026-01-01T00:45:00Z", "2026-01-01T00:55:00Z", "2026-01-01T01:05:00Z"}},
        // 2026-01-02 is a Friday.
        Sequence{"SteppedRangeOnWeekdays",
                 "0 9-17/4 * * MON-FRI",
                 "UTC",
                 "2026-01-02T10:00:00Z",
                 {"2026-01-02T13:00:00Z", "2026-01-02T17:00:00Z", "2026-01-05T09:00:00Z", "2026-01-05T13:00:00Z"}},
        Sequence{"Lists",
                 "5,35 0 1,15 * *",
                 "UTC",
                 "2026-01-01T00:10:00Z",
                 {"2026-01-01T00:35:00Z", "2026-01-15T00:05:00Z", "2026-01-15T00:35:00Z", "2026-02-01T00:05:00Z"}},
        Sequence{"NamesInAnyCase",
                 "0 12 * jan,Jul sun",
                 "UTC",
                 "2026-01-01T00:00:00Z",
                 {"2026-01-04T12:00:00Z", "2026-01-11T12:00:00Z", "2026-01-18T12:00:00Z", "2026-01-25T12:00:00Z",
                  "2026-07-05T12:00:00Z"}},
        Sequence{"SevenIsSunday",
                 "0 0 * * 7",
                 "UTC",
                 "2026-01-01T00:00:00Z",
                 {"2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"}},
        // Both day fields restricted: the 13th OR a Friday (2026-04-13 is a Monday).
        Sequence{"DayOfMonthOrDayOfWeek",
                 "0 0 13 * FRI",
                 "UTC",
                 "2026-04-01T00:00:00Z",
                 {"2026-04-03T00:00:00Z", "2026-04-10T00:00:00Z", "2026-04-13T00:00:00Z", "2026-04-17T00:00:00Z",
                  "2026-04-24T00:00:00Z", "2026-05-01T00:00:00Z"}},
        Sequence{"VixieOrRuleFiresEveryFirstWeekDayAndEverySunday",
                 "0 0 1-7 * SUN",
                 "UTC",
                 "2026-03-31T12:00:00Z",
                 {"2026-04-01T00:00:00Z", "2026-04-02T00:00:00Z", "2026-04-03T00:00:00Z", "2026-04-04T00:00:00Z",
                  "2026-04-05T00:00:00Z", "2026-04-06T00:00:00Z", "2026-04-07T00:00:00Z", "2026-04-12T00:00:00Z"}},
        // A day field starting with '*' makes both apply: the first Sunday of each month.
        Sequence{"StarredDayOfWeekMeansBoth",
                 "0 0 1-7 * */7",
                 "UTC",
                 "2026-04-01T00:00:00Z",
                 {"2026-04-05T00:00:00Z", "2026-05-03T00:00:00Z", "2026-06-07T00:00:00Z", "2026-07-05T00:00:00Z"}},
        Sequence{"EverySecondsField",
                 "*/20 * * * * *",
                 "UTC",
                 "2026-01-01T00:00:00Z",
                 {"2026-01-01T00:00:20Z", "2026-01-01T00:00:40Z", "2026-01-01T00:01:00Z"}},
        Sequence{"FixedSecond", "30 0 12 * * *", "UTC", "2026-01-01T12:00:30Z", {"2026-01-02T12:00:30Z"}},
        Sequence{"Hourly", "@hourly", "UTC", "2026-01-01T00:30:00Z", {"2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"}},
        Sequence{"Daily", "@daily", "UTC", "2026-01-01T00:00:00Z", {"2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"}},
        Sequence{"WeeklyOnSunday",
                 "@weekly",
                 "UTC",
                 "2026-01-01T00:00:00Z",
                 {"2026-01-04T00:00:00Z", "2026-01-11T00:00:00Z"}},
        Sequence{
            "Monthly", "@monthly", "UTC", "2026-01-01T00:00:00Z", {"2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"}},
        Sequence{"Yearly", "@yearly", "UTC", "2026-01-01T00:00:00Z", {"2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"}},
        Sequence{"DailyInBerlinSummer",
                 "0 9 * * *",
                 "Europe/Berlin",
                 "2026-06-30T12:00:00Z",
                 {"2026-07-01T09:00:00+02:00", "2026-07-02T09:00:00+02:00"}},
        Sequence{"ThirtyFirstSkipsShortMonths",
                 "0 0 31 * *",
                 "UTC",
                 "2026-01-01T00:00:00Z",
                 {"2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z", "2026-07-31T00:00:00Z",
                  "2026-08-31T00:00:00Z", "2026-10-31T00:00:00Z", "2026-12-31T00:00:00Z", "2027-01-31T00:00:00Z"}},
        Sequence{"ThirtiethSkipsFebruary", "0 0 30 * *", "UTC", "2026-01-31T00:00:00Z", {"2026-03-30T00:00:00Z"}},
        Sequence{
            "LeapDay", "0 0 29 2 *", "UTC", "2026-01-01T00:00:00Z", {"2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"}},
        Sequence{"NoLeapDayIn2100", "0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", {"2104-02-29T00:00:00Z"}},
        // Feb 29 that is a Sunday: 28 years apart, 40 across 2100.
        Sequence{"LeapDayOnASunday",
                 "0 0 29 2 */7",
                 "UTC",
                 "2026-01-01T00:00:00Z",
                 {"2032-02-29T00:00:00Z", "2060-02-29T00:00:00Z", "2088-02-29T00:00:00Z", "2128-02-29T00:00:00Z"}},
        // Restricted both ways: Feb 29 OR a Monday in February.
        Sequence{"LeapDayOrMondayInFebruary",
                 "0 0 29 2 MON",
                 "UTC",
                 "2027-12-31T00:00:00Z",
                 {"2028-02-07T00:00:00Z", "2028-02-14T00:00:00Z", "2028-02-21T00:00:00Z", "2028-02-28T00:00:00Z",
                  "2028-02-29T00:00:00Z", "2029-02-05T00:00:00Z"}}));

// Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (at 01:00Z);
// 2026-10-25 03:00 CEST -> 02:00 CET (at 01:00Z), so 02:00-02:59 happens twice.
INSTANTIATE_TEST_SUITE_P(
    Berlin, CronFires,
    ::testing::Values(Sequence{"GapTimeFiresAtTheEndOfTheGap",
                               "30 2 * * *",
                               "Europe/Berlin",
                               "2026-03-27T12:00:00Z",
                               {"2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"}},
                      Sequence{"GapTimesCoalesce",
                               "0,30 2 * * *",
                               "Europe/Berlin",
                               "2026-03-28T12:00:00Z",
                               {"2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"}},
                      Sequence{"GapAndRealTimeAtTheSameInstantFireOnce",
                               "0,30 1-3 * * *",
                               "Europe/Berlin",
                               "2026-03-29T00:00:00+01:00",
                               {"2026-03-29T01:00:00+01:00", "2026-03-29T01:30:00+01:00", "2026-03-29T03:00:00+02:00",
                                "2026-03-29T03:30:00+02:00", "2026-03-30T01:00:00+02:00"}},
                      Sequence{"GapWithSecondsFiresOnTheWholeSecondAfter",
                               "30 30 2 * * *",
                               "Europe/Berlin",
                               "2026-03-28T12:00:00Z",
                               {"2026-03-29T03:00:00+02:00", "2026-03-30T02:30:30+02:00"}},
                      Sequence{"TimeAfterTheGapIsUntouched",
                               "30 3 * * *",
                               "Europe/Berlin",
                               "2026-03-28T12:00:00Z",
                               {"2026-03-29T03:30:00+02:00", "2026-03-30T03:30:00+02:00"}},
                      Sequence{"EveryHourSkipsTheMissingHour",
                               "0 * * * *",
                               "Europe/Berlin",
                               "2026-03-29T00:30:00+01:00",
                               {"2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"}},
                      Sequence{"EveryQuarterSkipsTheMissingHour",
                               "*/15 * * * *",
                               "Europe/Berlin",
                               "2026-03-29T01:30:00+01:00",
                               {"2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"}},
                      Sequence{"RepeatedTimeFiresAtItsFirstOccurrence",
                               "30 2 * * *",
                               "Europe/Berlin",
                               "2026-10-24T12:00:00Z",
                               {"2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"}},
                      Sequence{"RepeatedTimeNotFiredWhenStartingBetweenOccurrences",
                               "30 2 * * *",
                               "Europe/Berlin",
                               "2026-10-25T02:45:00+02:00",
                               {"2026-10-26T02:30:00+01:00"}},
                      Sequence{"RestrictedHoursThroughTheRepeat",
                               "*/30 2 * * *",
                               "Europe/Berlin",
                               "2026-10-24T12:00:00Z",
                               {"2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:00:00+01:00"}},
                      Sequence{"HourRangeThroughTheRepeat",
                               "0 1-3 * * *",
                               "Europe/Berlin",
                               "2026-10-25T00:00:00+02:00",
                               {"2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00"}},
                      Sequence{"EveryHourFiresEveryRealHour",
                               "0 * * * *",
                               "Europe/Berlin",
                               "2026-10-25T00:30:00+02:00",
                               {"2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00",
                                "2026-10-25T03:00:00+01:00"}},
                      Sequence{"EveryQuarterFiresThroughTheRepeatedHour",
                               "*/15 * * * *",
                               "Europe/Berlin",
                               "2026-10-25T01:50:00+02:00",
                               {"2026-10-25T02:00:00+02:00", "2026-10-25T02:15:00+02:00", "2026-10-25T02:30:00+02:00",
                                "2026-10-25T02:45:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T02:15:00+01:00",
                                "2026-10-25T02:30:00+01:00", "2026-10-25T02:45:00+01:00", "2026-10-25T03:00:00+01:00"}},
                      Sequence{"UnrestrictedStartingInsideTheRepeat",
                               "30 * * * *",
                               "Europe/Berlin",
                               "2026-10-25T02:45:00+02:00",
                               {"2026-10-25T02:30:00+01:00", "2026-10-25T03:30:00+01:00"}},
                      Sequence{
                          "HourRangeOfAllHoursIsUnrestricted",
                          "0 0-23 * * *",
                          "Europe/Berlin",
                          "2026-10-25T01:30:00+02:00",
                          {"2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"}}));

// America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z);
// 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z), so 01:00-01:59 happens twice.
INSTANTIATE_TEST_SUITE_P(NewYork, CronFires,
                         ::testing::Values(Sequence{"GapTimeFiresAtTheEndOfTheGap",
                                                    "30 2 * * *",
                                                    "America/New_York",
                                                    "2026-03-07T12:00:00Z",
                                                    {"2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"}},
                                           Sequence{"EveryHalfHourSkipsTheMissingHour",
                                                    "*/30 * * * *",
                                                    "America/New_York",
                                                    "2026-03-08T01:00:00-05:00",
                                                    {"2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00",
                                                     "2026-03-08T03:30:00-04:00"}},
                                           Sequence{"RepeatedTimeFiresAtItsFirstOccurrence",
                                                    "30 1 * * *",
                                                    "America/New_York",
                                                    "2026-10-31T12:00:00Z",
                                                    {"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"}},
                                           Sequence{"EveryHalfHourFiresThroughTheRepeatedHour",
                                                    "*/30 * * * *",
                                                    "America/New_York",
                                                    "2026-11-01T00:00:00-04:00",
                                                    {"2026-11-01T00:30:00-04:00", "2026-11-01T01:00:00-04:00",
                                                     "2026-11-01T01:30:00-04:00", "2026-11-01T01:00:00-05:00",
                                                     "2026-11-01T01:30:00-05:00", "2026-11-01T02:00:00-05:00"}}));

// Australia/Sydney: 2026-04-05 03:00 AEDT -> 02:00 AEST (2026-04-04T16:00Z);
// 2026-10-04 02:00 AEST -> 03:00 AEDT (2026-10-03T16:00Z).
// Australia/Lord_Howe moves by 30 minutes: 2026-10-04 02:00 +10:30 -> 02:30 +11:00.
INSTANTIATE_TEST_SUITE_P(
    Southern, CronFires,
    ::testing::Values(Sequence{"SydneyRepeatedTimeFiresAtItsFirstOccurrence",
                               "30 2 * * *",
                               "Australia/Sydney",
                               "2026-04-04T00:00:00Z",
                               {"2026-04-05T02:30:00+11:00", "2026-04-06T02:30:00+10:00"}},
                      Sequence{"SydneyEveryHourFiresEveryRealHour",
                               "0 * * * *",
                               "Australia/Sydney",
                               "2026-04-05T01:30:00+11:00",
                               {"2026-04-05T02:00:00+11:00", "2026-04-05T02:00:00+10:00", "2026-04-05T03:00:00+10:00"}},
                      Sequence{"SydneyGapTimeFiresAtTheEndOfTheGap",
                               "30 2 * * *",
                               "Australia/Sydney",
                               "2026-10-03T00:00:00Z",
                               {"2026-10-04T03:00:00+11:00", "2026-10-05T02:30:00+11:00"}},
                      Sequence{"SydneyEveryTwentyMinutesSkipsTheMissingHour",
                               "*/20 * * * *",
                               "Australia/Sydney",
                               "2026-10-04T01:30:00+10:00",
                               {"2026-10-04T01:40:00+10:00", "2026-10-04T03:00:00+11:00", "2026-10-04T03:20:00+11:00"}},
                      Sequence{"LordHoweGapTimeFiresAtTheEndOfAHalfHourGap",
                               "15 2 * * *",
                               "Australia/Lord_Howe",
                               "2026-10-03T00:00:00Z",
                               {"2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"}},
                      Sequence{
                          "LordHoweEveryQuarterSkipsTheMissingHalfHour",
                          "*/15 * * * *",
                          "Australia/Lord_Howe",
                          "2026-10-04T01:40:00+10:30",
                          {"2026-10-04T01:45:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-04T02:45:00+11:00"}}));

// ---- whole DST days ------------------------------------------------------------

struct Day {
  std::string name;
  std::string cron;
  std::string zone;
  std::string start;  // local midnight
  std::string end;    // the next local midnight
  int fires;          // firings in [start, end)
};

void PrintTo(const Day& c, std::ostream* os) { *os << c.name; }

class CronDstDay : public ::testing::TestWithParam<Day> {};

TEST_P(CronDstDay, HasNoSkippedOrDoubledRun) {
  const Day& d = GetParam();
  const CronExpr e = cron(d.cron);
  const TimeZone z = zone(d.zone);
  int count = 0;
  int64_t t = at(d.start) - 1;
  std::vector<std::string> seen;
  while (true) {
    const std::optional<int64_t> next = e.next_after(t, z);
    ASSERT_TRUE(next.has_value());
    ASSERT_GT(*next, t);
    if (*next >= at(d.end)) break;
    seen.push_back(utc(next));
    ++count;
    t = *next;
  }
  EXPECT_EQ(count, d.fires) << ::testing::PrintToString(seen);
}

INSTANTIATE_TEST_SUITE_P(Cron, CronDstDay,
                         ::testing::Values(Day{"BerlinSpringHourly", "0 * * * *", "Europe/Berlin",
                                               "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00", 23},
                                           Day{"BerlinFallHourly", "0 * * * *", "Europe/Berlin",
                                               "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 25},
                                           Day{"BerlinSpringQuarters", "*/15 * * * *", "Europe/Berlin",
                                               "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00", 92},
                                           Day{"BerlinFallQuarters", "*/15 * * * *", "Europe/Berlin",
                                               "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 100},
                                           // 01:00, then 02:00 (missing) and 03:00 are one firing at 03:00 CEST.
                                           Day{"BerlinSpringRestrictedHours", "0 1-23 * * *", "Europe/Berlin",
                                               "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00", 22},
                                           Day{"BerlinFallRestrictedHours", "0 1-23 * * *", "Europe/Berlin",
                                               "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 23},
                                           Day{"BerlinSpringDaily", "30 2 * * *", "Europe/Berlin",
                                               "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00", 1},
                                           Day{"BerlinFallDaily", "30 2 * * *", "Europe/Berlin",
                                               "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00", 1},
                                           Day{"NewYorkSpringHourly", "0 * * * *", "America/New_York",
                                               "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00", 23},
                                           Day{"NewYorkFallHourly", "0 * * * *", "America/New_York",
                                               "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00", 25},
                                           Day{"NewYorkFallDaily", "30 1 * * *", "America/New_York",
                                               "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00", 1},
                                           Day{"SydneyFallHourly", "0 * * * *", "Australia/Sydney",
                                               "2026-04-05T00:00:00+11:00", "2026-04-06T00:00:00+10:00", 25},
                                           Day{"SydneySpringHourly", "0 * * * *", "Australia/Sydney",
                                               "2026-10-04T00:00:00+10:00", "2026-10-05T00:00:00+11:00", 23},
                                           Day{"SydneySpringDaily", "30 2 * * *", "Australia/Sydney",
                                               "2026-10-04T00:00:00+10:00", "2026-10-05T00:00:00+11:00", 1},
                                           Day{"LordHoweSpringQuarters", "*/15 * * * *", "Australia/Lord_Howe",
                                               "2026-10-04T00:00:00+10:30", "2026-10-05T00:00:00+11:00", 94}));

// ---- edges -----------------------------------------------------------------------

TEST(CronNextAfter, IsStrictlyAfterToTheMillisecond) {
  const CronExpr e = cron("0 12 * * *");
  EXPECT_EQ(utc(e.next_after(at("2026-01-01T12:00:00Z") - 1, TimeZone::utc())), "2026-01-01T12:00:00.000Z");
  EXPECT_EQ(utc(e.next_after(at("2026-01-01T12:00:00Z"), TimeZone::utc())), "2026-01-02T12:00:00.000Z");
}

TEST(CronNextAfter, GapFiringIsStrictlyAfterToo) {
  const CronExpr e = cron("30 2 * * *");
  const TimeZone berlin = zone("Europe/Berlin");
  EXPECT_EQ(utc(e.next_after(at("2026-03-29T01:00:00Z") - 1, berlin)), "2026-03-29T01:00:00.000Z");
  EXPECT_EQ(utc(e.next_after(at("2026-03-29T01:00:00Z"), berlin)), "2026-03-30T00:30:00.000Z");
}

TEST(CronNextAfter, WorksBefore1970) {
  EXPECT_EQ(utc(cron("* * * * * *").next_after(-1500, TimeZone::utc())), "1969-12-31T23:59:59.000Z");
  const int64_t june_1969 = -18'489'600'000;  // 1969-06-01T00:00:00Z (`date -u -d 1969-06-01 +%s`)
  EXPECT_EQ(utc(cron("0 0 1 1 *").next_after(june_1969, TimeZone::utc())), "1970-01-01T00:00:00.000Z");
}

TEST(CronNextAfter, StopsAtTheYear9999) {
  EXPECT_EQ(utc(cron("* * * * *").next_after(at("9999-12-31T23:58:00Z"), TimeZone::utc())), "9999-12-31T23:59:00.000Z");
  EXPECT_EQ(cron("* * * * *").next_after(at("9999-12-31T23:59:00Z"), TimeZone::utc()), std::nullopt);
  EXPECT_EQ(cron("0 0 1 1 *").next_after(at("9999-01-01T00:00:00Z"), TimeZone::utc()), std::nullopt);
}

struct Never {
  std::string text;
};

void PrintTo(const Never& c, std::ostream* os) { *os << "'" << c.text << "'"; }

class CronNever : public ::testing::TestWithParam<Never> {};

TEST_P(CronNever, ParsesButNeverFires) {
  const CronExpr e = cron(GetParam().text);
  EXPECT_FALSE(e.ever_fires());
  EXPECT_EQ(e.next_after(at("2026-01-01T00:00:00Z"), TimeZone::utc()), std::nullopt);
  EXPECT_EQ(e.next_after(at("2026-01-01T00:00:00Z"), zone("Europe/Berlin")), std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(Cron, CronNever,
                         ::testing::Values(Never{"0 0 30 2 *"}, Never{"0 0 30,31 2 *"}, Never{"0 0 31 4,6,9,11 *"},
                                           Never{"0 0 31 2 */7"}, Never{"0 0 30 FEB ?"}));

TEST(CronEverFires, WithBothDayFieldsRestrictedSomeWeekdayAlwaysMatches) {
  EXPECT_TRUE(cron("0 0 30 2 MON").ever_fires());
  EXPECT_TRUE(cron("0 0 29 2 *").ever_fires());
}

// Decades between answers must still be a short walk over days, not seconds.
TEST(CronNextAfter, FarAnswersAreFast) {
  const CronExpr e = cron("0 0 29 2 */7");
  const TimeZone berlin = zone("Europe/Berlin");
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(utc(e.next_after(at("2088-03-01T00:00:00Z"), berlin)), "2128-02-28T23:00:00.000Z");
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

// ---- TimeZone ----------------------------------------------------------------------

TEST(TimeZone, UtcAlwaysWorks) {
  auto z = TimeZone::named("UTC");
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->name(), "UTC");
  EXPECT_EQ(z->span_at(0).offset_s, 0);
  EXPECT_EQ(TimeZone::utc().name(), "UTC");
}

TEST(TimeZone, RefusesAnUnknownName) {
  for (const std::string name : {"Mars/Base", "", "europe/berlin", "../etc/passwd"}) {
    auto z = TimeZone::named(name);
    ASSERT_FALSE(z.ok()) << name;
    EXPECT_EQ(z.error().code, Errc::invalid);
    EXPECT_EQ(z.error().message, "unknown time zone '" + name + "'");
  }
}

TEST(TimeZone, SpanIsTheRunOfOneOffset) {
  const TimeZone berlin = zone("Europe/Berlin");
  EXPECT_EQ(berlin.name(), "Europe/Berlin");
  const TimeZone::Span summer = berlin.span_at(at("2026-07-01T00:00:00Z") / 1000);
  EXPECT_EQ(summer.begin_s * 1000, at("2026-03-29T01:00:00Z"));
  EXPECT_EQ(summer.end_s * 1000, at("2026-10-25T01:00:00Z"));
  EXPECT_EQ(summer.offset_s, 7200);
  // The boundary both ways: the last second of CET, the first of CEST.
  EXPECT_EQ(berlin.span_at(at("2026-03-29T01:00:00Z") / 1000 - 1).offset_s, 3600);
  EXPECT_EQ(berlin.span_at(at("2026-03-29T01:00:00Z") / 1000).offset_s, 7200);
}

}  // namespace
}  // namespace ripen
