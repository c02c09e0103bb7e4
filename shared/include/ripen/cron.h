// Cron expressions and the time zones they are read in: which instants a
// schedule fires at. Pure computation over the OS time zone database
// (/usr/share/zoneinfo); no clock is read here, the caller passes "after".
#pragma once

#include <bitset>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ripen/result.h"

namespace date {
class time_zone;
}

namespace ripen {

// An IANA time zone ("Europe/Berlin"). "UTC" always works, even without the
// tz database; any other name must be in it. Cheap to copy; the zone data it
// points to lives for the whole process and is safe to read from any thread.
//
// Known limit: the tz library reads only the explicit transitions of the
// zoneinfo files (Debian's run to 2037) and not their POSIX-rule footer, so
// after a zone's last listed transition its offset stays fixed (Berlin: CET
// from 2037-10-25 on, no more summer time).
class TimeZone {
 public:
  // Errc::invalid "unknown time zone 'Mars/Base'" for a name not in the database.
  static Result<TimeZone> named(std::string_view name);
  static TimeZone utc();

  const std::string& name() const { return name_; }

  // The longest run of instants around `at_s` (epoch seconds) with one UTC
  // offset: begin_s <= at_s < end_s, and local wall time = instant + offset_s.
  // begin_s/end_s may lie far outside years 0-9999 for open-ended spans.
  struct Span {
    int64_t begin_s;
    int64_t end_s;
    int64_t offset_s;
  };
  Span span_at(int64_t at_s) const;

 private:
  TimeZone(std::string name, const date::time_zone* zone) : name_(std::move(name)), zone_(zone) {}

  std::string name_;
  const date::time_zone* zone_;  // null: UTC, computed without the database
};

// A cron expression, parsed once and then asked for its next firing time.
//
// Syntax: 5 fields "minute hour day-of-month month day-of-week", or 6 with a
// seconds field first; or one macro: @yearly = @annually (0 0 1 1 *),
// @monthly (0 0 1 * *), @weekly (0 0 * * 0), @daily = @midnight (0 0 * * *),
// @hourly (0 * * * *). Fields separated by spaces or tabs. Each field is a
// comma list of items: '*', a value, a range a-b, each with an optional /step
// ("*/15", "1-30/5"; "5/10" means 5-max/10). Months take JAN-DEC and weekdays
// SUN-SAT (any case), also inside ranges; weekdays are 0-7 with 0 and 7 both
// Sunday; '?' is '*' in the two day fields only. A range must not run
// backwards and a step is 1 to the field's span. Errors are Errc::invalid and
// name the field: "cron '61 * * * *': minute: 61 is out of range 0-59".
//
// When it fires, in its zone's local wall time:
// - A 5-field expression fires at second 0 of each matching minute.
// - Days (Vixie cron's rule): when day-of-month and day-of-week are both
//   restricted, a day matches if EITHER matches ("0 0 1 * MON": the 1st and
//   every Monday); when either field starts with '*' or '?', both must match
//   (so "0 0 29 2 */7" is Feb 29 when it is a Sunday).
// - The hour field is "unrestricted" when it names all 24 hours ('*', '*/1',
//   '0-23'); that changes the two DST cases:
// - A local time that does not exist (spring forward): with restricted hours,
//   every matching time in the gap fires once, together, at the first instant
//   after the gap ("30 2 * * *" in Berlin on 2026-03-29 fires at 03:00 CEST);
//   with unrestricted hours those times are simply skipped ("*/15 * * * *":
//   01:45 CET, then 03:00 CEST).
// - A local time that occurs twice (fall back): with restricted hours it fires
//   at the first occurrence only; with unrestricted hours at both, so "0 * * * *"
//   fires every real hour and "*/15 * * * *" every 15 real minutes.
class CronExpr {
 public:
  static Result<CronExpr> parse(std::string_view text);

  // The first instant (epoch ms, a whole second) strictly after `after_ms` at
  // which the schedule fires in `zone`; nullopt when it never does (see
  // ever_fires()) or not before the year 10000. Walks matching days, hours and
  // minutes, never second by second: a far answer ("0 0 29 2 */7", Feb 29 on
  // a Sunday, decades apart) costs well under a millisecond.
  std::optional<int64_t> next_after(int64_t after_ms, const TimeZone& zone) const;

  // False when no calendar day can ever match ("0 0 30 2 *", "0 0 31 4,6 *").
  bool ever_fires() const { return ever_fires_; }

  const std::string& text() const { return text_; }

 private:
  std::optional<int64_t> next_local_match(int64_t from_s, int64_t until_s) const;
  bool day_matches(int64_t days_since_epoch) const;
  int first_time_of_day(int from_s) const;

  std::string text_;         // as given, without surrounding blanks
  std::bitset<60> seconds_;  // {0} for a 5-field expression
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;      // bit 1-31: day of month
  std::bitset<13> months_;    // bit 1-12
  std::bitset<7> weekdays_;   // bit 0-6, 0 = Sunday (7 was folded onto 0)
  bool days_either_ = false;  // both day fields restricted: Vixie's OR rule
  bool every_hour_ = false;   // the hour field names all 24 hours
  bool ever_fires_ = true;
};

}  // namespace ripen
