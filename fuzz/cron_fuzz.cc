// The cron parser: schedule files and `ripen schedule` take any text. An
// expression that parses answers next_after() with a later time, or none.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ripen/cron.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto expr = ripen::CronExpr::parse(text);
  if (!expr) return 0;
  static const ripen::TimeZone utc = ripen::TimeZone::utc();
  static const auto berlin = ripen::TimeZone::named("Europe/Berlin");
  for (const int64_t after : {int64_t{0}, int64_t{1'774'745'000'000}, int64_t{4'102'444'800'000}}) {
    for (const ripen::TimeZone* zone : {&utc, berlin ? &*berlin : &utc}) {
      const auto next = expr->next_after(after, *zone);
      if (next && *next <= after) std::abort();
    }
  }
  return 0;
}
