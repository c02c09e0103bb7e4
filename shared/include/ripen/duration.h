// Human durations and times as the CLI and config files take them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ripen/result.h"

namespace ripen {

// "250ms", "30s", "5m", "2h", "1d", and sums like "1h30m". A bare number is
// refused: "30" could mean seconds or milliseconds, and guessing wrong fires a
// task at the wrong time. So are fractions ("1.5s"), spaces and spelled-out
// units ("1 second"); the error names which, and says what to write instead
// when the text has a plain meaning ("write 1500ms", "write 1s").
Result<int64_t> parse_duration_ms(std::string_view text);

// `ms` (>= 0) as parse_duration_ms takes it, in the largest unit that keeps it
// whole: 86400000 -> "1d", 5400000 -> "90m", 1500 -> "1500ms", 0 -> "0s".
std::string format_duration_ms(int64_t ms);

// `ms` (>= 0) for people, in its two largest units, rounded down: "3d 4h",
// "2m 5s", "45s", "250ms".
std::string approx_duration_ms(int64_t ms);

// RFC 3339 / ISO 8601 UTC or with offset: "2026-11-22T10:00:00Z",
// "2026-11-22T10:00:00.250+01:00". Returns epoch milliseconds.
Result<int64_t> parse_timestamp_ms(std::string_view text);

}  // namespace ripen
