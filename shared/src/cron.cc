#include "ripen/cron.h"

#include <date/date.h>
#include <date/tz.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <chrono>
#include <exception>
#include <vector>

#include "ripen/untrusted.h"

namespace ripen {
namespace {

constexpr int64_t kDay = 86'400;
constexpr int64_t kFirstSecond = -62'135'596'800;  // 0001-01-01T00:00:00Z
constexpr int64_t kLastSecond = 253'402'300'799;   // 9999-12-31T23:59:59Z
// 400 Gregorian years are exactly 146097 days, a whole number of weeks, so the
// calendar repeats: a day pattern that matches at all matches within this.
constexpr int64_t kHorizon = 146'097 * kDay;
// Open-ended spans (UTC; a zone after its last transition) are reported with
// ends this far away: outside years 0-9999, yet far from int64 overflow.
constexpr int64_t kFar = 10'000'000'000'000;
// Offsets differ by far less than a day, so a span that began a day or more
// before the instant asked about cannot hide a gap or a repeat from it.
constexpr int64_t kTransitionReach = kDay;

int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

constexpr std::array<std::string_view, 12> kMonthNames = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<std::string_view, 7> kWeekdayNames = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

struct Field {
  std::string_view name;
  int lo;
  int hi;
  const std::string_view* names = nullptr;  // names[i] is the value first_named + i
  int name_count = 0;
  int first_named = 0;
  bool question_mark = false;  // '?' may stand for '*'
};

constexpr Field kSecond{"second", 0, 59};
constexpr Field kMinute{"minute", 0, 59};
constexpr Field kHour{"hour", 0, 23};
constexpr Field kDayOfMonth{"day-of-month", 1, 31, nullptr, 0, 0, true};
constexpr Field kMonth{"month", 1, 12, kMonthNames.data(), 12, 1, false};
constexpr Field kDayOfWeek{"day-of-week", 0, 7, kWeekdayNames.data(), 7, 0, true};

bool all_of(std::string_view s, int (*pred)(int)) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [&](char c) { return pred(static_cast<unsigned char>(c)) != 0; });
}

std::string range_text(int lo, int hi) { return std::to_string(lo) + "-" + std::to_string(hi); }

// Digits are read as at most 4 of them: anything longer is out of every
// field's range anyway, and from_chars never sees a number it cannot hold.
Result<int> parse_value(std::string_view token, const Field& f) {
  if (token.empty()) return make_error(Errc::invalid, "a value is missing");
  if (all_of(token, ::isdigit)) {
    int v = 100'000;
    if (token.size() <= 4) std::from_chars(token.data(), token.data() + token.size(), v);
    if (v < f.lo || v > f.hi) {
      return make_error(Errc::invalid, (token.size() <= kQuotedBytes ? std::string(token) : quote_short(token)) +
                                           " is out of range " + range_text(f.lo, f.hi));
    }
    return v;
  }
  if (f.names != nullptr && all_of(token, ::isalpha)) {
    std::string upper(token);
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (int i = 0; i < f.name_count; ++i) {
      if (f.names[i] == upper) return f.first_named + i;
    }
    return make_error(Errc::invalid, quote_short(token) + " is not a " + std::string(f.name) + " name (" +
                                         std::string(f.names[0]) + "-" + std::string(f.names[f.name_count - 1]) + ")");
  }
  return make_error(Errc::invalid, quote_short(token) + " is not a number");
}

// One comma-separated item: '*', '?', a, a-b, each with an optional /step.
Status parse_item(std::string_view item, const Field& f, uint64_t& bits) {
  if (item.empty()) return make_error(Errc::invalid, "empty item in the list");
  const size_t slash = item.find('/');
  const std::string_view base = item.substr(0, slash);
  int step = 1;
  if (slash != std::string_view::npos) {
    const std::string_view step_text = item.substr(slash + 1);
    const int span = f.hi - f.lo + 1;
    if (!all_of(step_text, ::isdigit)) {
      return make_error(Errc::invalid, "step " + quote_short(step_text) + " is not a number");
    }
    step = 100'000;
    if (step_text.size() <= 4) std::from_chars(step_text.data(), step_text.data() + step_text.size(), step);
    if (step < 1 || step > span) {
      return make_error(Errc::invalid, "step " + std::string(step_text) + " is out of range " + range_text(1, span));
    }
  }
  int a = f.lo;
  int b = f.hi;
  if (base == "*" || base == "?") {
    if (base == "?" && !f.question_mark) {
      return make_error(Errc::invalid, "'?' is allowed only in day-of-month and day-of-week");
    }
  } else if (const size_t dash = base.find('-'); dash != std::string_view::npos) {
    auto lo = parse_value(base.substr(0, dash), f);
    if (!lo) return lo.error();
    auto hi = parse_value(base.substr(dash + 1), f);
    if (!hi) return hi.error();
    if (*lo > *hi) return make_error(Errc::invalid, "range " + std::string(base) + " runs backwards");
    a = *lo;
    b = *hi;
  } else {
    auto v = parse_value(base, f);
    if (!v) return v.error();
    a = *v;
    // "5/10" is 5-max/10, as in Vixie cron; a lone value is just itself.
    b = slash == std::string_view::npos ? *v : f.hi;
  }
  for (int v = a; v <= b; v += step) bits |= uint64_t{1} << v;
  return {};
}

struct ParsedField {
  uint64_t bits = 0;
  bool star = false;  // starts with '*' or '?': "unrestricted" for Vixie's day rule
};

Result<ParsedField> parse_field(std::string_view text, const Field& f) {
  ParsedField out;
  out.star = text.front() == '*' || text.front() == '?';
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    if (auto st = parse_item(text.substr(start, comma - start), f, out.bits); !st) return st.error();
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

std::string_view macro_body(std::string_view macro) {
  std::string lower(macro);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "@yearly" || lower == "@annually") return "0 0 1 1 *";
  if (lower == "@monthly") return "0 0 1 * *";
  if (lower == "@weekly") return "0 0 * * 0";
  if (lower == "@daily" || lower == "@midnight") return "0 0 * * *";
  if (lower == "@hourly") return "0 * * * *";
  return {};
}

std::vector<std::string_view> split_blanks(std::string_view text) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])) != 0) ++i;
    const size_t start = i;
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])) == 0) ++i;
    if (i > start) out.push_back(text.substr(start, i - start));
  }
  return out;
}

template <size_t N>
int next_set(const std::bitset<N>& bits, int from) {
  for (int i = from; i < static_cast<int>(N); ++i) {
    if (bits[static_cast<size_t>(i)]) return i;
  }
  return -1;
}

}  // namespace

// ---- TimeZone -----------------------------------------------------------------

TimeZone TimeZone::utc() { return TimeZone("UTC", nullptr); }

Result<TimeZone> TimeZone::named(std::string_view name) {
  // "UTC" needs no database, so a host without tzdata still runs UTC schedules.
  if (name == "UTC") return utc();
  try {
    date::get_tzdb();
  } catch (const std::exception& e) {
    return make_error(Errc::invalid, "time zone " + quote_short(name) +
                                         ": the tz database cannot be read (is tzdata installed?): " + e.what());
  }
  try {
    return TimeZone(std::string(name), date::locate_zone(name));
  } catch (const std::exception&) {
    return make_error(Errc::invalid, "unknown time zone " + quote_short(name));
  }
}

TimeZone::Span TimeZone::span_at(int64_t at_s) const {
  if (zone_ == nullptr) return {-kFar, kFar, 0};
  const date::sys_info info = zone_->get_info(date::sys_seconds{std::chrono::seconds{at_s}});
  const int64_t begin = info.begin.time_since_epoch().count();
  const int64_t end = info.end.time_since_epoch().count();
  return {std::max(begin, -kFar), std::min(end, kFar), info.offset.count()};
}

// ---- CronExpr: parsing ---------------------------------------------------------

Result<CronExpr> CronExpr::parse(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  const auto last = text.find_last_not_of(" \t\r\n");
  const std::string_view trimmed = first == std::string_view::npos ? "" : text.substr(first, last - first + 1);
  const std::string where = "cron " + quote_short(trimmed) + ": ";

  std::vector<std::string_view> fields = split_blanks(trimmed);
  if (!fields.empty() && fields[0].front() == '@') {
    const std::string_view body = macro_body(fields[0]);
    if (body.empty()) return make_error(Errc::invalid, where + "unknown macro " + quote_short(fields[0]));
    if (fields.size() > 1) {
      return make_error(Errc::invalid, where + "macro " + quote_short(fields[0]) + " takes no fields");
    }
    fields = split_blanks(body);
  }
  if (fields.size() != 5 && fields.size() != 6) {
    return make_error(Errc::invalid, where + "expected 5 or 6 fields, got " + std::to_string(fields.size()));
  }

  CronExpr e;
  e.text_ = std::string(trimmed);
  const bool with_seconds = fields.size() == 6;
  const std::array<const Field*, 6> specs = {&kSecond, &kMinute, &kHour, &kDayOfMonth, &kMonth, &kDayOfWeek};
  std::array<ParsedField, 6> parsed;
  parsed[0].bits = 1;  // a 5-field expression fires at second 0
  for (size_t i = with_seconds ? 0 : 1, k = 0; i < 6; ++i, ++k) {
    auto f = parse_field(fields[k], *specs[i]);
    if (!f) return make_error(Errc::invalid, where + std::string(specs[i]->name) + ": " + f.error().message);
    parsed[i] = *f;
  }
  // 7 is the second name for Sunday.
  if ((parsed[5].bits >> 7) & 1) parsed[5].bits = (parsed[5].bits | 1) & 0x7f;

  e.seconds_ = std::bitset<60>(parsed[0].bits);
  e.minutes_ = std::bitset<60>(parsed[1].bits);
  e.hours_ = std::bitset<24>(parsed[2].bits);
  e.days_ = std::bitset<32>(parsed[3].bits);
  e.months_ = std::bitset<13>(parsed[4].bits);
  e.weekdays_ = std::bitset<7>(parsed[5].bits);
  e.days_either_ = !parsed[3].star && !parsed[5].star;
  e.every_hour_ = e.hours_.all();

  // With the OR rule some weekday always matches. With AND, a (month, day)
  // that exists in some year also falls on every weekday within 400 years, so
  // the expression fires iff one listed day exists in one listed month.
  if (!e.days_either_) {
    static constexpr std::array<int, 13> kLongest = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool any = false;
    for (int m = 1; m <= 12 && !any; ++m) {
      if (!e.months_[static_cast<size_t>(m)]) continue;
      for (int d = 1; d <= kLongest[static_cast<size_t>(m)] && !any; ++d) any = e.days_[static_cast<size_t>(d)];
    }
    e.ever_fires_ = any;
  }
  return e;
}

// ---- CronExpr: next time ---------------------------------------------------------
//
// Local wall times are counted as "local seconds": seconds since 1970-01-01
// 00:00 on the zone's wall clock. Within a span of constant UTC offset, local =
// instant + offset is monotonic, so the next firing is found span by span: the
// first matching local time inside the span's local range, adjusted at its
// start for the DST rules in cron.h.

bool CronExpr::day_matches(int64_t days_since_epoch) const {
  const date::sys_days day{date::days{static_cast<int>(days_since_epoch)}};
  const date::year_month_day ymd{day};
  const bool dom = days_[static_cast<unsigned>(ymd.day())];
  const bool dow = weekdays_[date::weekday{day}.c_encoding()];
  return days_either_ ? (dom || dow) : (dom && dow);
}

// The first matching second of a day at or after `from_s` (seconds into the
// day), or -1.
int CronExpr::first_time_of_day(int from_s) const {
  const int h0 = from_s / 3600;
  const int m0 = from_s / 60 % 60;
  const int s0 = from_s % 60;
  for (int h = next_set(hours_, h0); h >= 0; h = next_set(hours_, h + 1)) {
    for (int m = next_set(minutes_, h == h0 ? m0 : 0); m >= 0; m = next_set(minutes_, m + 1)) {
      const int s = next_set(seconds_, h == h0 && m == m0 ? s0 : 0);
      if (s >= 0) return h * 3600 + m * 60 + s;
    }
  }
  return -1;
}

// The first matching local second in [from_s, until_s).
std::optional<int64_t> CronExpr::next_local_match(int64_t from_s, int64_t until_s) const {
  int64_t day = floor_div(from_s, kDay);
  int time_of_day = static_cast<int>(from_s - day * kDay);
  while (day * kDay < until_s) {
    const date::year_month_day ymd{date::sys_days{date::days{static_cast<int>(day)}}};
    if (!months_[static_cast<unsigned>(ymd.month())]) {
      // Skip the rest of an unlisted month in one step.
      const date::year_month_day next = date::year_month_day{ymd.year() / ymd.month() / 1} + date::months{1};
      day = date::sys_days{next}.time_since_epoch().count();
      time_of_day = 0;
      continue;
    }
    if (day_matches(day)) {
      const int s = first_time_of_day(time_of_day);
      if (s >= 0) {
        const int64_t local = day * kDay + s;
        if (local < until_s) return local;
        return std::nullopt;
      }
    }
    ++day;
    time_of_day = 0;
  }
  return std::nullopt;
}

std::optional<int64_t> CronExpr::next_after(int64_t after_ms, const TimeZone& zone) const {
  if (!ever_fires_) return std::nullopt;
  const int64_t start = std::max(floor_div(after_ms, 1000) + 1, kFirstSecond);
  if (start > kLastSecond) return std::nullopt;
  const int64_t limit = std::min(start + kHorizon, kLastSecond + 1);
  int64_t t = start;
  while (t < limit) {
    const TimeZone::Span span = zone.span_at(t);
    const int64_t end = std::min(span.end_s, limit);
    int64_t from_local = t + span.offset_s;
    // With every hour listed a wall time is just a wall time: one that does not
    // exist is not fired, one that exists twice fires twice (every real hour).
    // With restricted hours, "02:30 daily" means once a day whatever DST does.
    if (!every_hour_ && t - span.begin_s < kTransitionReach) {
      const TimeZone::Span before = zone.span_at(span.begin_s - 1);
      if (t == span.begin_s && before.offset_s < span.offset_s &&
          next_local_match(span.begin_s + before.offset_s, span.begin_s + span.offset_s)) {
        return t * 1000;  // the gap's matching times, all fired at its end
      }
      if (before.offset_s > span.offset_s) {
        // The wall times below this were already lived through before the clock went back.
        from_local = std::max(from_local, span.begin_s + before.offset_s);
      }
    }
    if (auto local = next_local_match(from_local, end + span.offset_s)) return (*local - span.offset_s) * 1000;
    t = end;
  }
  return std::nullopt;
}

}  // namespace ripen
