#include "ripen/duration.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <string>

#include "ripen/untrusted.h"

namespace ripen {
namespace {

constexpr std::string_view kUnits = "units are ms, s, m, h, d";

// Milliseconds per unit as the strict form spells it; 0 for anything else.
int64_t unit_scale(std::string_view unit) {
  if (unit == "ms") return 1;
  if (unit == "s") return 1000;
  if (unit == "m") return 60'000;
  if (unit == "h") return 3'600'000;
  if (unit == "d") return 86'400'000;
  return 0;
}

// The same for the words people write instead ("1 second", "5 mins", "2H").
int64_t loose_unit_scale(std::string_view word) {
  std::string w;
  for (char c : word) w.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (const int64_t strict = unit_scale(w); strict != 0) return strict;
  struct Word {
    std::string_view name;
    int64_t scale;
  };
  static constexpr Word kWords[] = {{"msec", 1},         {"msecs", 1},        {"millisecond", 1},  {"milliseconds", 1},
                                    {"sec", 1000},       {"secs", 1000},      {"second", 1000},    {"seconds", 1000},
                                    {"min", 60'000},     {"mins", 60'000},    {"minute", 60'000},  {"minutes", 60'000},
                                    {"hr", 3'600'000},   {"hrs", 3'600'000},  {"hour", 3'600'000}, {"hours", 3'600'000},
                                    {"day", 86'400'000}, {"days", 86'400'000}};
  for (const Word& known : kWords) {
    if (w == known.name) return known.scale;
  }
  return 0;
}

// What a refused text plainly means when read loosely (spaces, fractions,
// spelled or upper-case units), written the way parse_duration_ms takes it,
// with the largest unit that keeps it whole ("1.5s" -> "1500ms", "1 hour 30
// minutes" -> "90m"); empty when it has no plain meaning (a bare number: its
// unit would be a guess).
std::string loose_reading(std::string_view text) {
  int64_t total = 0;
  size_t i = 0;
  auto skip_spaces = [&] {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])) != 0) ++i;
  };
  skip_spaces();
  if (i == text.size()) return "";
  while (i < text.size()) {
    const size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) ++i;
    if (i == start || i - start > 15) return "";
    int64_t whole = 0;
    std::from_chars(text.data() + start, text.data() + i, whole);
    int64_t fraction = 0, denominator = 1;
    if (i < text.size() && (text[i] == '.' || text[i] == ',')) {
      const size_t from = ++i;
      while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) ++i;
      if (i == from || i - from > 6) return "";
      std::from_chars(text.data() + from, text.data() + i, fraction);
      for (size_t k = from; k < i; ++k) denominator *= 10;
    }
    skip_spaces();
    const size_t word = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i])) != 0) ++i;
    const int64_t scale = loose_unit_scale(text.substr(word, i - word));
    if (scale == 0) return "";
    if (whole > std::numeric_limits<int64_t>::max() / scale / 2) return "";
    if (fraction * scale % denominator != 0) return "";  // finer than a millisecond
    // At most max/2 plus less than a day: no overflow, here or in the sum.
    const int64_t part = whole * scale + fraction * scale / denominator;
    if (part > std::numeric_limits<int64_t>::max() - total) return "";
    total += part;
    skip_spaces();
  }
  return format_duration_ms(total);
}

Error bad_duration(std::string_view text, std::string_view why) {
  const std::string instead = loose_reading(text);
  return make_error(Errc::invalid,
                    quote_short(text) + " is not a duration (" + std::string(why) + "); " +
                        (instead.empty() ? "use e.g. 250ms, 30s, 5m, 2h, 1d or 1h30m" : "write " + instead));
}

// Why `text` (without spaces) is not a duration, or empty when it is one; its
// value in `total`.
std::string strict_parse(std::string_view text, int64_t& total) {
  total = 0;
  size_t i = 0;
  while (i < text.size()) {
    const size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) ++i;
    if (i == start) return "expected a number";
    int64_t n = 0;
    auto [p, ec] = std::from_chars(text.data() + start, text.data() + i, n);
    if (ec != std::errc()) return "number too large";
    if (i < text.size() && (text[i] == '.' || text[i] == ',')) {
      return "fractions are not accepted: use a smaller unit";
    }
    const size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i])) != 0) ++i;
    const std::string_view unit = text.substr(unit_start, i - unit_start);
    const int64_t scale = unit_scale(unit);
    if (unit.empty()) {
      return "missing unit after " + std::string(text.substr(start, unit_start - start)) + "; " + std::string(kUnits);
    }
    if (scale == 0) return "unknown unit " + quote_short(unit) + "; " + std::string(kUnits);
    if (n > (std::numeric_limits<int64_t>::max() - total) / scale) return "too large";
    total += n * scale;
  }
  return "";
}

// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool is_leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned days_in_month(int64_t y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : kDays[m - 1];
}

}  // namespace

std::string format_duration_ms(int64_t ms) {
  if (ms == 0) return "0s";
  for (const char* unit : {"d", "h", "m", "s"}) {
    const int64_t scale = unit_scale(unit);
    if (ms % scale == 0) return std::to_string(ms / scale) + unit;
  }
  return std::to_string(ms) + "ms";
}

std::string approx_duration_ms(int64_t ms) {
  if (ms < 1000) return std::to_string(std::max<int64_t>(ms, 0)) + "ms";
  std::string out;
  int parts = 0;
  for (const char* unit : {"d", "h", "m", "s"}) {
    const int64_t scale = unit_scale(unit);
    if (parts == 2 || (parts == 1 && ms < scale)) break;
    if (ms < scale) continue;
    out += (out.empty() ? "" : " ") + std::to_string(ms / scale) + unit;
    ms %= scale;
    ++parts;
  }
  return out;
}

Result<int64_t> parse_duration_ms(std::string_view text) {
  if (text.empty()) return bad_duration(text, "empty");
  // Spaces are named first: "1 second" is refused for its space before its
  // word, and the reading offered covers both.
  std::string packed;
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c)) == 0) packed.push_back(c);
  }
  int64_t total = 0;
  const std::string why = strict_parse(packed, total);
  if (packed.size() != text.size()) {
    return bad_duration(text,
                        why.empty() || packed.empty() ? "spaces are not allowed" : "spaces are not allowed; " + why);
  }
  if (!why.empty()) return bad_duration(text, why);
  return total;
}

Result<int64_t> parse_timestamp_ms(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return make_error(Errc::invalid, quote_short(text) + " is not a timestamp (" + std::string(why) +
                                         "); use RFC 3339, e.g. 2026-11-22T10:00:00Z");
  };
  auto num = [&](size_t pos, size_t len, int64_t& out) {
    if (pos + len > text.size()) return false;
    for (size_t k = pos; k < pos + len; ++k) {
      if (std::isdigit(static_cast<unsigned char>(text[k])) == 0) return false;
    }
    std::from_chars(text.data() + pos, text.data() + pos + len, out);
    return true;
  };
  int64_t y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (!num(0, 4, y) || text.size() < 19 || text[4] != '-' || !num(5, 2, mo) || text[7] != '-' || !num(8, 2, d) ||
      (text[10] != 'T' && text[10] != 't' && text[10] != ' ') || !num(11, 2, h) || text[13] != ':' || !num(14, 2, mi) ||
      text[16] != ':' || !num(17, 2, s)) {
    return bad("expected YYYY-MM-DDTHH:MM:SS");
  }
  if (mo < 1 || mo > 12) return bad("month out of range");
  if (d < 1 || d > days_in_month(y, static_cast<unsigned>(mo))) return bad("day out of range");
  if (h > 23 || mi > 59 || s > 60) return bad("time out of range");
  size_t i = 19;
  int64_t ms = 0;
  if (i < text.size() && text[i] == '.') {
    size_t start = ++i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) ++i;
    if (i == start) return bad("empty fraction");
    std::string frac(text.substr(start, i - start));
    frac.resize(3, '0');
    ms = std::stoll(frac.substr(0, 3));
  }
  if (s == 60) {
    // A leap second is held at :59.999 rather than refused: it stays after every
    // instant of :59 and before the next minute.
    s = 59;
    ms = 999;
  }
  int64_t offset_min = 0;
  if (i >= text.size()) return bad("missing time zone: end with Z or an offset like +01:00");
  if (text[i] == 'Z' || text[i] == 'z') {
    ++i;
  } else if (text[i] == '+' || text[i] == '-') {
    int64_t oh = 0, om = 0;
    if (!num(i + 1, 2, oh) || i + 3 >= text.size() || text[i + 3] != ':' || !num(i + 4, 2, om)) {
      return bad("offset must look like +01:00");
    }
    if (oh > 23 || om > 59) return bad("offset out of range");
    offset_min = (oh * 60 + om) * (text[i] == '-' ? -1 : 1);
    i += 6;
  } else {
    return bad("missing time zone: end with Z or an offset like +01:00");
  }
  if (i != text.size()) return bad("unexpected text after the time zone");
  if (y < 1970) return bad("before 1970");
  const int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  const int64_t out = ((days * 24 + h) * 60 + mi - offset_min) * 60'000 + s * 1000 + ms;
  if (out < 0) return bad("before 1970 once the offset is applied");
  return out;
}

}  // namespace ripen
