// Reading text that anyone may have written (an AMQP message, a record in Redis,
// a flag): JSON parsed with a bound on its nesting, and input quoted in an error
// message cut to a short prefix.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "ripen/result.h"

namespace ripen {

// The deepest nesting of arrays and objects that parse_json_bounded accepts: an
// envelope's payload may nest 63 levels inside the envelope object.
inline constexpr int kMaxJsonDepth = 64;

// `text` as one JSON document, or Errc::invalid. Nesting deeper than `max_depth`
// arrays/objects ("[]" is depth 1) is refused before any value is built, because
// nlohmann copies, compares and dumps a document by recursion, one stack frame per
// level: a 100k-deep document from the wire would overflow the stack. Messages
// read after "<what> is ": "not valid JSON", "nested deeper than 64 levels (level
// 65 opens at byte 64)".
Result<nlohmann::json> parse_json_bounded(std::string_view text, int max_depth = kMaxJsonDepth);

// The byte offset at which `text` opens an array or object deeper than
// `max_depth`, or npos. Exact for valid JSON (strings and their escapes are
// skipped); what it says of text that is not JSON does not matter, since the
// parser refuses that anyway.
size_t json_too_deep_at(std::string_view text, int max_depth);

// Input for an error message, in single quotes: at most `max_bytes` bytes of it
// (never half a UTF-8 sequence), control characters, quote and backslash escaped
// (\xNN, \', \\), and when cut, its full size: 'abc…' (140000 bytes). So a
// refusal stays one short line whatever it quotes, fit for a log line or an AMQP
// header.
inline constexpr size_t kQuotedBytes = 64;
std::string quote_short(std::string_view text, size_t max_bytes = kQuotedBytes);

// Bytes of a handler's error text kept (before the "..." that marks a cut).
inline constexpr size_t kMaxErrorText = 1024;
// Bytes of a handler's error code kept.
inline constexpr size_t kMaxErrorCode = 128;

// The first `max` bytes of `text`, not cut inside a UTF-8 sequence, with "..."
// appended when anything was cut.
inline std::string cut_text(std::string_view text, size_t max = kMaxErrorText) {
  if (text.size() <= max) return std::string(text);
  size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return std::string(text.substr(0, n)) + "...";
}

// The last `max` bytes of `text` (where a command's stderr says what went
// wrong), not starting inside a UTF-8 sequence, with "..." before when cut.
inline std::string cut_text_tail(std::string_view text, size_t max) {
  if (text.size() <= max) return std::string(text);
  size_t from = text.size() - max;
  while (from < text.size() && (static_cast<unsigned char>(text[from]) & 0xC0) == 0x80) ++from;
  return "..." + std::string(text.substr(from));
}

}  // namespace ripen
