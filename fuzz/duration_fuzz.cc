// Durations and timestamps as flags and config files give them.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ripen/duration.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto d = ripen::parse_duration_ms(text); d && *d < 0) std::abort();
  (void)ripen::parse_timestamp_ms(text);
  return 0;
}
