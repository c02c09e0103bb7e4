#include "ripen/duration.h"

#include <cctype>
#include <charconv>
#include <limits>
#include <string>

#include "ripen/untrusted.h"

namespace ripen {
namespace {

Error bad_duration(std::string_view text, std::string_view why) {
  return make_error(Errc::invalid, quote_short(text) + " is not a duration (" + std::string(why) +
                                       "); use e.g. 250ms, 30s, 5m, 2h, 1d or 1h30m");
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

Result<int64_t> parse_duration_ms(std::string_view text) {
  if (text.empty()) return bad_duration(text, "empty");
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) ++i;
    if (i == start) return bad_duration(text, "expected a number");
    int64_t n = 0;
    auto [p, ec] = std::from_chars(text.data() + start, text.data() + i, n);
    if (ec != std::errc()) return bad_duration(text, "number too large");
    size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i])) != 0) ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    int64_t scale = 0;
    if (unit == "ms")
      scale = 1;
    else if (unit == "s")
      scale = 1000;
    else if (unit == "m")
      scale = 60'000;
    else if (unit == "h")
      scale = 3'600'000;
    else if (unit == "d")
      scale = 86'400'000;
    else if (unit.empty())
      return bad_duration(text, "missing unit");
    else
      return bad_duration(text, "unknown unit " + quote_short(unit));
    if (n > (std::numeric_limits<int64_t>::max() - total) / scale) return bad_duration(text, "too large");
    total += n * scale;
  }
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
